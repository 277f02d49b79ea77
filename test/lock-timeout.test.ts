// A row lock held elsewhere makes a revocation answer 503 within the statement (lock) timeout,
// never hang, and change nothing; once the lock is gone the same revocation succeeds.
// PostgreSQL only (PGlite has one connection, so no lock can be held elsewhere).
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import type { Database } from "../db/client.ts";
import { openPostgres } from "../db/client.ts";
import { createClient, createTestApp, mintClientSession, mintCodeSession, post } from "./helpers/app.ts";
import type { TestApp } from "./helpers/app.ts";
import { databaseUrl, openTestDatabase, TEST_DATABASE_URL } from "./helpers/db.ts";

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
    // The server's own settings, with a 1-second statement and lock timeout.
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
      expect(elapsed).toBeGreaterThan(900);
      expect(elapsed).toBeLessThan(3000);
    } finally {
      await holder.release();
    }
    expect((await t.services.verifier.verify(s.accessToken)).ok).toBe(true);
    const [res] = await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
    expect(res.status).toBe(200);
    expect((await t.services.verifier.verify(s.accessToken)).ok).toBe(false);
  });
});
