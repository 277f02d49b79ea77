// The introspection cache (src/oauth/introspection-cache.ts): it answers repeated
// introspections without the database, and never answers active for a token revoked here,
// revoked by another instance once its notification arrived, or older than the TTL.
import { describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { openPostgres } from "../db/client.ts";
import { sessions } from "../db/schema.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, createTestApp, introspect, mintClientSession, post, useTestApp } from "./helpers/app.ts";
import { backends, openTestDatabase, testDatabaseUrl } from "./helpers/db.ts";

const described = async (t: TestApp, c: TestClient, token: string) => (await introspect(t, c, token, "access_token"))[1] as { active: boolean };

/** Introspects until the cache is on (its heartbeat came back) and holds the token. */
async function cached(t: TestApp, c: TestClient, token: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    expect((await described(t, c, token)).active).toBe(true);
    if (t.services.introspectionCache!.get(token, Date.now())) return;
    await Bun.sleep(5);
  }
  throw new Error("the token never reached the cache");
}

/**
 * A token the cache holds whose session was then deleted behind the server's back: only the
 * cache can still call it live.
 */
async function cachedThenDeleted(t: TestApp) {
  const c = await createClient(t, "confidential");
  const s = await mintClientSession(t, c);
  await cached(t, c, s.accessToken);
  await t.database.db.delete(sessions).where(eq(sessions.id, s.sessionId));
  return { c, token: s.accessToken };
}

describe.each(backends)("introspection cache [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_INTROSPECTION_CACHE_TTL: "30" });

  test("answers a repeated introspection without the database", async () => {
    const t = await ready();
    const { c, token } = await cachedThenDeleted(t);
    expect((await described(t, c, token)).active).toBe(true);
  });

  test("a token revoked at this instance is inactive at once, though it was cached", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    await cached(t, c, s.accessToken);
    const [res] = await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
    expect(res.status).toBe(200);
    expect((await described(t, c, s.accessToken)).active).toBe(false);
  });

  test("any revocation here empties the cache, even of another client's session", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const other = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    await mintClientSession(t, other);
    await cached(t, c, s.accessToken);
    expect(await t.services.sessions.revoke({ clientId: other.client.clientId }, "revoked_by_operator")).toBe(1);
    expect(t.services.introspectionCache!.size).toBe(0);
  });

  test("a lookup that began before a revocation is not stored", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    await cached(t, c, s.accessToken);
    const cache = t.services.introspectionCache!;
    const entry = cache.get(s.accessToken, Date.now())!;
    const mark = cache.mark(); // the lookup begins
    t.services.notifier.committed(); // a revocation commits meanwhile
    cache.set(s.accessToken, entry, mark); // the lookup, which read the session live, ends
    expect(cache.get(s.accessToken, Date.now())).toBeUndefined();
  });

  test("a cached token is described only to callers allowed to see it", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const other = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    await cached(t, c, s.accessToken);
    expect(await described(t, other, s.accessToken)).toEqual({ active: false });
  });
});

describe.each(backends)("introspection cache TTL [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_INTROSPECTION_CACHE_TTL: "0.2" });

  test("an entry older than the TTL is not served", async () => {
    const t = await ready();
    const { c, token } = await cachedThenDeleted(t);
    expect((await described(t, c, token)).active).toBe(true);
    await Bun.sleep(250);
    expect((await described(t, c, token)).active).toBe(false);
  });
});

describe.each(backends)("introspection cache without LISTEN [%s]", (backend) => {
  test("serves nothing while its heartbeat does not come back", async () => {
    // A database whose LISTEN never delivers anything: the connection is as good as down.
    const t = await createTestApp(backend, {}, { database: deafDatabase(await openTestDatabase(backend)) });
    try {
      const c = await createClient(t, "confidential");
      const s = await mintClientSession(t, c);
      for (let i = 0; i < 5; i++) expect((await described(t, c, s.accessToken)).active).toBe(true);
      await Bun.sleep(20);
      await t.database.db.delete(sessions).where(eq(sessions.id, s.sessionId));
      expect((await described(t, c, s.accessToken)).active).toBe(false);
    } finally {
      await t.close();
    }
  });

  test("TA_INTROSPECTION_CACHE_TTL=0 turns it off", async () => {
    const t = await createTestApp(backend, { TA_INTROSPECTION_CACHE_TTL: "0" });
    try {
      expect(t.services.introspectionCache).toBeUndefined();
    } finally {
      await t.close();
    }
  });
});

const postgresOnly = backends.includes("postgres") ? describe : describe.skip;
postgresOnly("introspection cache across instances [postgres]", () => {
  test("a token revoked by another instance is inactive once the notification arrived, long before the TTL", async () => {
    const a = await createTestApp("postgres", { TA_INTROSPECTION_CACHE_TTL: "30" });
    const url = testDatabaseUrl(a.database)!;
    const b = await createTestApp("postgres", {}, { database: openPostgres(url, { poolSize: 2, connectTimeout: 5, statementTimeout: 10 }) });
    try {
      const c = await createClient(a, "confidential");
      const s = await mintClientSession(a, c);
      await cached(a, c, s.accessToken);
      const [res] = await post(b, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
      expect(res.status).toBe(200);
      let active = true;
      const began = performance.now();
      while (active && performance.now() - began < 5000) {
        active = (await described(a, c, s.accessToken)).active;
        if (active) await Bun.sleep(2);
      }
      expect(active).toBe(false);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

function deafDatabase(database: Database): Database {
  return { ...database, listen: async () => async () => {} };
}
