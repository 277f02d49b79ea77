// grant_type=refresh_token at POST /oauth/token: rotation, reuse detection, concurrency,
// the optional reuse grace period; on every backend.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { decodeJwt } from "jose";
import { sessions } from "../db/schema.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { countStatements, createClient, holdStatements, post, revoke, rotateSession, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { issueCode, redeem, refresh, warmPool } from "./helpers/grants.ts";

setDefaultTimeout(30_000);

/** Tokens from a fresh authorization code (a real grant with its first session). */
async function signIn(t: TestApp, c: TestClient) {
  const code = await issueCode(t, c);
  const [res, body] = await redeem(t, c, code);
  if (res.status !== 200) throw new Error(`redeem failed: ${JSON.stringify(body)}`);
  return { grantId: code.grantId, accessToken: body.access_token as string, refreshToken: body.refresh_token as string };
}

const familyOf = (t: TestApp, grantId: string) => t.database.db.select().from(sessions).where(eq(sessions.grantId, grantId));
const isLive = async (t: TestApp, token: string) => (await t.services.pipeline.verify(token)).ok;

describe.each(backends)("refresh_token grant [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("rotates: new tokens work, the old refresh and access tokens do not", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    const [res, body] = await refresh(t, c, first.refreshToken);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body).toEqual({
      access_token: expect.any(String),
      token_type: "Bearer",
      expires_in: t.config.accessTokenTtl,
      refresh_token: expect.any(String),
      scope: "read write",
    });
    expect(body.refresh_token).not.toBe(first.refreshToken);
    // The family keeps its name (sid = the grant) through rotation.
    for (const token of [first.accessToken, first.refreshToken, body.access_token, body.refresh_token]) expect(decodeJwt(token).sid).toBe(first.grantId);
    expect(await isLive(t, body.access_token)).toBe(true);
    expect(await isLive(t, first.accessToken)).toBe(false);
    const statuses = (await familyOf(t, first.grantId)).map((s) => s.status).sort();
    expect(statuses).toEqual(["created", "refreshed"]);
    // The new refresh token rotates in turn.
    const [again] = await refresh(t, c, body.refresh_token);
    expect(again.status).toBe(200);
  });

  test("treats a used refresh token as theft: refuses it and kills the family", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const first = await signIn(t, c);
    const [, rotated] = await refresh(t, c, first.refreshToken);
    const [res, body] = await refresh(t, c, first.refreshToken);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
    // The legitimate-looking newest pair is dead too: verification and a later refresh fail.
    expect(await t.services.pipeline.verify(rotated.access_token)).toEqual({ ok: false, reason: "inactive" });
    const [later, laterBody] = await refresh(t, c, rotated.refresh_token);
    expect(later.status).toBe(400);
    expect(laterBody.error).toBe("invalid_grant");
    expect((await familyOf(t, first.grantId)).filter((s) => s.status === "created")).toHaveLength(0);
    const theft = t.logs.map((l) => JSON.parse(l)).find((l) => l.event === "security.token.theft_detected");
    expect(theft).toMatchObject({ level: "warn", client_id: c.client.clientId });
  });

  test("refuses the refresh token of a family revoked before without reporting theft; a replay of a rotated token still is", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const thefts = () => t.logs.map((l) => JSON.parse(l)).filter((l) => l.event === "security.token.theft_detected" && l.client_id === c.client.clientId);
    const first = await signIn(t, c);
    const [, rotated] = await refresh(t, c, first.refreshToken);
    expect((await revoke(t, c, rotated.refresh_token, "refresh_token"))[0].status).toBe(200);
    // The client's next routine refresh, with the newest token of the revoked family.
    const [res, body] = await refresh(t, c, rotated.refresh_token);
    expect(res.status).toBe(400);
    expect(body).toEqual({ error: "invalid_grant", error_description: "refresh token revoked" });
    expect(thefts()).toHaveLength(0);
    const refused = t.logs.map((l) => JSON.parse(l)).find((l) => l.event === "token.refresh.refused" && l.client_id === c.client.clientId);
    expect(refused).toMatchObject({ level: "info", client_id: c.client.clientId, reason: "revoked" });
    // The rotated-away token is a replay wherever its family stands.
    const [replay] = await refresh(t, c, first.refreshToken);
    expect(replay.status).toBe(400);
    expect(thefts()).toHaveLength(1);
  });

  test("treats a refresh token presented by another client as reuse and kills the family", async () => {
    const t = await ready();
    const owner = await createClient(t, "confidential");
    const thief = await createClient(t, "confidential");
    const first = await signIn(t, owner);
    const [res, body] = await refresh(t, thief, first.refreshToken);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
    expect(await isLive(t, first.accessToken)).toBe(false);
    expect((await refresh(t, owner, first.refreshToken))[0].status).toBe(400);
  });

  test("refuses the refresh token of a revoked session", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    const [revoked] = await post(t, "/oauth/revoke", { token: first.accessToken }, c.auth.headers);
    expect(revoked.status).toBe(200);
    const [res, body] = await refresh(t, c, first.refreshToken);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
  });

  test("refuses an expired refresh token", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    await t.database.db
      .update(sessions)
      .set({ refreshExpiresAt: sql`now() - interval '1 second'` })
      .where(eq(sessions.grantId, first.grantId));
    const [res, body] = await refresh(t, c, first.refreshToken);
    expect(res.status).toBe(400);
    expect(body).toEqual({ error: "invalid_grant", error_description: "refresh token expired" });
  });

  test.each([
    ["an access token", async (s: { accessToken: string }) => s.accessToken],
    ["a token that is not a JWT", async () => "not-a-token"],
    ["a tampered refresh token", async (s: { refreshToken: string }) => s.refreshToken.slice(0, -4) + "AAAA"],
  ])("refuses %s as refresh_token with invalid_grant", async (_, pick) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    const [res, body] = await refresh(t, c, await pick(first));
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
    expect(await isLive(t, first.accessToken)).toBe(true);
  });

  test("narrows the scope on request, and refuses to widen it afterwards", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    const [res, body] = await refresh(t, c, first.refreshToken, { scope: "read" });
    expect(res.status).toBe(200);
    expect(body.scope).toBe("read");
    const [widened, widenedBody] = await refresh(t, c, body.refresh_token, { scope: "read write" });
    expect(widened.status).toBe(400);
    expect(widenedBody.error).toBe("invalid_scope");
    // A refused scope is not reuse: the refresh token still works.
    expect((await refresh(t, c, body.refresh_token))[0].status).toBe(200);
  });

  test("refuses an unknown scope with invalid_scope", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    const [res, body] = await refresh(t, c, first.refreshToken, { scope: "admin" });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_scope");
  });

  test("lets exactly one of 50 concurrent refreshes of one token win, never leaving two live chains", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    await warmPool(t);
    const results = await Promise.all(Array.from({ length: 50 }, () => refresh(t, c, first.refreshToken)));
    const winners = results.filter(([res]) => res.status === 200);
    expect(winners).toHaveLength(1);
    expect(results.filter(([res, body]) => res.status === 400 && body.error === "invalid_grant")).toHaveLength(49);
    const family = await familyOf(t, first.grantId);
    expect(family.filter((s) => s.status === "created").length).toBeLessThanOrEqual(1);
    // The 49 losers presented a used token: reuse, so the winner's chain is dead as well.
    expect(family.filter((s) => s.status === "created")).toHaveLength(0);
    expect(family).toHaveLength(2);
    expect(await isLive(t, winners[0]![1].access_token)).toBe(false);
  });

  test("rotations submitted together share one statement; each gets what it would get alone", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const a = await signIn(t, c);
    const b = await signIn(t, c);
    const d = await signIn(t, c);
    const [aToken, bToken, dToken] = [a, b, d].map((s) => s.refreshToken);
    const rotate = (refreshToken: string) => rotateSession(t, c.client, refreshToken);
    // d's rotation is at the database (held there) while the others arrive: they wait for it
    // and then go out together — b's refresh token twice: the first rotates, the second is reuse.
    const statements = countStatements(t.database, "ta_rotate_sessions");
    const held = holdStatements(t.database, "ta_rotate_sessions");
    const first = rotate(dToken!);
    await held.sent;
    const sign = t.services.tokens.sign;
    const { promise: allSigned, resolve } = Promise.withResolvers<void>();
    let signatures = 0;
    t.services.tokens.sign = async (...args) => {
      const token = await sign(...args);
      if (++signatures === 6) resolve();
      return token;
    };
    const together = Promise.all([rotate(aToken!), rotate(bToken!), rotate(bToken!)]);
    await allSigned;
    t.services.tokens.sign = sign;
    await Bun.sleep(0); // each rotation hands its item to the batcher once its two signatures are done
    held.release();
    expect((await first).outcome).toBe("rotated");
    const [ra, ...twice] = await together;
    expect(statements.stop()).toBe(2);
    expect(ra.outcome).toBe("rotated");
    // Which of the two came first in the batch depends on which was signed first.
    expect(twice.map((r) => r.outcome).sort()).toEqual(["reuse", "rotated"]);
    const rb = twice.find((r) => r.outcome === "rotated");
    if (ra.outcome !== "rotated" || rb?.outcome !== "rotated") throw new Error("not rotated");
    expect(await isLive(t, ra.tokens.accessToken)).toBe(true);
    expect(await isLive(t, ra.tokens.refreshToken!)).toBe(true);
    expect(await isLive(t, a.accessToken)).toBe(false);
    // The reuse killed b's family, the child just made too.
    expect(await isLive(t, rb.tokens.accessToken)).toBe(false);
    expect((await familyOf(t, b.grantId)).filter((s) => s.status === "created")).toHaveLength(0);
  });
});

describe.each(backends)("refresh_token grant with TA_REFRESH_REUSE_GRACE [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_REFRESH_REUSE_GRACE: "30" });

  test("a retried refresh within the grace period replaces the child instead of killing the family", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    const [, lost] = await refresh(t, c, first.refreshToken); // the response the client never received
    const [res, retried] = await refresh(t, c, first.refreshToken);
    expect(res.status).toBe(200);
    expect(await isLive(t, lost.access_token)).toBe(false);
    expect(await isLive(t, retried.access_token)).toBe(true);
    expect((await refresh(t, c, lost.refresh_token))[0].status).toBe(400);
    // Presenting the replaced child's token is reuse: the family dies.
    expect(await isLive(t, retried.access_token)).toBe(false);
  });

  test("reuse after the grace period still kills the family", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    const [, child] = await refresh(t, c, first.refreshToken);
    await t.database.db
      .update(sessions)
      .set({ updatedAt: sql`now() - interval '31 seconds'` })
      .where(eq(sessions.status, "refreshed"));
    const [res] = await refresh(t, c, first.refreshToken);
    expect(res.status).toBe(400);
    expect(await isLive(t, child.access_token)).toBe(false);
  });

  test("concurrent refreshes within the grace period still leave at most one live chain", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await signIn(t, c);
    await warmPool(t);
    const results = await Promise.all(Array.from({ length: 20 }, () => refresh(t, c, first.refreshToken)));
    expect(results.every(([res]) => res.status === 200)).toBe(true);
    const live = (await familyOf(t, first.grantId)).filter((s) => s.status === "created");
    expect(live).toHaveLength(1);
    const liveTokens = await Promise.all(results.map(([, body]) => isLive(t, body.access_token)));
    expect(liveTokens.filter(Boolean)).toHaveLength(1);
  });
});
