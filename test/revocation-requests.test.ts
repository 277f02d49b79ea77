// POST /oauth/revoke (RFC 7009): malformed requests, failed client authentication, other
// methods, and CORS (TA_CORS_ORIGINS) for browser-based public clients.
import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../src/config.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { basic, post, request, revoke } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import type { Family } from "./helpers/families.ts";
import { client, codeFamily, expectDead, expectEmpty200, expectLive, expectOAuthError, REVOKE, snapshot, unknownToken, useApp } from "./helpers/families.ts";

const encoder = new TextEncoder();

// Malformed requests and failed client authentication

type Send = (t: TestApp, f: Family, c: TestClient) => Promise<[Response, any]>;

const badRequests: ReadonlyArray<readonly [string, number, string, Send]> = [
  ["no token parameter", 400, "invalid_request", (t, _f, c) => post(t, REVOKE, { token_type_hint: "access_token" }, c.auth.headers)],
  ["an empty token", 400, "invalid_request", (t, _f, c) => post(t, REVOKE, { token: "" }, c.auth.headers)],
  ["the token parameter twice", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, `token=${f.accessToken}&token=${f.accessToken}`, c.auth.headers)],
  ["the token_type_hint parameter twice", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, `token=${f.accessToken}&token_type_hint=access_token&token_type_hint=access_token`, c.auth.headers)],
  ["a JSON body", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: JSON.stringify({ token: f.accessToken }), headers: { ...c.auth.headers, "content-type": "application/json" } })],
  ["a multipart body", 400, "invalid_request", (t, f, c) => {
    const form = new FormData();
    form.set("token", f.accessToken);
    return request(t, "POST", REVOKE, { body: form, headers: c.auth.headers });
  }],
  ["a text/plain body", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: `token=${f.accessToken}`, headers: { ...c.auth.headers, "content-type": "text/plain" } })],
  ["a form body without Content-Type", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: encoder.encode(`token=${f.accessToken}`), headers: c.auth.headers })],
  ["a body that is not UTF-8", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: new Uint8Array([...encoder.encode(`token=${f.accessToken}&x=`), 0xff, 0xfe]), headers: { ...c.auth.headers, "content-type": "application/x-www-form-urlencoded" } })],
  ["a wrong secret (client_secret_basic)", 401, "invalid_client", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken }, { authorization: basic(c.client.clientId, "wrong") })],
  ["an unknown client (client_secret_basic)", 401, "invalid_client", (t, f) =>
    post(t, REVOKE, { token: f.accessToken }, { authorization: basic("no-such-client", "secret") })],
  ["malformed Basic credentials", 401, "invalid_client", (t, f) =>
    post(t, REVOKE, { token: f.accessToken }, { authorization: "Basic !!!" })],
  ["a wrong secret (client_secret_post)", 401, "invalid_client", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_id: c.client.clientId, client_secret: "wrong" })],
  ["a confidential client's id without its secret", 401, "invalid_client", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_id: c.client.clientId })],
  ["an unknown public client_id", 401, "invalid_client", (t, f) => post(t, REVOKE, { token: f.accessToken, client_id: "no-such-client" })],
  ["no client authentication at all", 401, "invalid_client", (t, f) => post(t, REVOKE, { token: f.accessToken })],
  ["two authentication methods at once (Basic and client_secret)", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_secret: c.secret! }, c.auth.headers)],
  ["a Basic client id that differs from the body's client_id", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_id: "someone-else" }, c.auth.headers)],
];

const otherMethods = ["GET", "PUT", "DELETE", "PATCH"] as const;

describe.each(backends)("request errors [%s]", (backend) => {
  const ready = useApp(backend);

  test.each(badRequests)("%s: %d %s, nothing changes", async (name, status, error, send) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    const before = await snapshot(t);
    const [res, body] = await send(t, f, owner);
    expectOAuthError(res, body, status, error);
    expect(JSON.stringify(body)).not.toContain(f.accessToken);
    if (status === 401) {
      // RFC 6749 §5.2: a failed attempt through the Authorization header MUST get WWW-Authenticate.
      const viaBasic = /basic/i.test(name);
      expect(res.headers.get("www-authenticate")?.startsWith("Basic ") ?? false).toBe(viaBasic);
    }
    expect(await snapshot(t)).toEqual(before);
    await expectLive(t, f);
  });

  test.each(otherMethods)("%s: 405 with Allow: POST, nothing changes", async (method) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    const before = await snapshot(t);
    const [res, body] = await request(t, method, `${REVOKE}?token=${f.accessToken}`, {
      headers: owner.auth.headers,
      form: method === "GET" ? undefined : { token: f.accessToken },
    });
    expectOAuthError(res, body, 405, "method_not_allowed");
    expect(res.headers.get("allow")).toBe("POST");
    expect(await snapshot(t)).toEqual(before);
    await expectLive(t, f);
  });
});

// CORS (TA_CORS_ORIGINS) for browser-based public clients

const SPA = "https://spa.example";

describe.each(backends)("CORS [%s]", (backend) => {
  const ready = useApp(backend, { TA_CORS_ORIGINS: `${SPA}, https://other.example` });
  const closed = useApp(backend);
  const preflight = (t: TestApp, origin: string) =>
    request(t, "OPTIONS", REVOKE, {
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
    });

  test("a preflight from an allowed origin is answered for that exact origin, without credentials", async () => {
    const t = await ready();
    const [res] = await preflight(t, SPA);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(SPA);
    expect(res.headers.get("access-control-allow-methods")).toBe("POST");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("content-type");
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    expect(res.headers.get("vary")).toContain("Origin");
  });

  test("a preflight from another origin gets no CORS grant", async () => {
    const t = await ready();
    for (const origin of ["https://evil.example", "https://spa.example.evil.example", "http://spa.example", "null"]) {
      const [res] = await preflight(t, origin);
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
      expect(res.status).not.toBe(204);
    }
  });

  test("a public client's revocation from an allowed origin carries that origin, never * and never credentials", async () => {
    const t = await ready();
    const owner = await client(t, "public");
    const f = await codeFamily(t, owner);
    const [bad, badBody] = await post(t, REVOKE, { token: "garbage", ...owner.auth.form }, { origin: SPA });
    expectOAuthError(bad, badBody, 400, "unsupported_token_type");
    const [res, body] = await post(t, REVOKE, { token: f.refreshToken!, ...owner.auth.form }, { origin: SPA });
    expectEmpty200(res, body);
    for (const r of [bad, res]) {
      expect(r.headers.get("access-control-allow-origin")).toBe(SPA);
      expect(r.headers.get("access-control-allow-credentials")).toBeNull();
      expect(r.headers.get("vary")).toContain("Origin");
    }
    await expectDead(t, f);
  });

  test("a request from another origin gets no Access-Control-Allow-Origin", async () => {
    const t = await ready();
    const owner = await client(t, "public");
    const [res] = await post(t, REVOKE, { token: await unknownToken(t), ...owner.auth.form }, { origin: "https://evil.example" });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("without TA_CORS_ORIGINS no origin is allowed", async () => {
    const t = await closed();
    const [res] = await preflight(t, SPA);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const [posted] = await post(t, REVOKE, { token: "x" }, { origin: SPA });
    expect(posted.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("other endpoints get no CORS headers", async () => {
    const t = await ready();
    const [res] = await request(t, "GET", "/healthz", { headers: { origin: SPA } });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });
});

test("TA_CORS_ORIGINS refuses * and anything that is not an exact origin", () => {
  for (const value of ["*", "https://spa.example/", "https://spa.example/path", "spa.example"]) {
    expect(() => loadConfig({ TA_CORS_ORIGINS: value })).toThrow(ConfigError);
  }
  expect(loadConfig({ TA_CORS_ORIGINS: "https://a.example, http://localhost:5173" }).corsOrigins).toEqual([
    "https://a.example",
    "http://localhost:5173",
  ]);
});
