// POST /oauth/register (RFC 7591), on every backend.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { basic, request, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { issueCode, redeem, tokenRequest } from "./helpers/grants.ts";

setDefaultTimeout(30_000);

const register = (t: TestApp, metadata: unknown, headers: Record<string, string> = {}) =>
  request(t, "POST", "/oauth/register", {
    body: typeof metadata === "string" ? metadata : JSON.stringify(metadata),
    headers: { "content-type": "application/json", ...headers },
  });

const clientCount = async (t: TestApp) => (await t.services.clients.list()).length;

/** The registered client, as the token-endpoint helpers want it. */
async function asTestClient(t: TestApp, body: any): Promise<TestClient> {
  const client = (await t.services.clients.find(body.client_id))!;
  return body.client_secret
    ? { client, secret: body.client_secret, auth: { form: {}, headers: { authorization: basic(body.client_id, body.client_secret) } } }
    : { client, secret: undefined, auth: { form: { client_id: body.client_id }, headers: {} } };
}

describe.each(backends)("dynamic client registration [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("registers a confidential client with defaults and answers 201 with its metadata and secret", async () => {
    const t = await ready();
    const before = Math.floor(Date.now() / 1000);
    const [res, body] = await register(t, {
      redirect_uris: ["https://app.example/cb"],
      client_name: "Example App",
      client_uri: "https://app.example",
      logo_uri: "https://app.example/logo.png",
      contacts: ["ops@app.example"],
      unknown_field: "ignored",
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body).toEqual({
      client_id: expect.any(String),
      client_id_issued_at: expect.any(Number),
      client_secret: expect.any(String),
      client_secret_expires_at: 0,
      redirect_uris: ["https://app.example/cb"],
      token_endpoint_auth_method: "client_secret_basic",
      grant_types: ["authorization_code"],
      response_types: ["code"],
      scope: t.config.scopes.join(" "),
      client_name: "Example App",
      client_uri: "https://app.example",
      logo_uri: "https://app.example/logo.png",
      contacts: ["ops@app.example"],
    });
    expect(body.client_id_issued_at).toBeGreaterThanOrEqual(before - 5);
    const stored = await t.services.clients.find(body.client_id);
    expect(stored).toMatchObject({ type: "confidential", name: "Example App", metadata: { logo_uri: "https://app.example/logo.png" } });
    // The secret really authenticates: the client redeems a code with it.
    const c = await asTestClient(t, body);
    expect((await redeem(t, c, await issueCode(t, c)))[0].status).toBe(200);
  });

  test("registers a public client (token_endpoint_auth_method none) without a secret", async () => {
    const t = await ready();
    const [res, body] = await register(t, {
      redirect_uris: ["http://127.0.0.1:8765/callback"],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      scope: "profile read",
    });
    expect(res.status).toBe(201);
    expect(body.client_secret).toBeUndefined();
    expect(body.client_secret_expires_at).toBeUndefined();
    expect(body.scope).toBe("profile read");
    expect((await t.services.clients.find(body.client_id))!.type).toBe("public");
  });

  test("registers a client_credentials client that can then get tokens for its scope only", async () => {
    const t = await ready();
    const [res, body] = await register(t, { grant_types: ["client_credentials"], token_endpoint_auth_method: "client_secret_post", scope: "read" });
    expect(res.status).toBe(201);
    expect(body.response_types).toEqual([]);
    expect(body.redirect_uris).toEqual([]);
    const c = await asTestClient(t, body);
    const [ok, token] = await tokenRequest(t, c, { grant_type: "client_credentials" });
    expect(ok.status).toBe(200);
    expect(token.scope).toBe("read");
    expect((await tokenRequest(t, c, { grant_type: "client_credentials", scope: "write" }))[1].error).toBe("invalid_scope");
  });

  test.each([
    ["a non-https redirect URI", { redirect_uris: ["http://app.example/cb"] }],
    ["a redirect URI with a fragment", { redirect_uris: ["https://app.example/cb#frag"] }],
    ["a relative redirect URI", { redirect_uris: ["/cb"] }],
    ["a custom-scheme redirect URI", { redirect_uris: ["javascript:alert(1)"] }],
    ["no redirect URI for the authorization_code grant", {}],
  ])("refuses %s with invalid_redirect_uri", async (_, metadata) => {
    const t = await ready();
    const count = await clientCount(t);
    const [res, body] = await register(t, metadata);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_redirect_uri");
    expect(body.error_description).toEqual(expect.any(String));
    expect(await clientCount(t)).toBe(count);
  });

  test.each([
    ["an unsupported token_endpoint_auth_method", { token_endpoint_auth_method: "private_key_jwt" }],
    ["an unsupported grant type", { grant_types: ["password"] }],
    ["an unsupported response type", { response_types: ["token"] }],
    ["response_types code without the authorization_code grant", { grant_types: ["client_credentials"], response_types: ["code"] }],
    ["the authorization_code grant without response_types code", { response_types: [] }],
    ["client_credentials for a public client", { grant_types: ["client_credentials"], token_endpoint_auth_method: "none" }],
    ["a scope the server does not offer", { scope: "read admin" }],
    ["redirect_uris that is not a list", { redirect_uris: "https://app.example/cb" }],
    ["a client_uri that is not a URL", { client_uri: "not a url" }],
    ["a javascript: logo_uri", { logo_uri: "javascript:alert(1)" }],
    ["contacts that are not strings", { contacts: [42] }],
    ["an empty client_name", { client_name: "" }],
    ["empty grant_types", { grant_types: [] }],
    ["a JSON array", ["https://app.example/cb"]],
    ["malformed JSON", "{"],
  ])("refuses %s with invalid_client_metadata", async (_, metadata) => {
    const t = await ready();
    const count = await clientCount(t);
    const withRedirect = typeof metadata === "object" && !Array.isArray(metadata)
      ? { redirect_uris: ["https://app.example/cb"], ...metadata }
      : metadata;
    const [res, body] = await register(t, withRedirect);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_client_metadata");
    expect(body.error_description).toEqual(expect.any(String));
    expect(await clientCount(t)).toBe(count);
  });

  test("records the client as dynamically registered (what pruning of unused clients reads)", async () => {
    const t = await ready();
    const [, body] = await register(t, { redirect_uris: ["https://app.example/cb"] });
    expect((await t.services.stores.clients.find(body.client_id))!.registration).toBe("dynamic");
  });

  test.each([
    ["native with a loopback and a private-use scheme", { application_type: "native", redirect_uris: ["http://localhost:33418/callback", "com.example.app:/oauth"] }],
    ["web with https", { application_type: "web", redirect_uris: ["https://app.example/cb"] }],
    ["web with a loopback (local development)", { application_type: "web", redirect_uris: ["http://127.0.0.1:8765/cb"] }],
  ])("accepts application_type %s and echoes it", async (_name, metadata) => {
    const t = await ready();
    const [res, body] = await register(t, { ...metadata, token_endpoint_auth_method: "none" });
    expect(res.status).toBe(201);
    expect(body).toMatchObject(metadata);
    expect((await t.services.clients.find(body.client_id))!.redirectUris).toEqual(metadata.redirect_uris);
  });

  test.each([
    ["a private-use scheme for a web application", { application_type: "web", redirect_uris: ["com.example.app:/oauth"] }, "invalid_redirect_uri"],
    ["a scheme without a dot for a native application", { application_type: "native", redirect_uris: ["myapp:/oauth"] }, "invalid_redirect_uri"],
    ["javascript: for a native application", { application_type: "native", redirect_uris: ["javascript:alert(1)"] }, "invalid_redirect_uri"],
    ["an unknown application_type", { application_type: "desktop", redirect_uris: ["https://app.example/cb"] }, "invalid_client_metadata"],
  ])("refuses %s", async (_name, metadata, error) => {
    const t = await ready();
    const [res, body] = await register(t, metadata);
    expect(res.status).toBe(400);
    expect(body.error).toBe(error);
  });

  test("refuses a form body with invalid_request", async () => {
    const t = await ready();
    const [res, body] = await request(t, "POST", "/oauth/register", { form: { redirect_uris: "https://app.example/cb" } });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_request");
  });

  test("answers 405 to GET", async () => {
    const t = await ready();
    const [res] = await request(t, "GET", "/oauth/register");
    expect(res.status).toBe(405);
  });
});

describe.each(backends)("dynamic client registration with TA_REGISTRATION_TOKEN [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_REGISTRATION_TOKEN: "s3cret-initial-token" });
  const metadata = { redirect_uris: ["https://app.example/cb"] };

  test.each([
    ["no Authorization header", {}],
    ["a wrong token", { authorization: "Bearer wrong-token" }],
    ["Basic credentials", { authorization: basic("s3cret-initial-token", "") }],
  ])("refuses %s with 401 invalid_token and registers nothing", async (_, headers) => {
    const t = await ready();
    const count = await clientCount(t);
    const [res, body] = await register(t, metadata, headers);
    expect(res.status).toBe(401);
    expect(body.error).toBe("invalid_token");
    expect(res.headers.get("www-authenticate")).toStartWith("Bearer");
    expect(await clientCount(t)).toBe(count);
  });

  test("registers with the right bearer token", async () => {
    const t = await ready();
    const [res, body] = await register(t, metadata, { authorization: "Bearer s3cret-initial-token" });
    expect(res.status).toBe(201);
    expect(await t.services.clients.find(body.client_id)).toBeDefined();
  });

  test("checks the token before looking at the body", async () => {
    const t = await ready();
    const [res] = await register(t, "{", {});
    expect(res.status).toBe(401);
  });
});

describe("open registration throttled per client address", () => {
  const ready = useTestApp("pglite", { TA_CLIENT_IP_HEADER: "x-forwarded-for", TA_REGISTRATION_LIMIT: "3", TA_REGISTRATION_WINDOW: "600" });
  const from = (address: string) => ({ "x-forwarded-for": address });

  test("the fourth registration from one address within the window is 429 with Retry-After; another address is not held back", async () => {
    const t = await ready();
    for (let i = 0; i < 3; i++) expect((await register(t, { redirect_uris: ["https://app.example/cb"] }, from("203.0.113.7")))[0].status).toBe(201);
    const count = await clientCount(t);
    const [res, body] = await register(t, { redirect_uris: ["https://app.example/cb"] }, from("203.0.113.7"));
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(590);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body.error).toBe("too_many_requests");
    expect(await clientCount(t)).toBe(count);
    expect((await register(t, { redirect_uris: ["https://app.example/cb"] }, from("198.51.100.2")))[0].status).toBe(201);
    expect(t.logs.some((line) => JSON.parse(line).event === "security.registration.throttled")).toBe(true);
  });
});
