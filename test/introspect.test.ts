// POST /oauth/introspect (RFC 7662): every token state × every caller kind, hints, client
// authentication, the request format, and database failure.
import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { sessions } from "../db/schema.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { basic, createClient, createTestApp, mintClientSession, mintCodeSession, post, request, useTestApp, rotateSession } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";

const INACTIVE = '{"active":false}';

/** Posts to the introspection endpoint and returns the raw text too (to check exact bodies). */
async function introspect(t: TestApp, caller: TestClient, form: Record<string, string>) {
  const [res, body] = await post(t, "/oauth/introspect", { ...caller.auth.form, ...form }, caller.auth.headers);
  return { res, body, text: JSON.stringify(body) };
}

async function resign(t: TestApp, token: string, change: (claims: Record<string, unknown>) => Record<string, unknown>) {
  const { kind, claims } = await t.services.tokens.verify(token);
  const { iss: _iss, ...rest } = claims;
  return t.services.tokens.sign(kind, change(rest) as never);
}

type Caller = "owner" | "other client" | "resource server" | "foreign resource server";
type Kind = "access" | "refresh";

interface Fixtures {
  owner: TestClient;
  callers: Record<Caller, TestClient>;
}

/** A token in a given state, all owned by `owner`. */
const states: Record<string, (t: TestApp, f: Fixtures) => Promise<{ token: string; kind: Kind }>> = {
  "live access token": async (t, f) => ({ token: (await mintCodeSession(t, f.owner)).accessToken, kind: "access" }),
  "live refresh token": async (t, f) => ({ token: (await mintCodeSession(t, f.owner)).refreshToken!, kind: "refresh" }),
  "live client_credentials token": async (t, f) => ({ token: (await mintClientSession(t, f.owner)).accessToken, kind: "access" }),
  "expired access token": async (t, f) => {
    const past = Math.floor(Date.now() / 1000) - 10;
    const token = await resign(t, (await mintCodeSession(t, f.owner)).accessToken, (c) => ({ ...c, iat: past - 60, exp: past }));
    return { token, kind: "access" };
  },
  "access token of an expired session": async (t, f) => {
    const s = await mintCodeSession(t, f.owner);
    await t.database.db.update(sessions).set({ accessExpiresAt: sql`now() - interval '1 second'` }).where(eq(sessions.id, s.sessionId));
    return { token: s.accessToken, kind: "access" };
  },
  "revoked access token": async (t, f) => {
    const s = await mintCodeSession(t, f.owner);
    expect((await post(t, "/oauth/revoke", { token: s.accessToken }, f.owner.auth.headers))[0].status).toBe(200);
    return { token: s.accessToken, kind: "access" };
  },
  "refresh token of a revoked family": async (t, f) => {
    const s = await mintCodeSession(t, f.owner);
    expect((await post(t, "/oauth/revoke", { token: s.accessToken }, f.owner.auth.headers))[0].status).toBe(200);
    return { token: s.refreshToken!, kind: "refresh" };
  },
  "access token rotated away": async (t, f) => {
    const s = await mintCodeSession(t, f.owner);
    const presented = s.refreshToken!;
    const rotated = await rotateSession(t, f.owner.client, presented);
    expect(rotated.outcome).toBe("rotated");
    return { token: s.accessToken, kind: "access" };
  },
  "refresh token rotated away": async (t, f) => {
    const s = await mintCodeSession(t, f.owner);
    const presented = s.refreshToken!;
    const rotated = await rotateSession(t, f.owner.client, presented);
    expect(rotated.outcome).toBe("rotated");
    return { token: s.refreshToken!, kind: "refresh" };
  },
  "unknown token (valid signature, no session)": async (t, f) => {
    const token = await resign(t, (await mintCodeSession(t, f.owner)).accessToken, (c) => ({ ...c, jti: randomUUID() }));
    return { token, kind: "access" };
  },
  "malformed token": async () => ({ token: "not-a-token", kind: "access" }),
  "tampered token": async (t, f) => {
    const [header, payload, signature] = (await mintCodeSession(t, f.owner)).accessToken.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, scope: "read write admin" })).toString("base64url");
    return { token: `${header}.${forged}.${signature}`, kind: "access" };
  },
  "unsigned token (alg none)": async (t, f) => {
    const payload = (await mintCodeSession(t, f.owner)).accessToken.split(".")[1];
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "at+jwt" })).toString("base64url");
    return { token: `${header}.${payload}.`, kind: "access" };
  },
};

const LIVE = new Set(["live access token", "live refresh token", "live client_credentials token"]);

/** Whether `caller` may see a live token of `kind` (the owner always; resource servers in aud, access tokens only). */
function visible(caller: Caller, kind: Kind): boolean {
  return caller === "owner" || (caller === "resource server" && kind === "access");
}

describe.each(backends)("introspection [%s]", (backend) => {
  const ready = useTestApp(backend);
  let fixtures: Fixtures;

  beforeAll(async () => {
    const t = await ready();
    const owner = await createClient(t, "confidential");
    fixtures = {
      owner,
      callers: {
        owner,
        "other client": await createClient(t, "confidential"),
        "resource server": await createClient(t, "confidential", { resourceServer: t.config.defaultAudience }),
        "foreign resource server": await createClient(t, "confidential", { resourceServer: "https://elsewhere.example/api" }),
      },
    };
  });

  const callers: Caller[] = ["owner", "other client", "resource server", "foreign resource server"];
  const matrix = Object.keys(states).flatMap((state) => callers.map((caller) => [state, caller] as const));

  test.each(matrix)("%s, asked by %s", async (state, caller) => {
    const t = await ready();
    const { token, kind } = await states[state]!(t, fixtures);
    const { res, body, text } = await introspect(t, fixtures.callers[caller], { token });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("content-type")).toContain("application/json");
    if (!(LIVE.has(state) && visible(caller, kind))) {
      expect(text).toBe(INACTIVE);
      return;
    }
    const { claims } = await t.services.tokens.verify(token);
    expect(body).toEqual({
      active: true,
      scope: claims.scope,
      client_id: fixtures.owner.client.clientId,
      sub: claims.sub,
      aud: claims.aud,
      iss: "http://localhost",
      exp: claims.exp,
      iat: claims.iat,
      jti: claims.jti,
      token_type: kind === "access" ? "Bearer" : "refresh_token",
    });
    expect(body.exp).toBeGreaterThan(Date.now() / 1000);
  });

  test.each([
    ["access", "access_token"],
    ["access", "refresh_token"],
    ["access", "bogus"],
    ["access", undefined],
    ["refresh", "access_token"],
    ["refresh", "refresh_token"],
    ["refresh", "bogus"],
    ["refresh", undefined],
  ] as const)("finds a live %s token whatever the hint [hint %s]", async (kind, hint) => {
    const t = await ready();
    const s = await mintCodeSession(t, fixtures.owner);
    const token = kind === "access" ? s.accessToken : s.refreshToken!;
    const { body } = await introspect(t, fixtures.owner, { token, ...(hint ? { token_type_hint: hint } : {}) });
    expect(body.active).toBe(true);
    expect(body.token_type).toBe(kind === "access" ? "Bearer" : "refresh_token");
  });

  test("a token goes from active to inactive when it is revoked", async () => {
    const t = await ready();
    const rs = fixtures.callers["resource server"];
    const s = await mintCodeSession(t, fixtures.owner);
    expect((await introspect(t, rs, { token: s.accessToken })).body.active).toBe(true);
    await post(t, "/oauth/revoke", { token: s.refreshToken!, token_type_hint: "refresh_token" }, fixtures.owner.auth.headers);
    expect((await introspect(t, rs, { token: s.accessToken })).text).toBe(INACTIVE);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
  });

  test("accepts client_secret_post", async () => {
    const t = await ready();
    const { client, secret } = fixtures.owner;
    const s = await mintCodeSession(t, fixtures.owner);
    const [res, body] = await post(t, "/oauth/introspect", { token: s.accessToken, client_id: client.clientId, client_secret: secret! });
    expect(res.status).toBe(200);
    expect(body.active).toBe(true);
  });

  test("refuses a public client, even for its own token", async () => {
    const t = await ready();
    const pub = await createClient(t, "public");
    const s = await mintCodeSession(t, pub);
    const { res, body } = await introspect(t, pub, { token: s.accessToken });
    expect(res.status).toBe(401);
    expect(body.error).toBe("invalid_client");
    expect(body.active).toBeUndefined();
  });

  test.each([
    ["no credentials", {}],
    ["a wrong secret", { authorization: "wrong" }],
    ["an unknown client", { authorization: basic("nobody", "secret") }],
  ] as const)("refuses a caller with %s", async (_name, headers) => {
    const t = await ready();
    const s = await mintCodeSession(t, fixtures.owner);
    const auth = "authorization" in headers && headers.authorization === "wrong"
      ? { authorization: basic(fixtures.owner.client.clientId, "not-the-secret") }
      : headers;
    const [res, body] = await post(t, "/oauth/introspect", { token: s.accessToken }, auth);
    expect(res.status).toBe(401);
    expect(body.error).toBe("invalid_client");
    expect(res.headers.get("cache-control")).toBe("no-store");
  });

  test.each([
    ["a missing token", { form: "" }],
    ["an empty token", { form: "token=" }],
    ["a repeated token", { form: "token=a&token=b" }],
    ["a JSON body", { body: '{"token":"x"}', headers: { "content-type": "application/json" } }],
  ] as const)("refuses %s with invalid_request", async (_name, init) => {
    const t = await ready();
    const headers = { ...fixtures.owner.auth.headers, ...("headers" in init ? init.headers : {}) };
    const [res, body] = await request(t, "POST", "/oauth/introspect", { ...init, headers });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_request");
  });

  test("answers 405 to other methods", async () => {
    const t = await ready();
    const [res] = await request(t, "GET", "/oauth/introspect");
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });
});

describe.each(backends)("introspection without a database [%s]", (backend) => {
  test("answers 503, never active", async () => {
    const t = await createTestApp(backend);
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    expect((await introspect(t, c, { token: s.accessToken })).body.active).toBe(true);
    await t.close();
    const { res, body } = await introspect(t, c, { token: s.accessToken });
    expect(res.status).toBe(503);
    expect(body).toEqual({ error: "temporarily_unavailable", error_description: expect.any(String) });
  }, 30_000);
});
