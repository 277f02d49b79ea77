// POST /oauth/revoke (RFC 7009): whole families, idempotency, rotated and expired tokens,
// concurrency, races with refresh, and a database that goes away (503, never a silent 200).
import { afterAll, describe, expect, test } from "bun:test";
import type { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { openPostgres } from "../db/client.ts";
import { SessionService } from "../src/oauth/sessions.ts";
import { createTokenService } from "../src/oauth/tokens.ts";
import type { TestApp } from "./helpers/app.ts";
import { createTestApp, holdStatements, revoke, rotateSession } from "./helpers/app.ts";
import type { Backend } from "./helpers/db.ts";
import { backends, createPostgresDatabase, openTestDatabase, TEST_DATABASE_URL } from "./helpers/db.ts";
import {
  client, clientFamily, codeFamily, expectDead, expectEmpty200, expectLive, expectOAuthError, remember, rotate, snapshot, unknownToken, useApp,
  watchLogs,
} from "./helpers/families.ts";
import { startTcpProxy } from "./helpers/tcp-proxy.ts";

// Families, idempotency, expiry, concurrency, races

describe.each(backends)("revoking families [%s]", (backend) => {
  const ready = useApp(backend);

  test("revoking twice: 200 both times, the second changes nothing", async () => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    expectEmpty200(...(await revoke(t, owner, f.refreshToken!)));
    const after = await snapshot(t);
    const logs = watchLogs(t);
    expectEmpty200(...(await revoke(t, owner, f.refreshToken!)));
    expectEmpty200(...(await revoke(t, owner, f.accessToken)));
    expect(await snapshot(t)).toEqual(after);
    const outcomes = logs().filter((line) => line.event === "token.revocation.completed").map((line) => line.outcome);
    expect(outcomes).toEqual(["already_revoked", "already_revoked"]);
    await expectDead(t, f);
  });

  test.each([
    ["the rotated-away refresh token", 1],
    ["the old access token", 1],
    ["the rotated-away refresh token", 3],
    ["the old access token", 3],
  ] as const)("revoking %s after %d rotation(s) kills the live pair", async (which, rotations) => {
    const t = await ready();
    const owner = await client(t, "public");
    const f = await codeFamily(t, owner);
    let current = f;
    for (let i = 0; i < rotations; i++) {
      const rotated = await rotate(t, current);
      if (rotated.outcome !== "rotated") throw new Error(`rotation failed: ${rotated.outcome}`);
      current = { ...f, accessToken: rotated.tokens.accessToken, refreshToken: rotated.tokens.refreshToken, sessionId: rotated.tokens.sessionId };
    }
    await expectLive(t, current);
    const logs = watchLogs(t);
    expectEmpty200(...(await revoke(t, owner, which === "the old access token" ? f.accessToken : f.refreshToken!)));
    expect(logs()).toContainEqual(expect.objectContaining({ event: "token.revocation.completed", session_id: f.sessionId, outcome: "revoked", family_revoked: 1 }));
    await expectDead(t, current);
  });

  test.each([
    ["no hint", undefined],
    ["hint access_token", "access_token"],
    ["hint refresh_token", "refresh_token"],
  ] as const)("an expired access token [%s] revokes its live family", async (_label, hint) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const twoHoursAgo = () => Date.now() - 2 * 3600_000;
    const pastSessions = new SessionService(t.services.stores.sessions, createTokenService(t.services.keys, t.config.issuer, twoHoursAgo), t.services.codes, t.config, twoHoursAgo);
    const f = await codeFamily(t, owner, pastSessions);
    expect(await t.services.pipeline.verify(f.accessToken)).toEqual({ ok: false, reason: "expired" });
    expect(await t.services.pipeline.verify(f.refreshToken!)).toMatchObject({ ok: true });
    expectEmpty200(...(await revoke(t, owner, f.accessToken, hint)));
    await expectDead(t, f);
  });

  test.each(["refresh token", "client-credentials access token"] as const)(
    "100 concurrent revocations of one %s: all 200, the family revoked once",
    async (kind) => {
      const t = await ready();
      const owner = await client(t, "confidential");
      const f = kind === "refresh token" ? await codeFamily(t, owner) : await clientFamily(t, owner);
      const token = f.refreshToken ?? f.accessToken;
      const logs = watchLogs(t);
      const responses = await Promise.all(Array.from({ length: 100 }, () => revoke(t, owner, token)));
      for (const [res, body] of responses) expectEmpty200(res, body);
      const completed = logs().filter((line) => line.event === "token.revocation.completed" && line.session_id === f.sessionId);
      expect(completed.filter((line) => line.outcome === "revoked")).toHaveLength(1);
      expect(completed.filter((line) => line.outcome === "already_revoked")).toHaveLength(99);
      // Each token of the family is announced once on the revocation feed.
      const [events] = await t.database.rows<{ count: number | string }>(
        sql`select count(*) as count from revocation_events where session_id = ${f.sessionId}`,
      );
      expect(Number(events!.count)).toBe(f.refreshToken ? 2 : 1);
      await expectDead(t, f);
    },
  );

  test("revocation racing a refresh of the same family never leaves a live session (30 rounds)", async () => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 30; round++) {
      const f = await codeFamily(t, owner);
      const token = round % 4 < 2 ? f.refreshToken! : f.accessToken;
      const presented = f.refreshToken!;
      const rotate = () => rotateSession(t, owner.client, presented);
      let rotation: ReturnType<typeof rotate> | undefined;
      if (round % 2 === 0) {
        // The refresh goes first (its tokens are signed before its statement leaves); the
        // revocation follows it closely.
        const held = holdStatements(t.database, "ta_rotate_sessions");
        rotation = rotate();
        await held.sent;
        held.release();
      } else {
        // The refresh leaves the moment the revocation's statement does: both are in flight at once.
        await t.services.notifier.flush();
        const original = t.database.rows;
        t.database.rows = ((query) => {
          t.database.rows = original;
          const revocation = original(query);
          rotation = rotate();
          return revocation;
        }) as Database["rows"];
      }
      const [res, body] = await revoke(t, owner, token);
      const rotated = await rotation!;
      expectEmpty200(res, body);
      outcomes.set(rotated.outcome, (outcomes.get(rotated.outcome) ?? 0) + 1);
      const [row] = await t.database.rows<{ live: number | string }>(
        sql`select count(*) as live from sessions where grant_id = ${f.grantId} and status = 'created'`,
      );
      expect({ round, live: Number(row!.live) }).toEqual({ round, live: 0 });
      if (rotated.outcome === "rotated") {
        remember(rotated.tokens);
        expect(await t.services.pipeline.verify(rotated.tokens.accessToken)).toMatchObject({ ok: false });
      }
    }
    // Either order is fine, but both must have happened for the test to mean something. A refresh
    // the revocation beat is 'revoked' (the family is dead already: no theft), never reuse.
    expect(Object.fromEntries(outcomes)).toEqual({ rotated: expect.any(Number), revoked: expect.any(Number) });
  });
});

// The database goes away

interface Outage {
  t: TestApp;
  /** Takes the database away from the app. */
  cut(): void;
  /** Brings it back. */
  restore(): void;
}

/** An app whose database can be cut off: a TCP proxy before PostgreSQL; failing calls on PGlite. */
async function appWithOutage(backend: Backend): Promise<Outage> {
  if (backend === "pglite") {
    const database = (await openTestDatabase("pglite")) as Database & { pglite: PGlite };
    let down = false;
    for (const method of ["query", "exec", "transaction"] as const) {
      const original = database.pglite[method].bind(database.pglite) as (...args: unknown[]) => Promise<unknown>;
      Object.assign(database.pglite, {
        [method]: (...args: unknown[]) => (down ? Promise.reject(new Error("PGlite is closed")) : original(...args)),
      });
    }
    const t = await createTestApp(backend, {}, { database });
        return { t, cut: () => void (down = true), restore: () => void (down = false) };
  }
  const created = await createPostgresDatabase();
  const upstream = new URL(TEST_DATABASE_URL!);
  const proxy = startTcpProxy({ hostname: upstream.hostname, port: Number(upstream.port || 5432) });
  const viaProxy = new URL(created.url);
  viaProxy.hostname = "127.0.0.1";
  viaProxy.port = String(proxy.port);
  // One connection, so none is half-way through its start-up when the cut comes (postgres.js
  // then rejects its internal type-fetch promise with nobody listening: an unhandled rejection).
  const database = openPostgres(viaProxy.toString(), { poolSize: 1, connectTimeout: 5, statementTimeout: 5 });
  const t = await createTestApp(backend, {}, {
    database: {
      ...database,
      async close() {
        await database.close();
        proxy.stop();
        await created.drop();
      },
    },
  });
    return { t, cut: () => proxy.stop(), restore: () => proxy.start() };
}

describe.each(backends)("database outage [%s]", (backend) => {
  let opened: Promise<Outage> | undefined;
  const outage = () => (opened ??= appWithOutage(backend));
  // postgres.js may wait out its 5 s end() timeout on a connection that saw the outage.
  afterAll(async () => (opened ? (await opened).t.close() : undefined), 15_000);

  test.each(["a client already authenticated once (cached)", "a client not yet looked up"] as const)(
    "503 temporarily_unavailable with Retry-After for %s, and the token is still live once the database is back",
    async (which) => {
      const { t, cut, restore } = await outage();
      const owner = await client(t, "confidential");
      if (which.includes("cached")) expectEmpty200(...(await revoke(t, owner, await unknownToken(t))));
      const f = await codeFamily(t, owner);
      const logs = watchLogs(t);
      await t.services.notifier.flush(); // no statement of an earlier revocation in flight
      cut();
      try {
        for (const token of [f.refreshToken!, f.accessToken]) {
          const [res, body] = await revoke(t, owner, token);
          expectOAuthError(res, body, 503, "temporarily_unavailable");
          expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
        }
      } finally {
        restore();
      }
      expect(logs()).toContainEqual(expect.objectContaining({ level: "error", event: "db.unavailable" }));
      await expectLive(t, f);
      // The server recovers without a restart.
      expectEmpty200(...(await revoke(t, owner, f.accessToken)));
      await expectDead(t, f);
    },
  );

});
