// POST /oauth/revoke through each path of ta_revoke_token (migration 0004): the fast path for
// access tokens of sessions without a grant, the family path for sessions of an
// authorization grant, and the fallbacks (another client's token, already revoked, wrong
// hint, expired, concurrent revocations of one token).
import { describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { revocationEvents, sessions } from "../db/schema.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { countStatements, createClient, mintClientSession, mintCodeSession, post, revoke, rotateSession, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { sessionLookup } from "../src/oauth/token-pipeline.ts";

async function feedEntries(t: TestApp, token: string): Promise<number> {
  const { claims } = await t.services.tokens.verify(token);
  const [row] = await t.database.rows<{ n: number }>(sql`select count(*)::int as n from ${revocationEvents} where ${revocationEvents.jti} = ${claims.jti}`);
  return row!.n;
}

async function sessionOf(t: TestApp, sessionId: string) {
  const [row] = await t.database.db.select().from(sessions).where(eq(sessions.id, sessionId));
  return row!;
}

describe.each(backends)("revocation paths [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("revokes a client_credentials access token and records one feed entry", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    const [res] = await revoke(t, c, s.accessToken, "access_token");
    expect(res.status).toBe(200);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
    const row = await sessionOf(t, s.sessionId);
    expect(row.status).toBe("revoked");
    expect(row.revocationReason).toBe("revoked_by_client");
    expect(await feedEntries(t, s.accessToken)).toBe(1);
  });

  test("revoking the access token of a code-flow session revokes every live session of its grant", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const sibling = await t.services.sessions.mint({
      client: c.client,
      subject: "user-1",
      scope: "read",
      audience: [t.config.defaultAudience],
      grantId: s.grantId,
      withRefreshToken: true,
    });
    const [res] = await revoke(t, c, s.accessToken, "access_token");
    expect(res.status).toBe(200);
    expect((await t.services.pipeline.verify(sibling.accessToken)).ok).toBe(false);
    const family = await t.database.db.select().from(sessions).where(eq(sessions.grantId, s.grantId));
    expect(family.map((row) => row.status)).toEqual(["revoked", "revoked"]);
    // Each revoked session's access and refresh token reach the feed.
    for (const token of [s.accessToken, s.refreshToken!, sibling.accessToken, sibling.refreshToken!]) {
      expect(await feedEntries(t, token)).toBe(1);
    }
    const presented = sibling.refreshToken!;
    // The family is dead already: a refresh with it is refused as revoked (not counted as reuse).
    const rotated = await rotateSession(t, c.client, presented);
    expect(rotated.outcome).toBe("revoked");
  });

  test("leaves another client's client_credentials token alive", async () => {
    const t = await ready();
    const owner = await createClient(t, "confidential");
    const other = await createClient(t, "confidential");
    const s = await mintClientSession(t, owner);
    const [res] = await revoke(t, other, s.accessToken, "access_token");
    expect(res.status).toBe(200);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(true);
    expect((await sessionOf(t, s.sessionId)).status).toBe("created");
    expect(await feedEntries(t, s.accessToken)).toBe(0);
    expect(t.logs.some((line) => line.includes("security.revocation.client_mismatch"))).toBe(true);
  });

  test("a second revocation of the same token changes nothing", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    expect((await revoke(t, c, s.accessToken))[0].status).toBe(200);
    const first = await sessionOf(t, s.sessionId);
    expect((await revoke(t, c, s.accessToken))[0].status).toBe(200);
    expect((await sessionOf(t, s.sessionId)).revokedAt).toEqual(first.revokedAt);
    expect(await feedEntries(t, s.accessToken)).toBe(1);
  });

  test("revokes an access token presented with the refresh_token hint", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    expect((await revoke(t, c, s.accessToken, "refresh_token"))[0].status).toBe(200);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
    expect(await feedEntries(t, s.accessToken)).toBe(1);
  });

  test("revokes the session of an expired access token without a feed entry", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    await t.database.db.update(sessions).set({ accessExpiresAt: sql`now() - interval '1 second'` }).where(eq(sessions.id, s.sessionId));
    expect((await revoke(t, c, s.accessToken, "access_token"))[0].status).toBe(200);
    expect((await sessionOf(t, s.sessionId)).status).toBe("revoked");
    expect(await feedEntries(t, s.accessToken)).toBe(0);
  });

  test("ten concurrent revocations of one token revoke it once", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    let committed = 0;
    const off = t.services.notifier.onCommitted(() => committed++);
    const answers = await Promise.all(Array.from({ length: 10 }, () => revoke(t, c, s.accessToken, "access_token")));
    off();
    expect(answers.map(([res]) => res.status)).toEqual(Array(10).fill(200));
    expect(committed).toBe(1);
    expect(await feedEntries(t, s.accessToken)).toBe(1);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
  });

  test("concurrent revocations share one statement and each gets the outcome it would get alone", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const other = await createClient(t, "confidential");
    const plain = await mintClientSession(t, c);
    const family = await mintCodeSession(t, c);
    const foreign = await mintClientSession(t, other);
    const revokedBefore = await mintClientSession(t, c);
    expect((await revoke(t, c, revokedBefore.accessToken, "access_token"))[0].status).toBe(200);
    const jti = async (token: string) => (await t.services.tokens.verify(token)).claims.jti;
    const items = [
      { kind: "access_token", jti: await jti(plain.accessToken) },
      { kind: "refresh_token", jti: await jti(family.refreshToken!) },
      { kind: "access_token", jti: await jti(foreign.accessToken) },
      { kind: "access_token", jti: await jti(revokedBefore.accessToken) },
      { kind: "access_token", jti: crypto.randomUUID() },
      { kind: "access_token", jti: await jti(plain.accessToken) },
    ] as const;
    const statements = countStatements(t.database, "ta_revoke_tokens");
    const results = await Promise.all(items.map((item) => sessionLookup[item.kind].revoke(t.services.stores.sessions, item.jti, c.client.clientId, "revoked_by_client", null)));
    expect(statements.stop()).toBe(1);
    // The same token twice in one batch: revoked once, then found revoked.
    expect(results.map((r) => r.outcome)).toEqual(["revoked", "revoked", "other_client", "already_revoked", "unknown", "already_revoked"]);
    expect(results[0]!.sessionId).toBe(plain.sessionId);
    expect(results[1]!.revokedCount).toBe(1);
    expect((await t.services.pipeline.verify(plain.accessToken)).ok).toBe(false);
    expect((await t.services.pipeline.verify(family.accessToken)).ok).toBe(false);
    expect((await t.services.pipeline.verify(family.refreshToken!)).ok).toBe(false);
    expect((await t.services.pipeline.verify(foreign.accessToken)).ok).toBe(true);
    expect(await feedEntries(t, plain.accessToken)).toBe(1);
  });
});
