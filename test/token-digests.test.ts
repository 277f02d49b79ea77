// Token digests (migration 0007): every session stores the SHA-256 of the tokens it issued, and
// a presented token equal to one of them is recognised as ours without an ECDSA verification.
// A session that stored no digest (issued before 0007) has its tokens verified by signature; a
// token that is not the one its session stored never takes effect through the digest.
import { describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { base64url, CompactSign, generateKeyPair } from "jose";
import { sessions } from "../db/schema.ts";
import { sessionLookup } from "../src/oauth/token-pipeline.ts";
import { tokenSha256 } from "../src/oauth/tokens.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { countStatements, createClient, introspect, mintClientSession, mintCodeSession, post, revoke, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { issueCode, redeem, refresh } from "./helpers/grants.ts";

async function sessionOf(t: TestApp, sessionId: string) {
  const [row] = await t.database.db.select().from(sessions).where(eq(sessions.id, sessionId));
  return row!;
}

/** The session's state as a session issued before migration 0007: no digests. */
const forgetDigests = (t: TestApp, sessionId: string) =>
  t.database.db.update(sessions).set({ accessTokenSha256: null, refreshTokenSha256: null }).where(eq(sessions.id, sessionId));

/** The same header and claims signed by a fresh key: a forgery of the token, naming its session. */
async function forge(token: string): Promise<string> {
  const [header, payload] = token.split(".") as [string, string];
  const { privateKey } = await generateKeyPair("ES256");
  const decoded = JSON.parse(new TextDecoder().decode(base64url.decode(header))) as { alg: string };
  return new CompactSign(base64url.decode(payload)).setProtectedHeader(decoded).sign(privateKey);
}

/** Counts the token service's signature verifications (`verify`) until `stop()`. */
function countVerifications(t: TestApp) {
  const tokens = t.services.tokens;
  const original = tokens.verify;
  let count = 0;
  tokens.verify = (token) => {
    count++;
    return original(token);
  };
  return {
    stop: () => {
      tokens.verify = original;
      return count;
    },
  };
}

describe.each(backends)("token digests [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_INTROSPECTION_CACHE_TTL: "0" });

  test("every way of issuing stores the SHA-256 of the tokens it returns", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const minted = await mintClientSession(t, c);
    expect((await sessionOf(t, minted.sessionId)).accessTokenSha256).toBe(tokenSha256(minted.accessToken));

    const [res, body] = await redeem(t, c, await issueCode(t, c));
    expect(res.status).toBe(200);
    const [redeemed] = await t.database.db.select().from(sessions).where(eq(sessions.accessTokenSha256, tokenSha256(body.access_token)));
    expect(redeemed!.refreshTokenSha256).toBe(tokenSha256(body.refresh_token));

    const [rotatedRes, rotated] = await refresh(t, c, body.refresh_token);
    expect(rotatedRes.status).toBe(200);
    const [child] = await t.database.db.select().from(sessions).where(eq(sessions.parentId, redeemed!.id));
    expect(child!.accessTokenSha256).toBe(tokenSha256(rotated.access_token));
    expect(child!.refreshTokenSha256).toBe(tokenSha256(rotated.refresh_token));
  });

  // Without digests, each revocation's statement answers `unverified` without effect, then the
  // signature is checked and a second statement revokes.
  test.each([
    ["revoking a token its session stored takes one statement and no signature verification", true, 1, 0],
    ["a session without digests: its tokens are verified by signature, then revoked", false, 2, 1],
  ] as const)("%s", async (_name, digests, statementsEach, verificationsEach) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const plain = await mintClientSession(t, c);
    const family = await mintCodeSession(t, c);
    if (!digests) {
      await forgetDigests(t, plain.sessionId);
      await forgetDigests(t, family.sessionId);
    }
    const verifications = countVerifications(t);
    const statements = countStatements(t.database, "ta_revoke_tokens");
    try {
      expect((await revoke(t, c, plain.accessToken, "access_token"))[0].status).toBe(200);
      expect((await revoke(t, c, family.refreshToken!, "refresh_token"))[0].status).toBe(200);
    } finally {
      expect(statements.stop()).toBe(2 * statementsEach);
      expect(verifications.stop()).toBe(2 * verificationsEach);
    }
    expect((await sessionOf(t, plain.sessionId)).status).toBe("revoked");
    expect((await sessionOf(t, family.sessionId)).status).toBe("revoked");
  });

  test("a forgery naming a live session is refused, whether or not the session stored a digest", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    for (const digests of [true, false]) {
      const plain = await mintClientSession(t, c);
      const family = await mintCodeSession(t, c);
      if (!digests) {
        await forgetDigests(t, plain.sessionId);
        await forgetDigests(t, family.sessionId);
      }
      for (const [token, hint] of [[plain.accessToken, "access_token"], [family.refreshToken!, "refresh_token"]] as const) {
        const [res, body] = await revoke(t, c, await forge(token), hint);
        expect(res.status).toBe(400);
        expect(body.error).toBe("unsupported_token_type");
        const [, described] = await introspect(t, c, await forge(token));
        expect(described).toEqual({ active: false });
      }
      expect((await sessionOf(t, plain.sessionId)).status).toBe("created");
      expect((await sessionOf(t, family.sessionId)).status).toBe("created");
      expect((await introspect(t, c, plain.accessToken))[1].active).toBe(true);
    }
  });

  test.each([true, false])("refresh rotation with digests stored %p: signature checked only without them, child sessions hold digests", async (digests) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, body] = await redeem(t, c, await issueCode(t, c));
    const [parent] = await t.database.db.select().from(sessions).where(eq(sessions.accessTokenSha256, tokenSha256(body.access_token)));
    if (!digests) await forgetDigests(t, parent!.id);
    const verifications = countVerifications(t);
    const statements = countStatements(t.database, "ta_rotate_sessions");
    let rotated;
    try {
      const [res, json] = await refresh(t, c, body.refresh_token);
      expect(res.status).toBe(200);
      rotated = json;
    } finally {
      // Without digests: `unverified` (nothing done), the signature, then the rotation.
      expect(statements.stop()).toBe(digests ? 1 : 2);
      expect(verifications.stop()).toBe(digests ? 0 : 1);
    }
    const [child] = await t.database.db.select().from(sessions).where(eq(sessions.parentId, parent!.id));
    expect(child!.refreshTokenSha256).toBe(tokenSha256(rotated.refresh_token));
    expect((await sessionOf(t, parent!.id)).status).toBe("refreshed");
    expect((await introspect(t, c, rotated.access_token))[1].active).toBe(true);
  });

  test("a forged refresh token naming a live session is refused and is not taken for reuse", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    for (const digests of [true, false]) {
      const family = await mintCodeSession(t, c);
      if (!digests) await forgetDigests(t, family.sessionId);
      const [res, body] = await refresh(t, c, await forge(family.refreshToken!));
      expect(res.status).toBe(400);
      expect(body.error).toBe("invalid_grant");
      // Reuse would have revoked the family: it is untouched, and its own token still rotates.
      expect((await sessionOf(t, family.sessionId)).status).toBe("created");
      expect((await refresh(t, c, family.refreshToken!))[0].status).toBe(200);
    }
  });

  test("a session edited since its token was issued: the rotation's tokens are signed from the session, without digests", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const family = await mintCodeSession(t, c, "user-before");
    await t.database.db.update(sessions).set({ subject: "user-after" }).where(eq(sessions.id, family.sessionId));
    const [res, body] = await refresh(t, c, family.refreshToken!);
    expect(res.status).toBe(200);
    const [child] = await t.database.db.select().from(sessions).where(eq(sessions.parentId, family.sessionId));
    expect(child!.subject).toBe("user-after");
    expect(child!.accessTokenSha256).toBeNull();
    expect(child!.refreshTokenSha256).toBeNull();
    const [, described] = await introspect(t, c, body.access_token);
    expect(described).toMatchObject({ active: true, sub: "user-after" });
    expect((await t.services.tokens.verify(body.refresh_token)).claims.sub).toBe("user-after");
  });

  test("in one batch, an item whose digest its session does not hold comes back unverified, without effect", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const matching = await mintClientSession(t, c);
    const mismatched = await mintClientSession(t, c);
    const withoutDigest = await mintCodeSession(t, c);
    await forgetDigests(t, withoutDigest.sessionId);
    const jti = async (token: string) => (await t.services.tokens.read(token)).claims.jti;
    const jtis = [await jti(matching.accessToken), await jti(mismatched.accessToken), await jti(withoutDigest.refreshToken!)];
    const statements = countStatements(t.database, "ta_revoke_tokens");
    // Submitted in one turn of the event loop: one statement.
    const results = await Promise.all([
      sessionLookup.access_token.revoke(t.services.stores.sessions, jtis[0]!, c.client.clientId, "revoked_by_client", tokenSha256(matching.accessToken)),
      sessionLookup.access_token.revoke(t.services.stores.sessions, jtis[1]!, c.client.clientId, "revoked_by_client", tokenSha256(matching.accessToken)),
      sessionLookup.refresh_token.revoke(t.services.stores.sessions, jtis[2]!, c.client.clientId, "revoked_by_client", tokenSha256(withoutDigest.refreshToken!)),
    ]);
    expect(statements.stop()).toBe(1);
    expect(results.map((r) => r.outcome)).toEqual(["revoked", "unverified", "unverified"]);
    expect((await sessionOf(t, matching.sessionId)).status).toBe("revoked");
    expect((await sessionOf(t, mismatched.sessionId)).status).toBe("created");
    expect((await sessionOf(t, withoutDigest.sessionId)).status).toBe("created");
  });

  test("introspection and resource-server verification take the stored digest as the proof, or the signature without one", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    // The stored digest decides: a session made to hold a forgery's digest vouches for the
    // forgery (no signature check), and no longer for the token it issued.
    const swapped = await mintClientSession(t, c);
    const forgery = await forge(swapped.accessToken);
    await t.database.db.update(sessions).set({ accessTokenSha256: tokenSha256(forgery) }).where(eq(sessions.id, swapped.sessionId));
    expect((await introspect(t, c, forgery))[1].active).toBe(true);
    expect((await t.services.pipeline.verify(forgery)).ok).toBe(true);
    expect((await introspect(t, c, swapped.accessToken))[1]).toEqual({ active: false });
    expect(await t.services.pipeline.verify(swapped.accessToken)).toEqual({ ok: false, reason: "malformed" });

    const legacy = await mintClientSession(t, c);
    await forgetDigests(t, legacy.sessionId);
    expect((await introspect(t, c, legacy.accessToken))[1].active).toBe(true);
    expect((await t.services.pipeline.verify(legacy.accessToken)).ok).toBe(true);
    expect((await introspect(t, c, await forge(legacy.accessToken)))[1]).toEqual({ active: false });
    expect(await t.services.pipeline.verify(await forge(legacy.accessToken))).toEqual({ ok: false, reason: "malformed" });
  });

  test("during a rolling upgrade from the 0008 release, its statements still work and still reach the feed", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    // As that release redeems a code: a compare-and-set of the grant, then its own INSERT.
    const [grant] = await t.database.rows<{ id: string }>(
      sql`update authorization_grants set redeemed_at = now() where id = ${code.grantId} and redeemed_at is null returning id`,
    );
    const accessJti = crypto.randomUUID();
    const [session] = await t.database.rows<{ id: string }>(sql`
      insert into sessions (grant_id, client_id, subject, scope, audience, access_token_jti, refresh_token_jti, access_expires_at, refresh_expires_at)
      values (${grant!.id}, ${c.client.clientId}, ${code.userId}, 'read', '{}', ${accessJti}, ${crypto.randomUUID()}, now() + interval '1 hour', now() + interval '1 day')
      returning id`);
    // As it revokes: ta_revoke_tokens items (0005 had no digest field at all).
    const revocation = JSON.stringify([{ i: 0, kind: "access_token", jti: accessJti, client_id: c.client.clientId, reason: "revoked_by_client" }]);
    const [revoked] = await t.database.rows<{ outcome: string; revoked_count: number }>(sql`select * from ta_revoke_tokens(${revocation}::jsonb)`);
    expect(revoked).toMatchObject({ outcome: "revoked", revoked_count: 1 });
    expect((await sessionOf(t, session!.id)).status).toBe("revoked");
    // Its revocation reaches the feed through the trigger, with both tokens and the reason.
    const events = await t.database.rows<{ token_kind: string; reason: string }>(
      sql`select token_kind, reason from revocation_events where session_id = ${session!.id} order by token_kind`,
    );
    expect(events).toEqual([
      { token_kind: "access_token", reason: "revoked_by_client" },
      { token_kind: "refresh_token", reason: "revoked_by_client" },
    ]);
  });

  test("the digests are of tokens, not tokens: no token appears in the sessions table", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const family = await mintCodeSession(t, c);
    const [row] = await t.database.rows<{ text: string }>(sql`select ${sessions}::text as text from ${sessions} where id = ${family.sessionId}`);
    expect(row!.text).toContain(tokenSha256(family.accessToken));
    for (const token of [family.accessToken, family.refreshToken!]) {
      for (const part of token.split(".")) expect(row!.text).not.toContain(part);
    }
  });
});
