// "Revoke access" on the account page racing the client redeeming a code at /oauth/token: no
// live session of that user for that client may survive, whichever finishes first.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import type { SQL } from "drizzle-orm";
import { sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { SessionStore } from "../db/stores/sessions.ts";
import { SessionService } from "../src/oauth/sessions.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, useTestApp } from "./helpers/app.ts";
import { Agent, authorizeUrl, createUser, csrfToken, hiddenFields, pkce, redirectParams, signIn } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";
import { refresh, tokenRequest, warmPool } from "./helpers/grants.ts";

setDefaultTimeout(60_000);

const ROUNDS = 20;

async function liveSessions(t: TestApp, userId: string, clientId: string): Promise<number> {
  const [row] = await t.database.rows<{ n: number | string }>(
    sql`select count(*) as n from sessions where subject = ${userId} and client_id = ${clientId} and status = 'created'`,
  );
  return Number(row!.n);
}

/** A signed-in user who has approved `c` once (so later authorizations skip the consent page). */
async function userWithConsent(t: TestApp, c: TestClient, name: string): Promise<{ agent: Agent; userId: string }> {
  const userId = await createUser(t, name);
  const agent = new Agent(t);
  await signIn(agent, name);
  const consent = await agent.get(authorizeUrl(c));
  await agent.post("/oauth/consent", [...hiddenFields(consent.text, "/oauth/consent"), ["decision", "approve"]]);
  return { agent, userId };
}

/** Authorizes again (consent remembered: straight to a code) and returns the code and its verifier. */
async function freshCode(agent: Agent, c: TestClient): Promise<{ code: string; verifier: string }> {
  const { verifier, challenge } = pkce();
  const page = await agent.get(authorizeUrl(c, { code_challenge: challenge }));
  const code = redirectParams(page.location).get("code");
  if (!code) throw new Error(`no code: ${page.res.status} ${page.location}`);
  return { code, verifier };
}

const redeem = (t: TestApp, c: TestClient, code: { code: string; verifier: string }) =>
  tokenRequest(t, c, {
    grant_type: "authorization_code",
    code: code.code,
    code_verifier: code.verifier,
    redirect_uri: c.client.redirectUris[0]!,
  });

describe.each(backends)("Revoke access racing a code redemption [%s]", (backend) => {
  const ready = useTestApp(backend);

  test(`leaves no live session of the user for the client in ${ROUNDS} rounds`, async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await userWithConsent(t, c, `racer-${backend}`);
    await warmPool(t);
    const outcomes = { redeemedFirst: 0, revokedFirst: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      // Re-approving after the previous round's withdrawal: consent again, then a fresh code.
      const consent = await agent.get(authorizeUrl(c));
      if (consent.res.status === 200) {
        await agent.post("/oauth/consent", [...hiddenFields(consent.text, "/oauth/consent"), ["decision", "approve"]]);
      }
      const code = await freshCode(agent, c);
      const csrf = csrfToken((await agent.get("/account/sessions")).text);
      // Vary which side reaches the database first: either one starts up to 3 ms late.
      const delay = (ms: number) => (ms > 0 ? Bun.sleep(ms) : Promise.resolve());
      const late = (round >> 1) % 4;
      const [[res, body]] = await Promise.all([
        delay(round % 2 ? late : 0).then(() => redeem(t, c, code)),
        delay(round % 2 ? 0 : late).then(() => agent.post("/account/sessions/revoke", { csrf_token: csrf, client_id: c.client.clientId })),
      ]);
      expect(await liveSessions(t, userId, c.client.clientId)).toBe(0);
      if (res.status === 200) {
        outcomes.redeemedFirst++;
        // What the redemption issued is dead: the access token and the refresh token.
        expect((await t.services.pipeline.verify(body.access_token)).ok).toBe(false);
        const [refused, refusedBody] = await refresh(t, c, body.refresh_token);
        expect(refused.status).toBe(400);
        expect(refusedBody.error).toBe("invalid_grant");
      } else {
        outcomes.revokedFirst++;
        expect(res.status).toBe(400);
        expect(body.error).toBe("invalid_grant");
      }
    }
    expect(outcomes.redeemedFirst + outcomes.revokedFirst).toBe(ROUNDS);
    // Losing to a withdrawal is an expired code, not a reuse alarm.
    expect(t.logs.filter((line) => line.includes('"security.authorization_code.reuse"'))).toEqual([]);
  });

  // The narrowest interleaving, forced: the redemption's transaction has begun (so its now() is
  // fixed) when the withdrawal commits, and its compare-and-set runs only afterwards.
  test.skipIf(backend !== "postgres")("a redemption whose transaction began before the withdrawal loses", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await userWithConsent(t, c, "early-starter");
    const code = await freshCode(agent, c);
    const csrf = csrfToken((await agent.get("/account/sessions")).text);
    // The redemption's one statement runs in a transaction that began before the withdrawal.
    const withdrawnMidway = {
      ...t.database,
      rows: (query: SQL) =>
        t.database.db.transaction(async (tx) => {
          await tx.execute(sql`select now()`);
          const done = await agent.post("/account/sessions/revoke", { csrf_token: csrf, client_id: c.client.clientId });
          expect(done.res.status).toBe(303);
          await Bun.sleep(2); // the database clock moves on
          const result = await tx.execute(query);
          return (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as never;
        }),
    } as Database;
    const sessions = new SessionService(new SessionStore(withdrawnMidway), t.services.tokens, t.services.codes, t.config);
    const result = await sessions.redeemCode({
      code: code.code,
      client: c.client,
      redirectUri: c.client.redirectUris[0],
      codeVerifier: code.verifier,
      scope: undefined,
      resource: undefined,
    });
    expect(result).toMatchObject({ outcome: "expired" });
    expect(await liveSessions(t, userId, c.client.clientId)).toBe(0);
    // And at the token endpoint the withdrawn code is refused.
    const [res, body] = await redeem(t, c, code);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
  });
});
