// The resource-server library and the example protected API: RFC 9068 §4 checks, RFC 6750
// errors, and revocation honoured through the feed and through introspection.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createProtectedApi } from "../examples/protected-api.ts";
import type { AccessTokenVerifier, VerifierOptions } from "@token-authority/resource-server";
import { createAccessTokenVerifier, DenyList } from "@token-authority/resource-server";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, createTestApp, mintCodeSession, post, rotateSession } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import type { ServedApp } from "./helpers/serve.ts";
import { serve } from "./helpers/serve.ts";

/** RFC 9728 §3.1: where the metadata of the default audience (http://localhost/api) is; every challenge names it. */
const PRM = "http://localhost/.well-known/oauth-protected-resource/api";

interface Setup {
  t: TestApp;
  served: ServedApp;
  owner: TestClient;
  api: TestClient;
}

function verifierFor(s: Setup, mode: "feed" | "introspection", extra: Partial<VerifierOptions> = {}): AccessTokenVerifier {
  const credentials = { clientId: s.api.client.clientId, clientSecret: s.api.secret! };
  return createAccessTokenVerifier({
    issuer: s.t.config.issuer,
    audience: s.t.config.defaultAudience,
    jwksUri: `${s.served.url}/.well-known/jwks.json`,
    revocation:
      mode === "feed"
        ? { mode, url: `${s.served.url}/oauth/revocations`, ...credentials }
        : { mode, url: `${s.served.url}/oauth/introspect`, cacheTtlMs: 50, ...credentials },
    ...extra,
  });
}

async function call(api: ReturnType<typeof createProtectedApi>, path: string, token?: string, init: RequestInit = {}) {
  const headers = new Headers(init.headers);
  if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
  const res = await api.handle(new Request(`http://api.local${path}`, { ...init, headers }));
  return { res, body: await res.json().catch(() => undefined) };
}

/** Polls until the API stops accepting the token; returns how long that took. */
async function untilRefused(api: ReturnType<typeof createProtectedApi>, token: string, timeoutMs = 3000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    const { res } = await call(api, "/me", token);
    if (res.status === 401) return performance.now() - started;
    await Bun.sleep(5);
  }
  throw new Error("the API still accepts the token");
}

describe.each(backends)("resource-server library [%s]", (backend) => {
  let s: Setup;
  const verifiers: AccessTokenVerifier[] = [];
  const track = (v: AccessTokenVerifier) => (verifiers.push(v), v);

  beforeAll(async () => {
    const t = await createTestApp(backend);
    s = {
      t,
      served: serve(t),
      owner: await createClient(t, "confidential"),
      api: await createClient(t, "confidential", { resourceServer: t.config.defaultAudience }),
    };
  }, 60_000);
  afterAll(async () => {
    for (const v of verifiers) v.close();
    await s.served.stop();
    await s.t.close();
  });

  describe.each(["feed", "introspection"] as const)("%s mode", (mode) => {
    let api: ReturnType<typeof createProtectedApi>;
    beforeAll(async () => {
      const verifier = track(verifierFor(s, mode));
      await verifier.ready();
      api = createProtectedApi(verifier);
    });

    test("accepts a live token and refuses it once revoked", async () => {
      const session = await mintCodeSession(s.t, s.owner);
      const ok = await call(api, "/me", session.accessToken);
      expect(ok.res.status).toBe(200);
      expect(ok.body.sub).toBe("user-1");
      const [revoked] = await post(s.t, "/oauth/revoke", { token: session.refreshToken! }, s.owner.auth.headers);
      expect(revoked.status).toBe(200);
      await untilRefused(api, session.accessToken);
      const { res, body } = await call(api, "/me", session.accessToken);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe(
        `Bearer realm="api", error="invalid_token", error_description="${body.error_description}", resource_metadata="${PRM}"`,
      );
      expect(body.error).toBe("invalid_token");
      // Another live token is unaffected.
      expect((await call(api, "/me", (await mintCodeSession(s.t, s.owner)).accessToken)).res.status).toBe(200);
    });

    test("refuses an access token rotated away by a refresh", async () => {
      const session = await mintCodeSession(s.t, s.owner);
      expect((await call(api, "/me", session.accessToken)).res.status).toBe(200);
      const presented = session.refreshToken!;
      const rotated = await rotateSession(s.t, s.owner.client, presented);
      expect(rotated.outcome).toBe("rotated");
      await untilRefused(api, session.accessToken);
    });
  });

  describe("token checks (RFC 9068 §4, RFC 6750 §3)", () => {
    let api: ReturnType<typeof createProtectedApi>;
    beforeAll(async () => {
      const verifier = track(verifierFor(s, "feed", { jwksRefreshCooldownSeconds: 0 }));
      await verifier.ready();
      api = createProtectedApi(verifier);
    });

    const resign = async (token: string, change: (claims: Record<string, unknown>) => Record<string, unknown>, kind?: "refresh_token") => {
      const verified = await s.t.services.tokens.verify(token);
      const { iss: _iss, ...rest } = verified.claims;
      return s.t.services.tokens.sign(kind ?? verified.kind, change(rest) as never);
    };

    test("answers 401 without an error code when there is no token", async () => {
      for (const headers of [{}, { authorization: "Basic dXNlcjpwYXNz" }] as Record<string, string>[]) {
        const { res, body } = await call(api, "/me", undefined, { headers });
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toBe(`Bearer realm="api", resource_metadata="${PRM}"`);
        expect(body.error).toBe("invalid_token");
      }
    });

    test("answers 400 invalid_request to a malformed Authorization header", async () => {
      const { res, body } = await call(api, "/me", undefined, { headers: { authorization: "Bearer two tokens" } });
      expect(res.status).toBe(400);
      expect(body.error).toBe("invalid_request");
      expect(res.headers.get("www-authenticate")).toContain('error="invalid_request"');
    });

    test.each([
      ["another audience", (tok: string) => resign(tok, (c) => ({ ...c, aud: "https://other.example/api" }))],
      ["an expired token", (tok: string) => resign(tok, (c) => ({ ...c, exp: Math.floor(Date.now() / 1000) - 60 }))],
      ["a refresh token", (tok: string) => resign(tok, (c) => c, "refresh_token")],
      ["no client_id", (tok: string) => resign(tok, ({ client_id: _c, ...c }) => c)],
      ["a tampered payload", async (tok: string) => {
        const [h, p, sig] = tok.split(".");
        const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
        return `${h}.${Buffer.from(JSON.stringify({ ...claims, scope: "read write admin" })).toString("base64url")}.${sig}`;
      }],
      ["alg none", async (tok: string) => `${Buffer.from(JSON.stringify({ alg: "none", typ: "at+jwt" })).toString("base64url")}.${tok.split(".")[1]}.`],
      ["garbage", async () => "abc.def.ghi"],
    ])("refuses %s with 401 invalid_token", async (_name, make) => {
      const token = await make((await mintCodeSession(s.t, s.owner)).accessToken);
      const { res, body } = await call(api, "/me", token);
      expect(res.status).toBe(401);
      expect(body.error).toBe("invalid_token");
      expect(res.headers.get("www-authenticate")).toStartWith('Bearer realm="api", error="invalid_token"');
    });

    test("answers 403 insufficient_scope, naming the scope needed", async () => {
      const token = (await mintCodeSession(s.t, s.owner)).accessToken; // scope "read"
      expect((await call(api, "/notes", token)).res.status).toBe(200);
      const { res, body } = await call(api, "/notes", token, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: "hello" }),
      });
      expect(res.status).toBe(403);
      expect(body.error).toBe("insufficient_scope");
      expect(res.headers.get("www-authenticate")).toContain('error="insufficient_scope"');
      // The scope needed united with the token's own (read), so that a client stepping up keeps it.
      expect(res.headers.get("www-authenticate")).toContain('scope="read write"');
    });

    test("fetches the key set again for an unknown kid (key rotation)", async () => {
      expect((await call(api, "/me", (await mintCodeSession(s.t, s.owner)).accessToken)).res.status).toBe(200);
      await s.t.services.keys.rotate();
      const token = (await mintCodeSession(s.t, s.owner)).accessToken;
      expect((await call(api, "/me", token)).res.status).toBe(200);
    });
  });

  describe("when revocation cannot be checked", () => {
    test("feed mode answers 503 before the feed has synchronised", async () => {
      const verifier = track(verifierFor(s, "feed", { revocation: { mode: "feed", url: "http://127.0.0.1:9/none", clientId: "x", clientSecret: "y" } }));
      const { res, body } = await call(createProtectedApi(verifier), "/me", (await mintCodeSession(s.t, s.owner)).accessToken);
      expect(res.status).toBe(503);
      expect(body.error).toBe("temporarily_unavailable");
      expect(res.headers.get("www-authenticate")).toBeNull();
    });

    test("feed mode answers 503 once the feed has been silent too long", async () => {
      const verifier = track(
        verifierFor(s, "feed", {
          revocation: { mode: "feed", url: `${s.served.url}/oauth/revocations`, clientId: s.api.client.clientId, clientSecret: s.api.secret!, maxStalenessMs: 100 },
        }),
      );
      await verifier.ready();
      const api = createProtectedApi(verifier);
      const token = (await mintCodeSession(s.t, s.owner)).accessToken;
      expect((await call(api, "/me", token)).res.status).toBe(200);
      await Bun.sleep(150); // heartbeats come every 5 s
      expect((await call(api, "/me", token)).res.status).toBe(503);
    });

    test("introspection mode answers 503 when the server cannot be reached", async () => {
      const verifier = track(verifierFor(s, "introspection", { revocation: { mode: "introspection", url: "http://127.0.0.1:9/none", clientId: "x", clientSecret: "y" } }));
      const { res } = await call(createProtectedApi(verifier), "/me", (await mintCodeSession(s.t, s.owner)).accessToken);
      expect(res.status).toBe(503);
    });

    test("introspection mode refuses a token the resource server is not allowed to see", async () => {
      const stranger = await createClient(s.t, "confidential"); // no --resource-server
      const verifier = track(
        verifierFor(s, "introspection", {
          revocation: { mode: "introspection", url: `${s.served.url}/oauth/introspect`, clientId: stranger.client.clientId, clientSecret: stranger.secret! },
        }),
      );
      const { res } = await call(createProtectedApi(verifier), "/me", (await mintCodeSession(s.t, s.owner)).accessToken);
      expect(res.status).toBe(401);
    });
  });
});

describe("deny-list", () => {
  test("keeps an entry until its token has expired past the tolerated skew", () => {
    const list = new DenyList(5);
    const now = Date.now();
    list.add("a", Math.floor(now / 1000) - 10);
    list.add("b", Math.floor(now / 1000) - 2);
    list.add("c", Math.floor(now / 1000) + 60);
    list.prune(now);
    expect([list.has("a"), list.has("b"), list.has("c")]).toEqual([false, true, true]);
    expect(list.size).toBe(2);
  });
});
