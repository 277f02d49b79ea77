// GET /oauth/revocations: JSON pages, the SSE stream (live delivery, resume, heartbeats),
// two instances on one PostgreSQL, and a revoking transaction that commits late.
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { openPostgres } from "../db/client.ts";
import { revocationEvents } from "../db/schema.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/log.ts";
import { startServer } from "../src/server.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { basic, createClient, createTestApp, mintCodeSession, post, request, useTestApp, rotateSession } from "./helpers/app.ts";
import { backends, testDatabaseUrl } from "./helpers/db.ts";
import type { SseReader } from "./helpers/sse.ts";
import { entryOf, readSse } from "./helpers/sse.ts";

const jtiOf = (token: string) => JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()).jti as string;

/** Mints a code session and revokes it at `t`: two entries (access and refresh token). */
async function revokedSession(t: TestApp, c: TestClient) {
  const s = await mintCodeSession(t, c);
  const [res] = await post(t, "/oauth/revoke", { token: s.refreshToken! }, c.auth.headers);
  expect(res.status).toBe(200);
  return { access: jtiOf(s.accessToken), refresh: jtiOf(s.refreshToken!), accessToken: s.accessToken };
}

const feed = (t: TestApp, c: TestClient, query = "") => request(t, "GET", `/oauth/revocations${query}`, { headers: c.auth.headers });

async function subscribe(t: TestApp, c: TestClient, query = "", headers: Record<string, string> = {}): Promise<SseReader> {
  const res = await t.app.handle(
    new Request(`http://localhost/oauth/revocations${query}`, { headers: { ...c.auth.headers, accept: "text/event-stream", ...headers } }),
  );
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  expect(res.headers.get("cache-control")).toBe("no-store");
  return readSse(res);
}

describe.each(backends)("revocation feed, JSON [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("pages through the entries after a cursor, oldest first", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, start] = await feed(t, c);
    const revoked = [await revokedSession(t, c), await revokedSession(t, c), await revokedSession(t, c)];
    const expected = revoked.flatMap((r) => [r.access, r.refresh]).sort();

    const seen: Array<{ jti: string; exp: number; revoked_at: number; cursor: number; reason: string | null }> = [];
    let cursor = start.next_cursor as number;
    for (let pages = 0; pages < 10; pages++) {
      const [res, body] = await feed(t, c, `?after=${cursor}&limit=4`);
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(body.entries.length).toBeLessThanOrEqual(4);
      seen.push(...body.entries);
      if (body.entries.length === 0) {
        expect(body.next_cursor).toBe(cursor);
        break;
      }
      expect(body.next_cursor).toBe(body.entries.at(-1).cursor);
      cursor = body.next_cursor;
    }
    expect(seen.map((e) => e.jti).sort()).toEqual(expected);
    const cursors = seen.map((e) => e.cursor);
    expect(cursors).toEqual([...cursors].sort((a, b) => a - b));
    const now = Date.now() / 1000;
    for (const entry of seen) {
      expect(Object.keys(entry).sort()).toEqual(["cursor", "exp", "jti", "reason", "revoked_at"]);
      expect(entry.reason).toBe("revoked_by_client");
      expect(entry.exp).toBeGreaterThan(now);
      expect(Math.abs(entry.revoked_at - now)).toBeLessThan(60);
    }
  });

  test("leaves out expired entries but moves past them", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, start] = await feed(t, c);
    const gone = await revokedSession(t, c);
    const kept = await revokedSession(t, c);
    await t.database.db.update(revocationEvents).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(revocationEvents.jti, gone.access));
    const [, body] = await feed(t, c, `?after=${start.next_cursor}`);
    expect(body.entries.map((e: { jti: string }) => e.jti).sort()).toEqual([gone.refresh, kept.access, kept.refresh].sort());
    const [, last] = await feed(t, c, `?after=${body.next_cursor}`);
    expect(last.entries).toEqual([]);
  });

  test("serves token entries only: security events in the same log move the cursor without showing", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, start] = await feed(t, c);
    // A user with no sessions, disabled and enabled: two events, no token.
    const user = await t.services.admin.createUser(`feed-${randomUUID().slice(0, 8)}`, "a long enough password");
    await t.services.admin.disableUser(user.id);
    await t.services.admin.enableUser(user.id);
    const r = await revokedSession(t, c);
    const logged = await t.database.db.select().from(revocationEvents).where(sql`${revocationEvents.cursor} > ${start.next_cursor}`);
    expect(logged.map((row) => row.event ?? row.tokenKind)).toEqual(["account-disabled", "account-enabled", "access_token", "refresh_token"]);
    expect(logged[0]).toMatchObject({ subject: user.id, reason: "user_disabled", jti: null });
    const [, body] = await feed(t, c, `?after=${start.next_cursor}`);
    expect(body.entries.map((e: { jti: string }) => e.jti)).toEqual([r.access, r.refresh]);
    expect(body.next_cursor).toBe(logged.at(-1)!.cursor);
  });

  test("filters by token_type", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, start] = await feed(t, c);
    const r = await revokedSession(t, c);
    const [, access] = await feed(t, c, `?after=${start.next_cursor}&token_type=access_token`);
    expect(access.entries.map((e: { jti: string }) => e.jti)).toEqual([r.access]);
    const [, refresh] = await feed(t, c, `?after=${start.next_cursor}&token_type=refresh_token`);
    expect(refresh.entries.map((e: { jti: string }) => e.jti)).toEqual([r.refresh]);
  });

  test("carries revocations by refresh-token reuse too", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, start] = await feed(t, c);
    const s = await mintCodeSession(t, c);
    const presented = s.refreshToken!;
    const rotate = () => rotateSession(t, c.client, presented);
    const first = await rotate();
    if (first.outcome !== "rotated") throw new Error(`rotation failed: ${first.outcome}`);
    expect((await rotate()).outcome).toBe("reuse");
    const [, body] = await feed(t, c, `?after=${start.next_cursor}`);
    expect(body.entries.map((e: { jti: string }) => e.jti)).toContain(jtiOf(first.tokens.accessToken));
  });

  test.each([
    ["no credentials", () => ({})],
    ["a wrong secret", (c: TestClient) => ({ authorization: basic(c.client.clientId, "wrong") })],
    ["a public client", (_c: TestClient, p: TestClient) => ({ authorization: basic(p.client.clientId, "") })],
  ] as const)("refuses a caller with %s", async (_name, headers) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const p = await createClient(t, "public");
    const [res, body] = await request(t, "GET", "/oauth/revocations", { headers: headers(c, p) });
    expect(res.status).toBe(401);
    expect(body.error).toBe("invalid_client");
    expect(res.headers.get("www-authenticate")).toStartWith("Basic");
  });

  test("refuses the credentials of a public client in the query", async () => {
    const t = await ready();
    const p = await createClient(t, "public");
    const [res] = await request(t, "GET", `/oauth/revocations?client_id=${p.client.clientId}`);
    expect(res.status).toBe(401);
  });

  test.each(["?after=abc", "?after=-1", "?after=1.5", "?limit=0", "?limit=100000", "?token_type=id_token"])(
    "refuses %s with invalid_request",
    async (query) => {
      const t = await ready();
      const c = await createClient(t, "confidential");
      const [res, body] = await feed(t, c, query);
      expect(res.status).toBe(400);
      expect(body.error).toBe("invalid_request");
    },
  );

  test("answers 405 to other methods", async () => {
    const t = await ready();
    const [res] = await request(t, "POST", "/oauth/revocations");
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET");
  });
});

describe.each(backends)("revocation feed, SSE [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("delivers a revocation made after subscribing, with id = cursor", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const before = await revokedSession(t, c);
    const stream = await subscribe(t, c);
    try {
      await stream.waitFor((e) => e.event === "ready");
      expect(stream.events.some((e) => e.data.includes(before.access))).toBe(true);
      expect(t.services.feed.subscriberCount).toBe(1);
      const revoked = await revokedSession(t, c);
      const event = await stream.waitFor((e) => e.data.includes(revoked.access));
      expect(event.event).toBe("message");
      expect(event.id).toBe(String(entryOf(event).cursor));
      expect(entryOf(event).jti).toBe(revoked.access);
    } finally {
      await stream.close();
    }
    // The subscriber is gone once its stream is cancelled.
    for (let i = 0; i < 50 && t.services.feed.subscriberCount > 0; i++) await Bun.sleep(10);
    expect(t.services.feed.subscriberCount).toBe(0);
  });

  test("resumes after Last-Event-ID without repeating older entries", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const first = await revokedSession(t, c);
    const second = await revokedSession(t, c);
    const [, all] = await feed(t, c, "?token_type=access_token");
    const firstCursor = all.entries.find((e: { jti: string }) => e.jti === first.access).cursor;
    const stream = await subscribe(t, c, "?token_type=access_token", { "last-event-id": String(firstCursor) });
    try {
      await stream.waitFor((e) => e.event === "ready");
      const backlog = stream.events.filter((e) => e.event === "message").map((e) => entryOf(e).jti);
      expect(backlog).toContain(second.access);
      expect(backlog).not.toContain(first.access);
      expect(backlog).not.toContain(second.refresh);
    } finally {
      await stream.close();
    }
  });

  test("sends heartbeats", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    t.services.feed.options.heartbeatMs = 20;
    const stream = await subscribe(t, c);
    try {
      await stream.waitFor((e) => e.comment === "heartbeat", 2000);
    } finally {
      await stream.close();
      t.services.feed.options.heartbeatMs = 5000;
    }
  });

  test("refuses an unauthenticated subscriber before streaming", async () => {
    const t = await ready();
    const [res, body] = await request(t, "GET", "/oauth/revocations", { headers: { accept: "text/event-stream" } });
    expect(res.status).toBe(401);
    expect(body.error).toBe("invalid_client");
  });
});

describe.skipIf(!backends.includes("postgres"))("revocation feed across instances [postgres]", () => {
  let opened: Promise<{ a: TestApp; b: TestApp; url: string }> | undefined;
  /** Two instances, A and B, over two handles of one PostgreSQL database. */
  const twoInstances = () =>
    (opened ??= (async () => {
      const a = await createTestApp("postgres");
      const url = testDatabaseUrl(a.database)!;
      const b = await createTestApp("postgres", {}, { database: openPostgres(url, { poolSize: 4, connectTimeout: 5, statementTimeout: 10 }) });
      return { a, b, url };
    })());
  beforeAll(() => twoInstances(), 30_000);
  afterAll(async () => {
    if (!opened) return;
    const { a, b } = await opened;
    await b.close();
    await a.close();
  });

  test("a revocation at instance A reaches a subscriber of instance B", async () => {
    const { a, b } = await twoInstances();
    const c = await createClient(a, "confidential");
    const stream = await subscribe(b, c);
    try {
      await stream.waitFor((e) => e.event === "ready");
      const started = performance.now();
      const revoked = await revokedSession(a, c);
      await stream.waitFor((e) => e.data.includes(revoked.access), 3000);
      // NOTIFY wakes B at once; the safety poll alone would take up to a second.
      expect(performance.now() - started).toBeLessThan(900);
    } finally {
      await stream.close();
    }
  });

  test("a revoking transaction that commits late is neither skipped nor lost", async () => {
    const { a, url } = await twoInstances();
    const c = await createClient(a, "confidential");
    const stream = await subscribe(a, c);
    const raw = postgres(url, { max: 1, onnotice: () => {} });
    let commit = () => {};
    try {
      await stream.waitFor((e) => e.event === "ready");
      const held = new Promise<void>((resolve) => (commit = resolve));
      let lateCursor!: number;
      const inserted = new Promise<void>((resolve) => {
        void raw.begin(async (tx) => {
          const [row] = await tx`insert into revocation_events (jti, token_kind, session_id, expires_at)
            values ('late-jti', 'access_token', ${randomUUID()}, now() + interval '1 hour') returning cursor`;
          lateCursor = Number(row!.cursor);
          resolve();
          await held;
        });
      });
      await inserted;
      const revoked = await revokedSession(a, c); // commits above the held cursor
      const early = await stream.waitFor((e) => e.data.includes(revoked.access));
      expect(entryOf(early).cursor).toBeGreaterThan(lateCursor);
      expect(early.id).toBe(String(lateCursor - 1)); // resuming from here cannot skip the hole

      const [, page] = await feed(a, c, `?after=${lateCursor - 1}`);
      expect(page.entries.map((e: { jti: string }) => e.jti)).toContain(revoked.access);
      expect(page.next_cursor).toBe(lateCursor - 1); // not past the hole that may still fill

      commit();
      const late = await stream.waitFor((e) => e.data.includes("late-jti"), 3000);
      expect(late.id).toBe(String(lateCursor));
      const [, after] = await feed(a, c, `?after=${lateCursor - 1}`);
      expect(after.entries.map((e: { jti: string }) => e.jti)).toContain("late-jti");
      expect(after.next_cursor).toBeGreaterThan(lateCursor);
    } finally {
      commit();
      await stream.close();
      await raw.end();
    }
  });

  test("a subscriber resuming from its last event id gets an entry that committed below it meanwhile", async () => {
    const { a, url } = await twoInstances();
    const c = await createClient(a, "confidential");
    const keeper = await subscribe(a, c); // keeps the hub running and moving
    const first = await subscribe(a, c);
    const raw = postgres(url, { max: 1, onnotice: () => {} });
    let commit = () => {};
    try {
      await keeper.waitFor((e) => e.event === "ready");
      await first.waitFor((e) => e.event === "ready");
      const held = new Promise<void>((resolve) => (commit = resolve));
      const inserted = new Promise<void>((resolve) => {
        void raw.begin(async (tx) => {
          await tx`insert into revocation_events (jti, token_kind, session_id, expires_at)
            values ('resumed-jti', 'access_token', ${randomUUID()}, now() + interval '1 hour')`;
          resolve();
          await held;
        });
      });
      await inserted;
      const revoked = await revokedSession(a, c);
      const last = await first.waitFor((e) => e.data.includes(revoked.refresh));
      await first.close(); // disconnected before the held entry commits
      commit();
      await keeper.waitFor((e) => e.data.includes("resumed-jti"), 3000);
      const resumed = await subscribe(a, c, "", { "last-event-id": last.id! });
      try {
        await resumed.waitFor((e) => e.event === "ready");
        expect(resumed.events.some((e) => e.data.includes("resumed-jti"))).toBe(true);
      } finally {
        await resumed.close();
      }
    } finally {
      commit();
      await keeper.close();
      await raw.end();
    }
  });
});

describe.each(backends)("revocation feed without a database [%s]", (backend) => {
  test("answers 503 to a page and to a new subscriber", async () => {
    const t = await createTestApp(backend);
    const c = await createClient(t, "confidential");
    expect((await feed(t, c))[0].status).toBe(200);
    await t.close();
    const [res, body] = await feed(t, c);
    expect(res.status).toBe(503);
    expect(body.error).toBe("temporarily_unavailable");
    // (postgres.js opens a fresh connection to LISTEN even on a closed pool, and the test
    // database is dropped on close, so the SSE case is only meaningful on PGlite.)
    if (backend !== "pglite") return;
    const [sse, sseBody] = await request(t, "GET", "/oauth/revocations", { headers: { ...c.auth.headers, accept: "text/event-stream" } });
    expect(sse.status).toBe(503);
    expect(sseBody.error).toBe("temporarily_unavailable");
  }, 30_000);
});

describe("revocation feed and server shutdown", () => {
  test("stopping the server ends feed streams at once instead of waiting for them", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "ta-feed-"));
    const config = loadConfig({ PORT: "0", TA_DATA_DIR: dataDir, TA_LOG_LEVEL: "silent" });
    const server = await startServer(config, createLogger("silent"), { migrate: true });
    try {
      const registered = await fetch(`${server.url}/oauth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ client_name: "feed reader", grant_types: ["client_credentials"], response_types: [] }),
      });
      expect(registered.status).toBe(201);
      const { client_id, client_secret } = (await registered.json()) as { client_id: string; client_secret: string };
      const res = await fetch(`${server.url}/oauth/revocations`, {
        headers: { accept: "text/event-stream", authorization: basic(client_id, client_secret) },
      });
      const stream = readSse(res);
      await stream.waitFor((e) => e.event === "ready");
      const started = performance.now();
      await server.stop();
      expect(performance.now() - started).toBeLessThan(3000);
      await expect(stream.waitFor(() => false, 3000)).rejects.toThrow("the stream ended");
    } finally {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 30_000); // creating and migrating a new embedded database alone takes 6-7 s on a loaded machine
});
