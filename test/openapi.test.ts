// The OpenAPI description matches the routes and the TypeBox schemas they validate with.
import { describe, expect, test } from "bun:test";
import { revokeBody } from "../src/http/revoke.ts";
import { tokenBody } from "../src/http/token.ts";
import { request, useTestApp } from "./helpers/app.ts";

describe("OpenAPI", () => {
  const ready = useTestApp("pglite");

  test("documents the revoke body as exactly the revokeBody schema, form-encoded", async () => {
    const t = await ready();
    const [res, doc] = await request(t, "GET", "/openapi");
    expect(res.status).toBe(200);
    expect(doc.openapi).toStartWith("3.1");
    const body = doc.paths["/oauth/revoke"].post.requestBody;
    expect(Object.keys(body.content)).toEqual(["application/x-www-form-urlencoded"]);
    expect(body.content["application/x-www-form-urlencoded"].schema).toEqual(JSON.parse(JSON.stringify(revokeBody)));
    expect(body.content["application/x-www-form-urlencoded"].schema.required).toEqual(["token"]);
  });

  test("documents the token body as exactly the tokenBody schema, form-encoded", async () => {
    const t = await ready();
    const [, doc] = await request(t, "GET", "/openapi");
    const content = doc.paths["/oauth/token"].post.requestBody.content;
    expect(content).toEqual({ "application/x-www-form-urlencoded": { schema: JSON.parse(JSON.stringify(tokenBody)) } });
  });

  test("lists every route of the app once, without the 405 catch-alls and its own pages", async () => {
    const t = await ready();
    const [, doc] = await request(t, "GET", "/openapi");
    const documented = Object.entries(doc.paths as Record<string, object>).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
    );
    const routes = t.app.routes
      .filter((r) => r.method !== "ALL" && !r.path.startsWith("/openapi"))
      // OpenAPI writes a path parameter {name} where the route has :name.
      .map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
    expect(documented.sort()).toEqual([...new Set(routes)].sort());
    for (const operations of Object.values(doc.paths as Record<string, Record<string, any>>)) {
      for (const operation of Object.values(operations)) {
        expect(operation.responses.default.content["application/json"].schema.$ref).toBe("#/components/schemas/OAuthError");
      }
    }
  });

  test("the human-readable page lists the endpoints with page security headers and no script", async () => {
    const t = await ready();
    const [res, html] = await request(t, "GET", "/openapi/ui");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(html).toContain("POST /oauth/revoke");
    expect(html).toContain("<code>token_type_hint</code>");
    expect(html).not.toContain("<script");
    expect(html).not.toMatch(/https?:\/\/(cdn|unpkg)/);
  });
});
