// DPoP at the token endpoint (RFC 9449): proofs on every grant, token_type DPoP and cnf.jkt,
// refresh tokens of public clients bound and checked at every rotation, dpop_jkt binding a code,
// dpop_bound_access_tokens, server nonces, introspection's cnf — and every bad proof refused with
// nothing issued and nothing changed; on both backends.
import { describe, expect, test } from "bun:test";
import { decodeJwt } from "jose";
import { count, eq } from "drizzle-orm";
import { dpopProofs, sessions } from "../db/schema.ts";
import { SessionStore } from "../db/stores/sessions.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { admin, basic, createClient, createTestApp, introspect, post, request, useTestApp } from "./helpers/app.ts";
import { backends, createPostgresDatabase, TEST_DATABASE_URL } from "./helpers/db.ts";
import { openPostgres } from "../db/client.ts";
import type { DpopKey } from "./helpers/dpop.ts";
import { dpopKey, unsignedJws } from "./helpers/dpop.ts";
import { issueCode, redeem } from "./helpers/grants.ts";

const tokenUrl = (t: TestApp) => `${t.config.issuer}/oauth/token`;

async function tokenWith(t: TestApp, c: TestClient, form: Record<string, string>, proof?: string | string[]) {
  const headers: Record<string, string> = { ...c.auth.headers };
  const res = await t.app.handle(
    new Request("http://localhost/oauth/token", {
      method: "POST",
      headers: (() => {
        const h = new Headers({ ...headers, "content-type": "application/x-www-form-urlencoded" });
        for (const value of proof === undefined ? [] : Array.isArray(proof) ? proof : [proof]) h.append("dpop", value);
        return h;
      })(),
      body: new URLSearchParams({ ...c.auth.form, ...form }),
    }),
  );
  return [res, await res.json()] as const;
}

const sessionCount = async (t: TestApp, c: TestClient) =>
  Number((await t.database.db.select({ n: count() }).from(sessions).where(eq(sessions.clientId, c.client.clientId)))[0]!.n);

describe.each(backends)("DPoP at the token endpoint [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("client_credentials with a proof: token_type DPoP, cnf.jkt of the key, introspected with cnf", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const key = await dpopKey();
    const [res, body] = await tokenWith(t, c, { grant_type: "client_credentials", scope: "read" }, await key.proof({ htu: tokenUrl(t) }));
    expect(res.status).toBe(200);
    expect(body.token_type).toBe("DPoP");
    expect(decodeJwt(body.access_token).cnf).toEqual({ jkt: key.jkt });
    const [, introspected] = await introspect(t, c, body.access_token);
    expect(introspected).toMatchObject({ active: true, token_type: "DPoP", cnf: { jkt: key.jkt } });
    // Without a proof: a bearer token, as before.
    const [, bearer] = await tokenWith(t, c, { grant_type: "client_credentials", scope: "read" });
    expect(bearer.token_type).toBe("Bearer");
    expect(decodeJwt(bearer.access_token).cnf).toBeUndefined();
  });

  test("a public client's refresh token is bound: each rotation needs a proof by the same key; another key changes nothing", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const key = await dpopKey();
    const code = await issueCode(t, c);
    const [exchanged, tokens] = await (async () => {
      const proof = await key.proof({ htu: tokenUrl(t) });
      return tokenWith(t, c, { grant_type: "authorization_code", code: code.code, code_verifier: code.verifier, redirect_uri: code.redirectUri }, proof);
    })();
    expect(exchanged.status).toBe(200);
    expect(tokens.token_type).toBe("DPoP");
    expect(decodeJwt(tokens.refresh_token).cnf).toEqual({ jkt: key.jkt });

    const other = await dpopKey();
    const before = await sessionCount(t, c);
    const [stolen, stolenBody] = await tokenWith(t, c, { grant_type: "refresh_token", refresh_token: tokens.refresh_token }, await other.proof({ htu: tokenUrl(t) }));
    expect([stolen.status, stolenBody.error]).toEqual([400, "invalid_grant"]);
    const [bare, bareBody] = await tokenWith(t, c, { grant_type: "refresh_token", refresh_token: tokens.refresh_token });
    expect([bare.status, bareBody.error]).toEqual([400, "invalid_dpop_proof"]);
    expect(await sessionCount(t, c)).toBe(before);

    // The rightful key still rotates it: nothing was spent by the refusals.
    const [rotated, next] = await tokenWith(t, c, { grant_type: "refresh_token", refresh_token: tokens.refresh_token }, await key.proof({ htu: tokenUrl(t) }));
    expect(rotated.status).toBe(200);
    expect(next.token_type).toBe("DPoP");
    expect(decodeJwt(next.access_token).cnf).toEqual({ jkt: key.jkt });
    expect(decodeJwt(next.refresh_token).cnf).toEqual({ jkt: key.jkt });
    const [, introspected] = await introspect(t, await createClient(t, "confidential", { resourceServer: t.config.defaultAudience }), next.access_token);
    expect(introspected).toMatchObject({ active: true, cnf: { jkt: key.jkt } });
  });

  test("a DPoP-bound family ends like any other: RFC 7009 without a proof (keycloak#50306), and Revoke access on the account page", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const key = await dpopKey();
    const exchange = async () => {
      const code = await issueCode(t, c);
      const [, tokens] = await tokenWith(t, c, { grant_type: "authorization_code", code: code.code, code_verifier: code.verifier, redirect_uri: code.redirectUri }, await key.proof({ htu: tokenUrl(t) }));
      expect(tokens.token_type).toBe("DPoP");
      return { ...tokens, userId: code.userId };
    };
    const refreshRefused = async (refreshToken: string) => {
      const [res, body] = await tokenWith(t, c, { grant_type: "refresh_token", refresh_token: refreshToken }, await key.proof({ htu: tokenUrl(t) }));
      expect([res.status, body.error]).toEqual([400, "invalid_grant"]);
    };
    // RFC 7009 §2.1 authenticates the client, not a proof of possession: a public client revokes its bound refresh token with client_id alone.
    const first = await exchange();
    const [revoked] = await post(t, "/oauth/revoke", { client_id: c.client.clientId, token: first.refresh_token });
    expect(revoked.status).toBe(200);
    await refreshRefused(first.refresh_token);
    const resourceServer = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
    expect((await introspect(t, resourceServer, first.access_token))[1]).toEqual({ active: false });
    // "Revoke access" withdraws the client from the user: every bound family of theirs ends.
    const second = await exchange();
    expect(await t.services.consents.withdraw(second.userId, c.client.clientId)).toBeGreaterThanOrEqual(1);
    await refreshRefused(second.refresh_token);
    expect((await introspect(t, resourceServer, second.access_token))[1]).toEqual({ active: false });
  });

  test("a confidential client's refresh token stays unbound (its access tokens are bound per request)", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const key = await dpopKey();
    const code = await issueCode(t, c);
    const [, tokens] = await tokenWith(t, c, { grant_type: "authorization_code", code: code.code, code_verifier: code.verifier, redirect_uri: code.redirectUri }, await key.proof({ htu: tokenUrl(t) }));
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt: key.jkt });
    expect(decodeJwt(tokens.refresh_token).cnf).toBeUndefined();
    const [res, bearer] = await tokenWith(t, c, { grant_type: "refresh_token", refresh_token: tokens.refresh_token });
    expect([res.status, bearer.token_type]).toEqual([200, "Bearer"]);
  });

  test("dpop_jkt binds the code (§10): another key is refused without spending it, the right key redeems it", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const key = await dpopKey();
    const code = await issueCode(t, c, { dpopJkt: key.jkt });
    const form = { grant_type: "authorization_code", code: code.code, code_verifier: code.verifier, redirect_uri: code.redirectUri };
    const [wrong, wrongBody] = await tokenWith(t, c, form, await (await dpopKey()).proof({ htu: tokenUrl(t) }));
    expect([wrong.status, wrongBody.error]).toEqual([400, "invalid_dpop_proof"]);
    const [none, noneBody] = await redeem(t, c, code);
    expect([none.status, noneBody.error]).toEqual([400, "invalid_dpop_proof"]);
    const [ok, tokens] = await tokenWith(t, c, form, await key.proof({ htu: tokenUrl(t) }));
    expect([ok.status, tokens.token_type]).toEqual([200, "DPoP"]);
  });

  test("a client registered with dpop_bound_access_tokens must send a proof (§5.2)", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { metadata: { dpop_bound_access_tokens: true } });
    const [res, body] = await tokenWith(t, c, { grant_type: "client_credentials" });
    expect([res.status, body.error]).toEqual([400, "invalid_dpop_proof"]);
    const [ok, tokens] = await tokenWith(t, c, { grant_type: "client_credentials" }, await (await dpopKey()).proof({ htu: tokenUrl(t) }));
    expect([ok.status, tokens.token_type]).toEqual([200, "DPoP"]);
  });

  test("dpop_bound_access_tokens is registered through the one metadata path: RFC 7591 and the admin API", async () => {
    const t = await ready();
    const [registered, client] = await request(t, "POST", "/oauth/register", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_name: "bound", grant_types: ["client_credentials"], token_endpoint_auth_method: "client_secret_basic", dpop_bound_access_tokens: true }),
    });
    expect([registered.status, client.dpop_bound_access_tokens]).toEqual([201, true]);
    const auth = { client: (await t.services.clients.find(client.client_id))!, secret: client.client_secret, auth: { form: {}, headers: { authorization: basic(client.client_id, client.client_secret) } } };
    const [refused, refusedBody] = await tokenWith(t, auth, { grant_type: "client_credentials" });
    expect([refused.status, refusedBody.error]).toEqual([400, "invalid_dpop_proof"]);
    const [made, operatorClient] = await admin(t, "POST", "/clients", { client_name: "bound by an operator", grant_types: ["client_credentials"], dpop_bound_access_tokens: true });
    expect([made.status, operatorClient.dpop_bound_access_tokens]).toEqual([201, true]);
    const [bad] = await request(t, "POST", "/oauth/register", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_name: "bad", grant_types: ["client_credentials"], token_endpoint_auth_method: "client_secret_basic", dpop_bound_access_tokens: "yes" }),
    });
    expect(bad.status).toBe(400);
  });

  test("the metadata names the proof algorithms (§5.1)", async () => {
    const t = await ready();
    const [, metadata] = await request(t, "GET", "/.well-known/oauth-authorization-server");
    expect(metadata.dpop_signing_alg_values_supported).toContain("ES256");
    expect(metadata.dpop_signing_alg_values_supported).not.toContain("HS256");
    expect(metadata.dpop_signing_alg_values_supported).not.toContain("none");
  });

  describe("bad proofs: invalid_dpop_proof, nothing issued (§4.3)", () => {
    const now = () => Math.floor(Date.now() / 1000);
    const cases: Array<[string, (t: TestApp, key: DpopKey) => Promise<string | string[]>]> = [
      ["a wrong htm", (t, key) => key.proof({ htu: tokenUrl(t), htm: "GET" })],
      ["a wrong htu", (t, key) => key.proof({ htu: `${t.config.issuer}/oauth/introspect` })],
      ["an htu on another host", (_t, key) => key.proof({ htu: "https://elsewhere.example/oauth/token" })],
      ["a stale iat", (t, key) => key.proof({ htu: tokenUrl(t), iat: now() - 3600 })],
      ["an iat in the future", (t, key) => key.proof({ htu: tokenUrl(t), iat: now() + 3600 })],
      ["no jti", (t, key) => key.proof({ htu: tokenUrl(t), claims: { jti: undefined } })],
      ["typ JWT", (t, key) => key.proof({ htu: tokenUrl(t), header: { typ: "JWT" } })],
      ["alg none", async (t, key) => unsignedJws({ alg: "none", typ: "dpop+jwt", jwk: key.jwk }, { jti: crypto.randomUUID(), htm: "POST", htu: tokenUrl(t), iat: now() })],
      ["HS256", async (t) => unsignedJws({ alg: "HS256", typ: "dpop+jwt", jwk: { kty: "oct", k: "c2VjcmV0" } }, { jti: crypto.randomUUID(), htm: "POST", htu: tokenUrl(t), iat: now() }, "c2ln")],
      ["a private key in jwk", async (t, key) => {
        const { exportJWK } = await import("jose");
        return key.proof({ htu: tokenUrl(t), header: { jwk: await exportJWK(key.privateKey) } });
      }],
      ["a signature by another key", async (t, key) => {
        const other = await dpopKey();
        return other.proof({ htu: tokenUrl(t), header: { jwk: key.jwk } });
      }],
      ["two DPoP headers", async (t, key) => [await key.proof({ htu: tokenUrl(t) }), await key.proof({ htu: tokenUrl(t) })]],
      ["garbage", async () => "not-a-jwt"],
    ];

    test.each(cases)("refuses %s", async (_name, make) => {
      const t = await ready();
      const c = await createClient(t, "confidential");
      const before = await sessionCount(t, c);
      const [res, body] = await tokenWith(t, c, { grant_type: "client_credentials" }, await make(t, await dpopKey()));
      expect(res.status).toBe(400);
      expect(body.error).toBe("invalid_dpop_proof");
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(await sessionCount(t, c)).toBe(before);
    });

    test("refuses a replayed proof (its jti), at the second use", async () => {
      const t = await ready();
      const c = await createClient(t, "confidential");
      const proof = await (await dpopKey()).proof({ htu: tokenUrl(t) });
      const [first] = await tokenWith(t, c, { grant_type: "client_credentials" }, proof);
      expect(first.status).toBe(200);
      const before = await sessionCount(t, c);
      const [again, body] = await tokenWith(t, c, { grant_type: "client_credentials" }, proof);
      expect([again.status, body.error]).toEqual([400, "invalid_dpop_proof"]);
      expect(await sessionCount(t, c)).toBe(before);
    });

    test("one proof sent several times at once: one token, the rest refused, one session", async () => {
      const t = await ready();
      const c = await createClient(t, "confidential");
      const proof = await (await dpopKey()).proof({ htu: tokenUrl(t) });
      const answers = await Promise.all(Array.from({ length: 6 }, () => tokenWith(t, c, { grant_type: "client_credentials" }, proof)));
      expect(answers.map(([res, body]) => `${res.status} ${body.token_type ?? body.error}`).sort()).toEqual([
        "200 DPoP",
        ...Array<string>(5).fill("400 invalid_dpop_proof"),
      ]);
      expect(await sessionCount(t, c)).toBe(1);
    });

    test("two sessions with one proof in one INSERT: one is inserted, the other is not, and the proof is recorded", async () => {
      const t = await ready();
      const c = await createClient(t, "confidential");
      const store = new SessionStore(t.database);
      const session = (n: number) => ({
        id: crypto.randomUUID(),
        grantId: null,
        clientId: c.client.clientId,
        subject: c.client.clientId,
        scope: "read",
        audience: ["https://api.example"],
        accessTokenJti: `jti-${n}-${crypto.randomUUID()}`,
        refreshTokenJti: null,
        accessTokenSha256: `digest-${n}`,
        refreshTokenSha256: null,
        accessExpiresAt: new Date(Date.now() + 60_000),
        refreshExpiresAt: null,
        signingKid: "kid",
        dpopProof: { id: `proof-${crypto.randomUUID()}`, ttl: 360 },
      });
      const first = session(1);
      const second = { ...session(2), dpopProof: first.dpopProof };
      const bearer = { ...session(3), dpopProof: null };
      // Submitted in one turn of the event loop: one batch, one statement.
      const ids = await Promise.all([store.insert(first), store.insert(second), store.insert(bearer)]);
      // Exactly one of the two that share the proof is inserted (either: they came together).
      expect([ids[0] === first.id, ids[1] === second.id].filter(Boolean)).toHaveLength(1);
      expect(ids.slice(0, 2).filter((id) => id === undefined)).toHaveLength(1);
      expect(ids[2]).toBe(bearer.id);
      expect(await store.insert({ ...session(4), dpopProof: first.dpopProof })).toBeUndefined();
      expect(await sessionCount(t, c)).toBe(2);
      const recorded = await t.database.db.select({ n: count() }).from(dpopProofs).where(eq(dpopProofs.id, first.dpopProof.id));
      expect(Number(recorded[0]!.n)).toBe(1);
    });

    test("a proof used at client_credentials is a replay at the code exchange, and one used there a replay at client_credentials", async () => {
      const t = await ready();
      const c = await createClient(t, "confidential");
      const key = await dpopKey();
      const code = await issueCode(t, c);
      const exchange = { grant_type: "authorization_code", code: code.code, code_verifier: code.verifier, redirect_uri: code.redirectUri };
      const minted = await key.proof({ htu: tokenUrl(t) });
      expect((await tokenWith(t, c, { grant_type: "client_credentials" }, minted))[0].status).toBe(200);
      const [replayed, replayedBody] = await tokenWith(t, c, exchange, minted);
      expect([replayed.status, replayedBody.error]).toEqual([400, "invalid_dpop_proof"]);
      // The code was not spent by the refusal.
      const exchanged = await key.proof({ htu: tokenUrl(t) });
      const [ok, tokens] = await tokenWith(t, c, exchange, exchanged);
      expect([ok.status, tokens.token_type]).toEqual([200, "DPoP"]);
      const before = await sessionCount(t, c);
      const [again, againBody] = await tokenWith(t, c, { grant_type: "client_credentials" }, exchanged);
      expect([again.status, againBody.error]).toEqual([400, "invalid_dpop_proof"]);
      expect(await sessionCount(t, c)).toBe(before);
    });
  });
});

describe.each(backends)("DPoP server nonces [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_DPOP_NONCE: "true", TA_CORS_ORIGINS: "https://spa.example" });

  test("a browser client may send DPoP and read DPoP-Nonce (CORS)", async () => {
    const t = await ready();
    const preflight = await t.app.handle(
      new Request("http://localhost/oauth/token", { method: "OPTIONS", headers: { origin: "https://spa.example", "access-control-request-method": "POST", "access-control-request-headers": "dpop" } }),
    );
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-headers")).toContain("DPoP");
    const c = await createClient(t, "public");
    const res = await t.app.handle(
      new Request("http://localhost/oauth/token", {
        method: "POST",
        headers: { origin: "https://spa.example", "content-type": "application/x-www-form-urlencoded", dpop: await (await dpopKey()).proof({ htu: tokenUrl(t) }) },
        body: new URLSearchParams({ client_id: c.client.clientId, grant_type: "refresh_token", refresh_token: "x" }),
      }),
    );
    expect(res.status).toBe(400); // use_dpop_nonce: the nonce comes first
    expect(res.headers.get("access-control-allow-origin")).toBe("https://spa.example");
    expect(res.headers.get("access-control-expose-headers")).toBe("DPoP-Nonce");
    expect(res.headers.get("dpop-nonce")).toBeString();
  });

  test("a proof without the server's nonce gets use_dpop_nonce and one; with it, tokens and the next nonce", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const key = await dpopKey();
    const [first, firstBody] = await tokenWith(t, c, { grant_type: "client_credentials" }, await key.proof({ htu: tokenUrl(t) }));
    expect([first.status, firstBody.error]).toEqual([400, "use_dpop_nonce"]);
    const nonce = first.headers.get("dpop-nonce");
    expect(nonce).toBeString();
    const [ok, tokens] = await tokenWith(t, c, { grant_type: "client_credentials" }, await key.proof({ htu: tokenUrl(t), nonce: nonce! }));
    expect([ok.status, tokens.token_type]).toEqual([200, "DPoP"]);
    expect(ok.headers.get("dpop-nonce")).toBeString();
    // A nonce this server did not make is stale: a fresh one comes with the refusal.
    const [forged, forgedBody] = await tokenWith(t, c, { grant_type: "client_credentials" }, await key.proof({ htu: tokenUrl(t), nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }));
    expect([forged.status, forgedBody.error]).toEqual([400, "use_dpop_nonce"]);
    expect(forged.headers.get("dpop-nonce")).toBeString();
    // Without DPoP at all, a bearer token as before (nonces are for proofs).
    const [, bearer] = await tokenWith(t, c, { grant_type: "client_credentials" });
    expect(bearer.token_type).toBe("Bearer");
  });
});

describe.skipIf(!TEST_DATABASE_URL)("DPoP across instances on one PostgreSQL", () => {
  test("a proof used at one instance is a replay at the other; a nonce made at one is good at the other", async () => {
    const created = await createPostgresDatabase();
    const open = () => openPostgres(created.url, { poolSize: 4, connectTimeout: 5, statementTimeout: 10 });
    const a = await createTestApp("postgres", { TA_DPOP_NONCE: "true" }, { database: open() });
    const b = await createTestApp("postgres", { TA_DPOP_NONCE: "true" }, { database: open() });
    try {
      // Both load the signing key the first made (the nonce key is derived from it).
      await b.services.keys.reload();
      const c = await createClient(a, "confidential");
      const key = await dpopKey();
      const [first] = await tokenWith(a, c, { grant_type: "client_credentials" }, await key.proof({ htu: tokenUrl(a) }));
      const nonce = first.headers.get("dpop-nonce")!;
      const proof = await key.proof({ htu: tokenUrl(a), nonce });
      const [atA, bodyA] = await tokenWith(a, c, { grant_type: "client_credentials" }, proof);
      expect([atA.status, bodyA.token_type]).toEqual([200, "DPoP"]);
      const [atB, bodyB] = await tokenWith(b, c, { grant_type: "client_credentials" }, proof);
      expect([atB.status, bodyB.error]).toEqual([400, "invalid_dpop_proof"]);
      const [fresh, freshBody] = await tokenWith(b, c, { grant_type: "client_credentials" }, await key.proof({ htu: tokenUrl(a), nonce }));
      expect([fresh.status, freshBody.token_type]).toEqual([200, "DPoP"]);
    } finally {
      await a.close();
      await b.close();
      await created.drop();
    }
  });
});
