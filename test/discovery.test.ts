// Discovery: /.well-known/oauth-authorization-server (RFC 8414), /.well-known/jwks.json and
// /.well-known/oauth-protected-resource (RFC 9728), checked against what the server really does.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { compactVerify, createLocalJWKSet } from "jose";
import { createClient, post, request, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { tokenRequest } from "./helpers/grants.ts";

setDefaultTimeout(30_000);

const ISSUER = "https://auth.example";

describe.each(backends)("discovery [%s]", (backend) => {
  const ready = useTestApp(backend, {
    TA_ISSUER: ISSUER,
    TA_SCOPES: "read,write,admin",
    TA_RESOURCES: JSON.stringify([
      { resource: "https://api.example", scopes: ["read", "write"] },
      { resource: "https://api.example/v2", scopes: ["admin"] },
    ]),
  });

  test("publishes authorization server metadata derived from the issuer", async () => {
    const t = await ready();
    const [res, body] = await request(t, "GET", "/.well-known/oauth-authorization-server");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("public, max-age=300");
    expect(body).toEqual({
      issuer: ISSUER,
      authorization_endpoint: `${ISSUER}/oauth/authorize`,
      token_endpoint: `${ISSUER}/oauth/token`,
      registration_endpoint: `${ISSUER}/oauth/register`,
      revocation_endpoint: `${ISSUER}/oauth/revoke`,
      introspection_endpoint: `${ISSUER}/oauth/introspect`,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      userinfo_endpoint: `${ISSUER}/oauth/userinfo`,
      end_session_endpoint: `${ISSUER}/oauth/end-session`,
      backchannel_logout_supported: true,
      backchannel_logout_session_supported: true,
      // The server is an OpenID Provider: openid is always a scope of it.
      scopes_supported: ["openid", "read", "write", "admin"],
      response_types_supported: ["code"],
      response_modes_supported: ["query"],
      grant_types_supported: ["authorization_code", "refresh_token", "client_credentials"],
      code_challenge_methods_supported: ["S256"],
      dpop_signing_alg_values_supported: ["ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
      revocation_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
      introspection_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
      authorization_response_iss_parameter_supported: true,
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["ES256"],
      claims_supported: ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "at_hash", "sid"],
      claims_parameter_supported: false,
      request_parameter_supported: false,
      request_uri_parameter_supported: false,
      prompt_values_supported: ["none", "login", "consent", "select_account"],
      client_id_metadata_document_supported: true,
    });
  });

  test("lists only endpoints this server routes, at the paths it routes them", async () => {
    const t = await ready();
    const [, metadata] = await request(t, "GET", "/.well-known/oauth-authorization-server");
    for (const key of ["token_endpoint", "registration_endpoint", "revocation_endpoint"]) {
      const path = new URL(metadata[key]).pathname;
      const [res] = await request(t, "POST", path, { form: {} });
      expect({ key, status: res.status }).not.toEqual({ key, status: 404 });
    }
    const [jwks] = await request(t, "GET", new URL(metadata.jwks_uri).pathname);
    expect(jwks.status).toBe(200);
  });

  test("supports every advertised grant type and token endpoint auth method", async () => {
    const t = await ready();
    const [, metadata] = await request(t, "GET", "/.well-known/oauth-authorization-server");
    const c = await createClient(t, "confidential", { scope: "read" });
    for (const grantType of metadata.grant_types_supported) {
      const [, body] = await tokenRequest(t, c, { grant_type: grantType });
      expect({ grantType, error: body.error }).not.toEqual({ grantType, error: "unsupported_grant_type" });
    }
    const basic = await tokenRequest(t, c, { grant_type: "client_credentials" });
    const postAuth = await post(t, "/oauth/token", { grant_type: "client_credentials", client_id: c.client.clientId, client_secret: c.secret! });
    const pub = await createClient(t, "public");
    const none = await post(t, "/oauth/token", { grant_type: "refresh_token", refresh_token: "x", client_id: pub.client.clientId });
    expect(basic[0].status).toBe(200);
    expect(postAuth[0].status).toBe(200);
    expect(none[1].error).toBe("invalid_grant"); // authenticated as public client; the token is what fails
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(["client_secret_basic", "client_secret_post", "none"]);
  });

  test("publishes the public signing keys, which verify issued tokens, and never a private part", async () => {
    const t = await ready();
    const [res, jwks] = await request(t, "GET", "/.well-known/jwks.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("public, max-age=300");
    expect(jwks.keys.length).toBeGreaterThanOrEqual(1);
    for (const key of jwks.keys) {
      // (no asymmetric matchers in toMatchObject here: Bun 1.4.5 writes them into the received object)
      expect(typeof key.kid).toBe("string");
      expect(key).toMatchObject({ alg: "ES256", use: "sig", kty: "EC" });
      expect(key.d).toBeUndefined();
    }
    const c = await createClient(t, "confidential", { scope: "read" });
    const [, token] = await tokenRequest(t, c, { grant_type: "client_credentials" });
    const { protectedHeader } = await compactVerify(token.access_token, createLocalJWKSet(jwks));
    expect(protectedHeader.typ).toBe("at+jwt");
  });

  test("keeps publishing a retired key after rotation", async () => {
    const t = await ready();
    const [, before] = await request(t, "GET", "/.well-known/jwks.json");
    const { retired, active } = await t.services.keys.rotate();
    const [, after] = await request(t, "GET", "/.well-known/jwks.json");
    const kids = after.keys.map((k: { kid: string }) => k.kid);
    expect(kids).toContain(active);
    expect(kids).toContain(retired);
    expect(before.keys.map((k: { kid: string }) => k.kid)).toContain(retired);
  });

  test("publishes protected resource metadata for the configured resources (RFC 9728)", async () => {
    const t = await ready();
    const [res, root] = await request(t, "GET", "/.well-known/oauth-protected-resource");
    expect(res.status).toBe(200);
    expect(root).toEqual({
      resource: "https://api.example",
      authorization_servers: [ISSUER],
      scopes_supported: ["read", "write"],
      bearer_methods_supported: ["header"],
    });
    const [, v2] = await request(t, "GET", "/.well-known/oauth-protected-resource/v2");
    expect(v2.resource).toBe("https://api.example/v2");
    expect(v2.scopes_supported).toEqual(["admin"]);
    const [missing, body] = await request(t, "GET", "/.well-known/oauth-protected-resource/v3");
    expect(missing.status).toBe(404);
    expect(body.error).toBe("not_found");
  });

  test.each(["/.well-known/oauth-authorization-server", "/.well-known/jwks.json", "/.well-known/oauth-protected-resource"])(
    "answers 405 to POST %s",
    async (path) => {
      const t = await ready();
      const [res] = await request(t, "POST", path, { form: {} });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("GET");
    },
  );
});

describe.each(backends)("discovery with default configuration [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("describes the default audience as the protected resource", async () => {
    const t = await ready();
    const [, body] = await request(t, "GET", "/.well-known/oauth-protected-resource");
    expect(body.resource).toBe(t.config.defaultAudience);
    // offline_access is the client's concern, not the resource's (MCP authorization 2026-07-28).
    // openid asks for an ID token, not for access to the API.
    expect(body.scopes_supported).toEqual(t.config.scopes.filter((scope) => scope !== "offline_access" && scope !== "openid"));
    expect(t.config.scopes).toContain("offline_access");
    expect(body.authorization_servers).toEqual([t.config.issuer]);
  });
});
