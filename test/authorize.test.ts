// GET /oauth/authorize: every way a request can be invalid, untrustworthy errors shown (never
// redirected), the others sent to the client with error, state and iss (RFC 9207).
import { describe, expect, test } from "bun:test";
import { createClient, useTestApp } from "./helpers/app.ts";
import { Agent, authorizeUrl, pkce, redirectParams } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";

describe.each(backends)("authorization request [%s]", (backend) => {
  const ready = useTestApp(backend, {
    TA_RESOURCES: JSON.stringify([{ resource: "https://api.example/", scopes: ["read", "write"] }]),
  });

  async function setup() {
    const t = await ready();
    const c = await createClient(t, "public", {
      redirectUris: ["https://app.example/callback?tenant=7", "http://127.0.0.1/loopback", "http://[::1]:4000/v6"],
    });
    return { t, c, agent: new Agent(t) };
  }

  async function expectUntrusted(path: string, agent: Agent, reason: RegExp) {
    const page = await agent.get(path);
    expect(page.res.status).toBe(400);
    expect(page.location).toBeNull();
    expect(page.res.headers.get("content-type")).toStartWith("text/html");
    expect(page.res.headers.get("cache-control")).toBe("no-store");
    expect(page.text).toMatch(reason);
  }

  test("shows an error page, never a redirect, for an unknown client", async () => {
    const { c, agent } = await setup();
    await expectUntrusted(authorizeUrl(c, { client_id: "no-such-client", redirect_uri: "https://evil.example/cb" }), agent, /unknown client_id/);
  });

  test("shows an error page for a missing client_id", async () => {
    const { c, agent } = await setup();
    await expectUntrusted(authorizeUrl(c, { client_id: undefined }), agent, /client_id is missing/);
  });

  test("shows an error page for a repeated client_id", async () => {
    const { c, agent } = await setup();
    await expectUntrusted(authorizeUrl(c, {}, [["client_id", c.client.clientId]]), agent, /client_id is repeated/);
  });

  test.each([
    ["an unregistered host (no open redirect)", "https://evil.example/callback?tenant=7"],
    ["a registered URI without its query", "https://app.example/callback"],
    ["a registered URI with a different path", "https://app.example/callback/x?tenant=7"],
    ["a registered URI with a fragment", "https://app.example/callback?tenant=7#x"],
    ["a registered URI on another port", "https://app.example:8443/callback?tenant=7"],
    ["a loopback URI on another path", "http://127.0.0.1:5000/other"],
    ["a loopback URI by name, not IP", "http://localhost:5000/loopback"],
    ["a loopback URI over https", "https://127.0.0.1:5000/loopback"],
    ["a non-URI", "not a uri"],
  ])("shows an error page for a redirect_uri that is %s", async (_name, redirectUri) => {
    const { c, agent } = await setup();
    await expectUntrusted(authorizeUrl(c, { redirect_uri: redirectUri }), agent, /redirect_uri is not registered/);
  });

  test("requires redirect_uri when the client has several", async () => {
    const { c, agent } = await setup();
    await expectUntrusted(authorizeUrl(c, { redirect_uri: undefined }), agent, /redirect_uri is required/);
  });

  test("uses the only registered redirect URI when redirect_uri is omitted", async () => {
    const { t, agent } = await setup();
    const single = await createClient(t, "public");
    const page = await agent.get(authorizeUrl(single, { redirect_uri: undefined, response_type: "token" }));
    expect(page.res.status).toBe(302);
    expect(page.location).toStartWith("https://app.example/callback?");
  });

  test.each([
    ["IPv4", "http://127.0.0.1:51234/loopback"],
    ["IPv4 without a port", "http://127.0.0.1/loopback"],
    ["IPv6", "http://[::1]:61000/v6"],
  ])("accepts a loopback redirect URI on any port [%s] (RFC 8252 §7.3)", async (_name, redirectUri) => {
    const { c, agent } = await setup();
    const page = await agent.get(authorizeUrl(c, { redirect_uri: redirectUri, response_type: "token" }));
    expect(page.res.status).toBe(302);
    const location = new URL(page.location!);
    expect(location.origin + location.pathname).toBe(new URL(redirectUri).origin + new URL(redirectUri).pathname);
    expect(location.searchParams.get("error")).toBe("unsupported_response_type");
  });

  const challenge = pkce().challenge;
  test.each([
    ["response_type missing", { response_type: undefined }, "invalid_request", /response_type/],
    ["response_type=token", { response_type: "token" }, "unsupported_response_type", /code/],
    ["response_type=code id_token", { response_type: "code id_token" }, "unsupported_response_type", /code/],
    ["code_challenge missing (PKCE)", { code_challenge: undefined }, "invalid_request", /code_challenge is required/],
    ["code_challenge_method missing", { code_challenge_method: undefined }, "invalid_request", /S256/],
    ["code_challenge_method=plain", { code_challenge_method: "plain", code_challenge: challenge }, "invalid_request", /S256/],
    ["code_challenge too short", { code_challenge: "abc" }, "invalid_request", /43 base64url/],
    ["code_challenge not base64url", { code_challenge: `${"a".repeat(42)}=` }, "invalid_request", /43 base64url/],
    ["scope not registered for the client", { scope: "read admin" }, "invalid_scope", /admin/],
    ["scope unknown to the server", { scope: "admin" }, "invalid_scope", /admin/],
    ["state too long", { state: "s".repeat(3000) }, "invalid_request", /state is too long/],
  ] as const)("redirects with an error when %s", async (_name, overrides, error, description) => {
    const { t, c, agent } = await setup();
    const page = await agent.get(authorizeUrl(c, overrides));
    expect(page.res.status).toBe(302);
    const location = new URL(page.location!);
    expect(location.origin + location.pathname).toBe("https://app.example/callback");
    // OAuth 2.1 §4.1.2: the query of the registered URI is kept.
    expect(location.searchParams.get("tenant")).toBe("7");
    expect(location.searchParams.get("error")).toBe(error);
    expect(location.searchParams.get("error_description")).toMatch(description);
    expect(location.searchParams.get("iss")).toBe(t.config.issuer);
    expect(location.searchParams.has("code")).toBe(false);
    if (!("state" in overrides)) expect(location.searchParams.get("state")).toBe("st-123");
  });

  test.each([
    ["scope", "write"],
    ["state", "again"],
    ["response_type", "code"],
    ["code_challenge", pkce().challenge],
  ])("redirects with invalid_request when %s is repeated", async (name, value) => {
    const { c, agent } = await setup();
    const page = await agent.get(authorizeUrl(c, {}, [[name, value]]));
    const params = redirectParams(page.location);
    expect(params.get("error")).toBe("invalid_request");
    expect(params.get("error_description")).toBe(`parameter ${name} is repeated`);
  });

  test.each([
    ["unknown", "https://other.example/"],
    ["relative", "/api"],
    ["with a fragment", "https://api.example/#frag"],
  ])("redirects with invalid_target for a resource that is %s (RFC 8707)", async (_name, resource) => {
    const { c, agent } = await setup();
    const page = await agent.get(authorizeUrl(c, {}, [["resource", resource]]));
    expect(redirectParams(page.location).get("error")).toBe("invalid_target");
  });

  test("redirects with unauthorized_client when the client may not use the code grant", async () => {
    const { t, agent } = await setup();
    const machine = await createClient(t, "confidential", { grantTypes: ["client_credentials"], responseTypes: [] });
    const page = await agent.get(authorizeUrl(machine));
    expect(redirectParams(page.location).get("error")).toBe("unauthorized_client");
  });

  test("requires PKCE from confidential clients too", async () => {
    const { t, agent } = await setup();
    const confidential = await createClient(t, "confidential");
    const page = await agent.get(authorizeUrl(confidential, { code_challenge: undefined, code_challenge_method: undefined }));
    expect(redirectParams(page.location).get("error")).toBe("invalid_request");
    expect(redirectParams(page.location).get("error_description")).toMatch(/code_challenge/);
  });

  test("omits state from an error redirect when the request had none", async () => {
    const { c, agent } = await setup();
    const page = await agent.get(authorizeUrl(c, { state: undefined, response_type: "token" }));
    expect(redirectParams(page.location).has("state")).toBe(false);
  });

  test("sends a valid request from a signed-out browser to the login page", async () => {
    const { c, agent } = await setup();
    const path = authorizeUrl(c, { scope: "read write" }, [["resource", "https://api.example/"]]);
    const page = await agent.get(path);
    expect(page.res.status).toBe(302);
    const login = new URL(page.location!, "http://localhost");
    expect(login.pathname).toBe("/oauth/login");
    const returnTo = new URL(login.searchParams.get("return_to")!, "http://localhost");
    expect(returnTo.pathname).toBe("/oauth/authorize");
    expect(returnTo.searchParams.get("client_id")).toBe(c.client.clientId);
    expect(returnTo.searchParams.get("scope")).toBe("read write");
    expect(returnTo.searchParams.getAll("resource")).toEqual(["https://api.example/"]);
  });

  test("answers other methods with 405", async () => {
    const { agent } = await setup();
    const page = await agent.post("/oauth/authorize", {});
    expect(page.res.status).toBe(405);
    expect(page.res.headers.get("allow")).toBe("GET");
  });
});
