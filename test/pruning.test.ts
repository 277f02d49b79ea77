// Pruning: expired sessions, authorization codes and event-log entries go, in batches;
// everything that can still matter (live sessions, reuse detection, live grants, entries a
// Shared Signals stream has yet to read) stays.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { authorizationGrants, clients, revocationEvents, sessions } from "../db/schema.ts";
import { prune, startPruning, startUpkeep } from "../src/oauth/pruning.ts";
import { createClient, mintCodeSession, useTestApp, rotateSession } from "./helpers/app.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";

// Databases opened inside tests and CLI runs take seconds on a loaded 2-core machine.
setDefaultTimeout(60_000);

const HOUR = 3600_000;
const ago = (ms: number) => new Date(Date.now() - ms);
const ahead = (ms: number) => new Date(Date.now() + ms);

async function insertSession(t: TestApp, c: TestClient, access: Date, refresh: Date | null, grantId: string | null = null) {
  const [row] = await t.database.db
    .insert(sessions)
    .values({
      clientId: c.client.clientId,
      subject: "user-p",
      grantId,
      accessTokenJti: randomUUID(),
      refreshTokenJti: refresh ? randomUUID() : null,
      accessExpiresAt: access,
      refreshExpiresAt: refresh,
    })
    .returning({ id: sessions.id });
  return row!.id;
}

async function insertGrant(t: TestApp, c: TestClient, expires: Date) {
  const [row] = await t.database.db
    .insert(authorizationGrants)
    .values({ clientId: c.client.clientId, codeHash: randomUUID(), expiresAt: expires })
    .returning({ id: authorizationGrants.id });
  return row!.id;
}

const exists = async (t: TestApp, table: typeof sessions | typeof authorizationGrants, id: string) =>
  (await t.database.db.select({ id: table.id }).from(table).where(eq(table.id, id))).length === 1;

describe.each(backends)("pruning [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("deletes sessions past both expiries and keeps every session with a token still valid", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const gone = [
      await insertSession(t, c, ago(2 * HOUR), ago(HOUR)),
      await insertSession(t, c, ago(2 * HOUR), null),
    ];
    const kept = [
      await insertSession(t, c, ago(2 * HOUR), ahead(HOUR)), // refresh token still valid
      await insertSession(t, c, ahead(HOUR), null), // live client_credentials session
      await insertSession(t, c, ago(60_000), null), // expired within the margin
    ];
    const counts = await prune(t.database);
    expect(counts.sessions).toBeGreaterThanOrEqual(2);
    for (const id of gone) expect(await exists(t, sessions, id)).toBe(false);
    for (const id of kept) expect(await exists(t, sessions, id)).toBe(true);
  });

  test("deletes expired codes without sessions, and grants whose sessions are all gone; keeps grants of live sessions", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const unredeemed = await insertGrant(t, c, ago(HOUR));
    const deadFamily = await insertGrant(t, c, ago(HOUR));
    await insertSession(t, c, ago(2 * HOUR), ago(HOUR), deadFamily);
    const liveFamily = await insertGrant(t, c, ago(HOUR));
    const liveSession = await insertSession(t, c, ahead(HOUR), ahead(HOUR), liveFamily);
    const fresh = await insertGrant(t, c, ahead(60_000));
    const counts = await prune(t.database);
    expect(counts.authorizationCodes).toBeGreaterThanOrEqual(2);
    expect(await exists(t, authorizationGrants, unredeemed)).toBe(false);
    expect(await exists(t, authorizationGrants, deadFamily)).toBe(false);
    expect(await exists(t, authorizationGrants, liveFamily)).toBe(true);
    expect(await exists(t, sessions, liveSession)).toBe(true);
    expect(await exists(t, authorizationGrants, fresh)).toBe(true);
  });

  test("a rotated session survives pruning, so reuse of its refresh token is still detected", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const s = await mintCodeSession(t, c);
    const presented = s.refreshToken!;
    const first = await rotateSession(t, c.client, presented);
    if (first.outcome !== "rotated") throw new Error(`rotation failed: ${first.outcome}`);
    // The rotated-away session's access token has expired long ago; its refresh token has not.
    await t.database.db.update(sessions).set({ accessExpiresAt: ago(2 * HOUR) }).where(eq(sessions.id, s.sessionId));
    await prune(t.database);
    expect(await exists(t, sessions, s.sessionId)).toBe(true);
    const replay = await rotateSession(t, c.client, presented);
    expect(replay.outcome).toBe("reuse");
    expect((await t.services.pipeline.verify(first.tokens.accessToken)).ok).toBe(false);
  });

  test("deletes revocation-feed entries of expired tokens only", async () => {
    const t = await ready();
    const sessionId = randomUUID();
    const [old] = await t.database.db
      .insert(revocationEvents)
      .values({ jti: randomUUID(), tokenKind: "access_token", sessionId, expiresAt: ago(HOUR) })
      .returning({ cursor: revocationEvents.cursor });
    const [live] = await t.database.db
      .insert(revocationEvents)
      .values({ jti: randomUUID(), tokenKind: "access_token", sessionId, expiresAt: ahead(HOUR) })
      .returning({ cursor: revocationEvents.cursor });
    const counts = await prune(t.database);
    expect(counts.revocationEvents).toBeGreaterThanOrEqual(1);
    const cursors = (await t.database.db.select({ cursor: revocationEvents.cursor }).from(revocationEvents)).map((r) => r.cursor);
    expect(cursors).not.toContain(old!.cursor);
    expect(cursors).toContain(live!.cursor);
  });

  test("keeps entries a Shared Signals stream has yet to read, up to TA_SSF_RETENTION, and counts what a stream lost", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    await prune(t.database);
    const stream = await t.services.stores.ssf.create({
      clientId: c.client.clientId,
      audience: c.client.clientId,
      eventsDelivered: [],
      deliveryMethod: "urn:ietf:rfc:8936",
    });
    const other = await t.services.stores.ssf.create({
      clientId: c.client.clientId,
      audience: c.client.clientId,
      eventsDelivered: [],
      deliveryMethod: "urn:ietf:rfc:8936",
    });
    await t.services.stores.ssf.setStatus(other.id, "disabled", null);
    const entry = async (revokedAt: Date, streamId: string | null = null) => {
      const [row] = await t.database.db
        .insert(revocationEvents)
        .values({ jti: randomUUID(), tokenKind: "access_token", sessionId: randomUUID(), expiresAt: ago(HOUR), revokedAt, streamId })
        .returning({ cursor: revocationEvents.cursor });
      return row!.cursor;
    };
    const unread = await entry(ago(60_000)); // expired token, but the stream has not read it
    const tooOld = await entry(ago(3 * HOUR)); // past the retention: dropped, and counted
    const forDisabled = await entry(ago(60_000), other.id); // for the disabled stream only: holds nothing
    const counts = await prune(t.database, { eventRetention: 2 * 3600 });
    const cursors = (await t.database.db.select({ cursor: revocationEvents.cursor }).from(revocationEvents)).map((r) => r.cursor);
    expect(cursors).toContain(unread);
    expect(cursors).not.toContain(tooOld);
    expect(cursors).not.toContain(forDisabled);
    expect(counts.droppedByStream).toEqual({ [stream.id]: 1 });

    // Once the stream has read past them, expired entries go as before, and nothing counts as lost.
    await t.services.stores.ssf.settle(stream.id, [], unread);
    const after = await prune(t.database, { eventRetention: 2 * 3600 });
    expect(after.droppedByStream).toEqual({});
    const left = (await t.database.db.select({ cursor: revocationEvents.cursor }).from(revocationEvents)).map((r) => r.cursor);
    expect(left).not.toContain(unread);
  });

  test("works through many rows in small batches", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    await prune(t.database);
    const rows = Array.from({ length: 25 }, () => ({
      clientId: c.client.clientId,
      subject: "bulk",
      accessTokenJti: randomUUID(),
      accessExpiresAt: ago(2 * HOUR),
    }));
    await t.database.db.insert(sessions).values(rows);
    const statements: string[] = [];
    const original = t.database.rows;
    t.database.rows = (query) => {
      statements.push("batch");
      return original(query);
    };
    try {
      const counts = await prune(t.database, { batchSize: 10 });
      expect(counts.sessions).toBe(25);
    } finally {
      t.database.rows = original;
    }
    expect(statements.length).toBe(3 + 1 + 1 + 1); // 10 + 10 + 5 sessions, then one pass each for codes, DPoP proofs and events
    const [left] = await t.database.rows<{ n: number }>(sql`select count(*)::int as n from sessions where subject = 'bulk'`);
    expect(Number(left!.n)).toBe(0);
  });

  test("deletes self-registered clients never used within the TTL; keeps used ones (even once their tokens are gone) and operators'", async () => {
    const t = await ready();
    const make = async (registration: "operator" | "dynamic", age: number) => {
      const c = await createClient(t, "public", { registration });
      await t.database.db.update(clients).set({ createdAt: ago(age) }).where(eq(clients.clientId, c.client.clientId));
      return c;
    };
    const unused = await make("dynamic", 3 * HOUR);
    const young = await make("dynamic", 10 * 60_000);
    const operator = await make("operator", 3 * HOUR);
    const withToken = await make("dynamic", 3 * HOUR);
    await insertSession(t, withToken, ahead(HOUR), null);
    const withCode = await make("dynamic", 3 * HOUR);
    await insertGrant(t, withCode, ahead(HOUR));
    const document = await make("dynamic", 3 * HOUR);
    await t.database.db.update(clients).set({ registration: "document" }).where(eq(clients.clientId, document.client.clientId));
    // Used once, long ago: its token has expired and is pruned in the same pass; it stays.
    const usedBefore = await make("dynamic", 3 * HOUR);
    await insertSession(t, usedBefore, ago(2 * HOUR), null);

    const counts = await prune(t.database, { unusedClientTtl: 3600 });
    const left = async (c: TestClient) => (await t.database.db.select().from(clients).where(eq(clients.clientId, c.client.clientId))).length;
    expect(counts.clients).toBe(2); // unused and document
    expect([await left(unused), await left(document)]).toEqual([0, 0]);
    expect([await left(young), await left(operator), await left(withToken), await left(withCode), await left(usedBefore)]).toEqual([1, 1, 1, 1, 1]);
    // Seen in use: marked, and kept by later passes though nothing of it is left.
    const [row] = await t.database.db.select().from(clients).where(eq(clients.clientId, usedBefore.client.clientId));
    expect(row!.firstUsedAt).toBeInstanceOf(Date);
    expect((await prune(t.database, { unusedClientTtl: 3600 })).clients).toBe(0);
    expect(await left(usedBefore)).toBe(1);
    // Without a TTL nothing is deleted.
    const another = await make("dynamic", 3 * HOUR);
    expect((await prune(t.database, {})).clients).toBe(0);
    expect(await left(another)).toBe(1);
  });

  test("the periodic job prunes, counts in metrics and logs maintenance.prune.completed", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const id = await insertSession(t, c, ago(2 * HOUR), null);
    const job = startPruning(t.services, 3600);
    try {
      const counts = await job.runOnce();
      expect(counts?.sessions).toBeGreaterThanOrEqual(1);
    } finally {
      await job.stop();
    }
    expect(await exists(t, sessions, id)).toBe(false);
    expect(t.logs.some((line) => JSON.parse(line).event === "maintenance.prune.completed")).toBe(true);
    expect(await t.services.metrics.pruned.get()).toMatchObject({ values: expect.arrayContaining([expect.objectContaining({ labels: { table: "sessions" } })]) });
  });
});

describe.each(backends)("table upkeep [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("where no autovacuum runs, analyzes and vacuums the tables that changed; never on PGlite", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const job = startUpkeep(t.services, 3600);
    try {
      if (backend === "pglite") {
        expect(await job.runOnce()).toBeUndefined();
        return;
      }
      const [row] = await t.database.rows<{ launcher: boolean }>(
        sql`select exists (select 1 from pg_stat_activity where backend_type = 'autovacuum launcher') as launcher`,
      );
      const launcher = row?.launcher === true;
      const rows = Array.from({ length: 400 }, () => ({ clientId: c.client.clientId, subject: "user-u", accessTokenJti: randomUUID(), accessExpiresAt: ahead(HOUR) }));
      await t.database.db.insert(sessions).values(rows);
      await t.database.db.update(sessions).set({ status: "revoked" }).where(eq(sessions.subject, "user-u"));
      // The statistics reach pg_stat_user_tables within a second of the commit (PostgreSQL 15).
      const stats = async () =>
        (await t.database.rows<{ dead: number; changed: number; analyzed: boolean }>(sql`
          select n_dead_tup::int as dead, n_mod_since_analyze::int as changed, last_analyze is not null as analyzed
            from pg_stat_user_tables where relname = 'sessions' and schemaname = current_schema()`))[0]!;
      for (const deadline = Date.now() + 10_000; (await stats()).dead < 400 && Date.now() < deadline; ) await Bun.sleep(100);
      expect((await stats()).dead).toBeGreaterThanOrEqual(400);
      const counts = await job.runOnce();
      if (launcher) {
        expect(counts).toBeUndefined(); // autovacuum's job, not ours
        return;
      }
      expect(counts?.vacuumed).toContain("sessions");
      const after = await stats();
      expect(after).toMatchObject({ dead: 0, changed: 0, analyzed: true });
      expect(t.logs.some((line) => JSON.parse(line).event === "maintenance.upkeep.completed")).toBe(true);
      expect((await job.runOnce())?.vacuumed).not.toContain("sessions"); // nothing changed since
    } finally {
      await job.stop();
    }
  });
});

describe("sessions prune command", () => {
  test("prunes the configured database and prints the counts as JSON", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { main } = await import("../src/main.ts");
    const dir = mkdtempSync(join(tmpdir(), "ta-prune-"));
    const out: string[] = [];
    try {
      const io = { env: { TA_DATA_DIR: dir, TA_LOG_LEVEL: "error" }, stdout: (s: string) => out.push(s), readStdin: async () => "" };
      expect(await main(["sessions", "prune", "--batch-size", "50"], io)).toBe(0);
      expect(JSON.parse(out.at(-1)!)).toEqual({ sessions: 0, authorization_codes: 0, revocation_events: 0, unused_clients: 0, dpop_proofs: 0 });
      expect(await main(["sessions", "prune", "--batch-size", "zero"], io)).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("TA_PRUNE_INTERVAL", () => {
  test("is off by default and read in seconds", async () => {
    const { loadConfig, ConfigError } = await import("../src/config.ts");
    expect(loadConfig({}).pruneInterval).toBe(0);
    expect(loadConfig({ TA_PRUNE_INTERVAL: "600" }).pruneInterval).toBe(600);
    expect(() => loadConfig({ TA_PRUNE_INTERVAL: "-1" })).toThrow(ConfigError);
  });

  test("TA_UPKEEP_INTERVAL is 10 seconds by default, 0 turns it off", async () => {
    const { loadConfig, ConfigError } = await import("../src/config.ts");
    expect(loadConfig({}).upkeepInterval).toBe(10);
    expect(loadConfig({ TA_UPKEEP_INTERVAL: "0" }).upkeepInterval).toBe(0);
    expect(() => loadConfig({ TA_UPKEEP_INTERVAL: "soon" })).toThrow(ConfigError);
  });
});
