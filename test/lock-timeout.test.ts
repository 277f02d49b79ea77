// A row lock held elsewhere makes a revocation answer 503 within the lock timeout (before the
// client's deadline), never hang, and change nothing — even when the lock is released right
// after the 503; once the lock is gone the same revocation succeeds.
// PostgreSQL only (PGlite has one connection, so no lock can be held elsewhere).
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import type { Database } from "../db/client.ts";
import { openPostgres } from "../db/client.ts";
import { countStatements, createClient, createTestApp, mintClientSession, mintCodeSession, post } from "./helpers/app.ts";
import type { TestApp } from "./helpers/app.ts";
import { databaseUrl, openTestDatabase, TEST_DATABASE_URL } from "./helpers/db.ts";
import { toOAuthError } from "../src/http/error-plugin.ts";
import { SessionStore } from "../db/stores/sessions.ts";
import { sessionLookup } from "../src/oauth/token-pipeline.ts";

setDefaultTimeout(60_000);

/** Holds `lockSql` in an open transaction on its own connection until release() is called. */
async function holdLock(url: string, lockSql: string, id: string) {
  const connection = postgres(url, { max: 1, onnotice: () => {} });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const done = connection.begin(async (tx) => {
    await tx.unsafe(lockSql, [id]);
    locked();
    await released;
  });
  await isLocked;
  return {
    async release() {
      release();
      await done;
      await connection.end();
    },
  };
}

describe.skipIf(!TEST_DATABASE_URL)("a lock held elsewhere [postgres]", () => {
  let base: Database;
  let t: TestApp;
  let url: string;

  afterAll(async () => {
    await t?.database.close();
    await base?.close();
  });

  async function app(): Promise<TestApp> {
    if (t) return t;
    base = await openTestDatabase("postgres");
    const [row] = await base.rows<{ name: string }>(sql`select current_database() as name`);
    url = databaseUrl(row!.name);
    // The server's own settings, with a 1-second deadline (so a 0.8-second lock timeout).
    t = await createTestApp("postgres", {}, { database: openPostgres(url, { poolSize: 4, connectTimeout: 5, statementTimeout: 1 }) });
    return t;
  }

  test.each([
    ["the authorization grant of a refresh token's family", "select 1 from authorization_grants where id = $1 for update", "code"],
    ["a client-credentials session", "select 1 from sessions where id = $1 for update", "client"],
  ] as const)("locking %s: 503 with Retry-After within the timeout, nothing changed; success after release", async (_name, lockSql, kind) => {
    const t = await app();
    const c = await createClient(t, "confidential");
    const s = kind === "code" ? await mintCodeSession(t, c) : await mintClientSession(t, c);
    const lockedId = "grantId" in s ? String(s.grantId) : s.sessionId;
    const holder = await holdLock(url, lockSql, lockedId);
    try {
      const began = performance.now();
      const [res, body] = await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
      const elapsed = performance.now() - began;
      expect(res.status).toBe(503);
      expect(body.error).toBe("temporarily_unavailable");
      expect(res.headers.get("retry-after")).toBe("1");
      // The server's lock_timeout (80 % of the 1-second deadline) ends the wait, not the client.
      expect(elapsed).toBeGreaterThan(750);
      expect(elapsed).toBeLessThan(1000);
    } finally {
      await holder.release();
    }
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(true);
    const [res] = await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
    expect(res.status).toBe(200);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
  });

  // Revocations are batched (db/batcher.ts): one waiting on a lock must not hold up the rest.
  test("revocations made while one waits on a lock are not held up by it", async () => {
    const t = await app();
    const c = await createClient(t, "confidential");
    const stuck = await mintClientSession(t, c);
    const others = await Promise.all(Array.from({ length: 3 }, () => mintClientSession(t, c)));
    const holder = await holdLock(url, "select 1 from sessions where id = $1 for update", stuck.sessionId);
    try {
      const waiting = post(t, "/oauth/revoke", { token: stuck.accessToken }, c.auth.headers);
      await Bun.sleep(50);
      const began = performance.now();
      const answers = await Promise.all(others.map((s) => post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers)));
      expect(answers.map(([res]) => res.status)).toEqual([200, 200, 200]);
      expect(performance.now() - began).toBeLessThan(500);
      for (const s of others) expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
      const [res] = await waiting;
      expect(res.status).toBe(503);
    } finally {
      await holder.release();
    }
    expect((await t.services.pipeline.verify(stuck.accessToken)).ok).toBe(true);
  });

  test("a revocation batched with one that times out on a lock is still revoked", async () => {
    const t = await app();
    const c = await createClient(t, "confidential");
    const stuck = await mintClientSession(t, c);
    const other = await mintClientSession(t, c);
    const holder = await holdLock(url, "select 1 from sessions where id = $1 for update", stuck.sessionId);
    const statements = countStatements(t.database, "ta_revoke_tokens");
    const jti = async (token: string) => (await t.services.tokens.verify(token)).claims.jti;
    const [stuckJti, otherJti] = [await jti(stuck.accessToken), await jti(other.accessToken)];
    const began = performance.now();
    try {
      // Submitted in one turn of the event loop, both go out in one statement.
      const revoke = (id: string) => sessionLookup.access_token.revoke(t.services.stores.sessions, id, c.client.clientId, "revoked_by_client", null);
      const [stuckResult, otherResult] = await Promise.allSettled([
        revoke(stuckJti),
        revoke(otherJti).finally(() => expect(performance.now() - began).toBeGreaterThan(750)),
      ]);
      expect(stuckResult.status).toBe("rejected");
      expect(toOAuthError((stuckResult as PromiseRejectedResult).reason).status).toBe(503);
      expect(otherResult).toMatchObject({ status: "fulfilled", value: { outcome: "revoked" } });
    } finally {
      await holder.release();
    }
    // The shared statement (its lock wait ended after 0.8 s), then each item alone.
    expect(statements.stop()).toBe(3);
    expect((await t.services.pipeline.verify(other.accessToken)).ok).toBe(false);
    expect((await t.services.pipeline.verify(stuck.accessToken)).ok).toBe(true);
  });

  test("a batch that deadlocks with another transaction is run again item by item, and revokes", async () => {
    const t = await app();
    const c = await createClient(t, "confidential");
    const one = await mintCodeSession(t, c);
    const two = await mintCodeSession(t, c);
    const jti = async (token: string) => (await t.services.tokens.verify(token)).claims.jti;
    const [a1, r2] = [await jti(one.accessToken), await jti(two.refreshToken!)];
    // The batch's own instance, with a lock timeout above PostgreSQL's deadlock_timeout (1 s).
    const instance = openPostgres(url, { poolSize: 2, connectTimeout: 5, statementTimeout: 5 });
    const instanceStore = new SessionStore(instance);
    const statements = countStatements(instance, "ta_revoke_tokens");
    // Another transaction holds family two's grant, and will ask for family one's while the
    // batch holds it: a deadlock, which the batch detects first (the other waits 10 s to look).
    const other = postgres(url, { max: 1, onnotice: () => {} });
    let step!: () => void;
    const stepped = new Promise<void>((resolve) => (step = resolve));
    let proceed!: () => void;
    const proceeding = new Promise<void>((resolve) => (proceed = resolve));
    const holder = other.begin(async (tx) => {
      await tx`set local deadlock_timeout = '10s'`;
      await tx`select 1 from authorization_grants where id = ${two.grantId} for update`;
      step();
      await proceeding;
      await tx`select 1 from authorization_grants where id = ${one.grantId} for update`;
    });
    try {
      await stepped;
      // Items in (kind, jti) order: family one is locked and revoked, then the batch waits for two.
      const batch = Promise.all([a1, r2].map((id, i) =>
        sessionLookup[i === 0 ? "access_token" : "refresh_token"].revoke(instanceStore, id, c.client.clientId, "revoked_by_client", null),
      ));
      await Bun.sleep(300);
      proceed();
      await holder; // it got family one's grant once the batch was rolled back, and commits
      const results = await batch;
      expect(results.map((r) => r.outcome)).toEqual(["revoked", "revoked"]);
      // The batch, then each item alone.
      expect(statements.stop()).toBe(3);
    } finally {
      await instance.close();
      await other.end();
    }
    for (const token of [one.accessToken, one.refreshToken!, two.accessToken, two.refreshToken!]) {
      expect((await t.services.pipeline.verify(token)).ok).toBe(false);
    }
  });
});
