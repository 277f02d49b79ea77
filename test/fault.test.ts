// Fault suite: the compiled executable on real PostgreSQL while things break — PostgreSQL
// stopped under a revocation load, the server SIGKILLed under one, two instances sharing one
// database. Runs on a private cluster started here (initdb + pg_ctl) when PostgreSQL's binaries
// exist; without them, the tests that need not stop PostgreSQL run on TEST_DATABASE_URL.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { decodeProtectedHeader } from "jose";
import postgres from "postgres";
import { openPostgres } from "../db/client.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, createTestApp, mintCodeSession } from "./helpers/app.ts";
import type { ServerProcess } from "./helpers/binary.ts";
import { buildBinary, emptyDirWithBinary, runCli, startServer } from "./helpers/binary.ts";
import { adminConnection, databaseUrl, TEST_DATABASE_URL } from "./helpers/db.ts";
import type { Cluster } from "./helpers/postgres-cluster.ts";
import { clusterUnavailableReason, startCluster } from "./helpers/postgres-cluster.ts";

const noCluster = clusterUnavailableReason();
const enabled = !noCluster || TEST_DATABASE_URL !== undefined;
if (!enabled) console.warn(`fault suite skipped: ${noCluster}, and TEST_DATABASE_URL is not set`);
else if (noCluster) console.warn(`fault suite: "PostgreSQL stopped mid-load" skipped: ${noCluster}`);

const ISSUER = "http://fault.test";
/** TA_DB_STATEMENT_TIMEOUT and TA_DB_CONNECT_TIMEOUT of the servers under test (seconds). */
const DB_TIMEOUT = 2;
/**
 * No response may take longer than a reconnect delay (≤ 1 s, db/client.ts), a connection attempt
 * and a statement, plus slack for a loaded machine.
 */
const RESPONSE_BOUND_MS = (1 + 2 * DB_TIMEOUT + 2) * 1000;
/** A request still unanswered after this long counts as hung. */
const HANG_MS = 15_000;
const TOKENS = 300;
/** How long PostgreSQL stays down. */
const OUTAGE_MS = 1000;
const CONCURRENCY = 16;

const serverEnv = (url: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: url,
  TA_ISSUER: ISSUER,
  TA_DB_STATEMENT_TIMEOUT: String(DB_TIMEOUT),
  TA_DB_CONNECT_TIMEOUT: String(DB_TIMEOUT),
  TA_DB_POOL: "8",
  ...extra,
});

let cluster: Cluster | undefined;
const sharedDatabases: string[] = [];

/** A new, empty database: on the private cluster, else on TEST_DATABASE_URL's server. */
async function freshDatabase(label: string): Promise<string> {
  const name = `ta_fault_${label}_${process.pid}`;
  if (cluster) return cluster.createDatabase(name);
  const admin = adminConnection();
  await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  sharedDatabases.push(name);
  return databaseUrl(name);
}

/**
 * An in-process app on the server's database, to mint sessions directly (tokens verify at the
 * server: same database, same keys, same issuer) and to read their state afterwards.
 */
async function fixture(url: string): Promise<{ t: TestApp; c: TestClient }> {
  const database = openPostgres(url, { poolSize: 4, connectTimeout: 5, statementTimeout: 10 });
  const t = await createTestApp("postgres", { TA_ISSUER: ISSUER }, { database });
  return { t, c: await createClient(t, "confidential") };
}

interface Target {
  /** The token revoked: the refresh token of every other session, the access token of the rest. */
  token: string;
  accessToken: string;
  sessionId: string;
}

async function mintTargets(t: TestApp, c: TestClient, count: number): Promise<Target[]> {
  const targets: Target[] = [];
  for (let i = 0; i < count; i += 20) {
    const batch = Array.from({ length: Math.min(20, count - i) }, async (_, j) => {
      const s = await mintCodeSession(t, c, `user-${i + j}`);
      return { token: (i + j) % 2 === 0 ? s.refreshToken! : s.accessToken, accessToken: s.accessToken, sessionId: s.sessionId };
    });
    targets.push(...(await Promise.all(batch)));
  }
  return targets;
}

type Outcome =
  | { status: number; error: string | undefined; retryAfter: string | null; ms: number }
  | { status: "no_response" | "hung"; ms: number };

/** POSTs a form as client `c`; a refused connection or a reset is "no_response". */
async function postForm(base: string, path: string, c: TestClient, form: Record<string, string>): Promise<Outcome & { body?: any }> {
  const began = performance.now();
  try {
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...c.auth.headers },
      body: new URLSearchParams(form),
      signal: AbortSignal.timeout(HANG_MS),
    });
    const text = await res.text();
    const body = text && res.headers.get("content-type")?.includes("json") ? JSON.parse(text) : undefined;
    return { status: res.status, error: body?.error, retryAfter: res.headers.get("retry-after"), ms: performance.now() - began, body };
  } catch (error) {
    return { status: (error as Error).name === "TimeoutError" ? "hung" : "no_response", ms: performance.now() - began };
  }
}

/** Revokes every token, CONCURRENCY at a time; `onAnswered` sees the running count of finished requests. */
async function revokeAll(base: string, c: TestClient, tokens: string[], onAnswered?: (count: number) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = 0;
  let answered = 0;
  const worker = async () => {
    while (next < tokens.length) {
      const i = next++;
      outcomes[i] = await postForm(base, "/oauth/revoke", c, { token: tokens[i]! });
      onAnswered?.(++answered);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return outcomes;
}

async function introspect(base: string, c: TestClient, token: string): Promise<unknown> {
  const outcome = await postForm(base, "/oauth/introspect", c, { token });
  if (outcome.status !== 200) throw new Error(`introspection answered ${outcome.status}`);
  return outcome.body;
}

/** Every target is dead at `base`: the revoked token and its session's access token introspect inactive. */
async function expectInForce(base: string, c: TestClient, targets: Target[]): Promise<void> {
  for (let i = 0; i < targets.length; i += CONCURRENCY) {
    const batch = targets.slice(i, i + CONCURRENCY);
    const answers = await Promise.all(batch.flatMap((x) => [introspect(base, c, x.token), introspect(base, c, x.accessToken)]));
    expect(answers).toEqual(Array(answers.length).fill({ active: false }));
  }
}

/** Session statuses read directly from the database. */
async function sessionStatuses(url: string, targets: Target[]): Promise<string[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<{ status: string }[]>`select status from sessions where id = any(${targets.map((x) => x.sessionId)}::uuid[])`;
    return rows.map((r) => r.status);
  } finally {
    await sql.end();
  }
}

/** Milliseconds until /readyz answers 200, polling every 100 ms; throws after `boundMs`. */
async function waitReady(base: string, boundMs: number): Promise<number> {
  const began = performance.now();
  while (performance.now() - began < boundMs) {
    const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(HANG_MS) }).catch(() => undefined);
    if (res?.status === 200) return performance.now() - began;
    await Bun.sleep(100);
  }
  throw new Error(`/readyz not 200 within ${boundMs} ms`);
}

const statusesOf = (outcomes: Outcome[]) => new Set(outcomes.map((o) => o.status));
const count = (outcomes: Outcome[], status: Outcome["status"]) => outcomes.filter((o) => o.status === status).length;
const pick = (targets: Target[], outcomes: Outcome[], status: Outcome["status"]) => targets.filter((_, i) => outcomes[i]!.status === status);

/**
 * Every revocation answered 200 is in force at `base`; retrying the ones that ended in `failed`
 * succeeds there; then every target's session is revoked in the database.
 */
async function expectNothingLost(base: string, c: TestClient, url: string, targets: Target[], outcomes: Outcome[], failed: Outcome["status"]) {
  await expectInForce(base, c, pick(targets, outcomes, 200));
  const retried = await revokeAll(base, c, pick(targets, outcomes, failed).map((x) => x.token));
  expect([...statusesOf(retried)]).toEqual([200]);
  expect(await sessionStatuses(url, targets)).toEqual(Array(targets.length).fill("revoked"));
}
const unexpectedErrors = (server: ServerProcess) => server.lines.filter((l) => l.includes('"http.error.unexpected"'));

describe.skipIf(!enabled)("fault suite: the executable on real PostgreSQL", () => {
  beforeAll(async () => {
    await buildBinary();
    if (!noCluster) cluster = await startCluster();
  }, 180_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (sharedDatabases.length === 0) return;
    const admin = adminConnection();
    for (const name of sharedDatabases) await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  });

  test.skipIf(noCluster !== undefined)(
    "PostgreSQL stopped mid-load: every request ends in 200 or 503 within the timeouts, the server recovers without a restart, every 200 is in force",
    async () => {
      const url = await freshDatabase("outage");
      const { dir } = emptyDirWithBinary();
      const server = await startServer(dir, serverEnv(url));
      const { t, c } = await fixture(url);
      try {
        const targets = await mintTargets(t, c, TOKENS);
        await t.close(); // from here on only the server talks to the database
        // A third of the way through, PostgreSQL crashes (immediate stop: in-flight transactions
        // are cut off) and comes back a second later, after crash recovery.
        let outage: Promise<number> | undefined;
        const outcomes = await revokeAll(server.url, c, targets.map((x) => x.token), (answered) => {
          if (answered !== TOKENS / 3) return;
          outage = (async () => {
            await cluster!.stop("immediate");
            await Bun.sleep(OUTAGE_MS);
            await cluster!.start();
            return performance.now();
          })();
        });
        const restartedAt = await outage!;

        expect([...statusesOf(outcomes)].sort()).toEqual([200, 503]);
        for (const o of outcomes) {
          if (o.status === 503) expect(o).toMatchObject({ error: "temporarily_unavailable", retryAfter: "1" });
          expect(o.ms).toBeLessThan(RESPONSE_BOUND_MS);
        }
        console.log(`outage: ${count(outcomes, 200)} × 200, ${count(outcomes, 503)} × 503, slowest ${Math.round(Math.max(...outcomes.map((o) => o.ms)))} ms`);

        // The same process recovers: ready again, and a client retrying after Retry-After succeeds.
        await waitReady(server.url, 10_000);
        console.log(`outage: /readyz 200 at most ${Math.round(performance.now() - restartedAt)} ms after PostgreSQL accepted connections`);
        await expectNothingLost(server.url, c, url, targets, outcomes, 503);
        expect(unexpectedErrors(server)).toEqual([]);
      } finally {
        if (!cluster!.running) await cluster!.start();
        await server.stop();
        await t.close();
      }
    },
    90_000,
  );

  test("server SIGKILLed mid-load: after a restart every revocation answered 200 is in force", async () => {
    const url = await freshDatabase("kill");
    const { dir } = emptyDirWithBinary();
    const first = await startServer(dir, serverEnv(url));
    const { t, c } = await fixture(url);
    let second: ServerProcess | undefined;
    try {
      const targets = await mintTargets(t, c, TOKENS);
      let killed: Promise<number> | undefined;
      const outcomes = await revokeAll(first.url, c, targets.map((x) => x.token), (answered) => {
        if (answered === TOKENS / 3) killed = first.stop("SIGKILL");
      });
      expect(await killed).not.toBe(0);
      // The database never failed: each request either succeeded or lost its connection.
      expect([...statusesOf(outcomes)].sort()).toEqual([200, "no_response"]);
      console.log(`kill: ${count(outcomes, 200)} × 200, ${count(outcomes, "no_response")} without response`);

      second = await startServer(dir, serverEnv(url));
      await expectNothingLost(second.url, c, url, targets, outcomes, "no_response");
      expect(unexpectedErrors(first)).toEqual([]);
    } finally {
      await second?.stop();
      await t.close();
    }
  }, 90_000);

  test("two instances on one PostgreSQL: a revocation, a refresh and a key rotation at one are honoured at the other", async () => {
    const url = await freshDatabase("pair");
    const { dir } = emptyDirWithBinary();
    const env = serverEnv(url, { TA_KEY_RELOAD_INTERVAL: "1" });
    const a = await startServer(dir, env);
    // Two instances beside each other need an admin socket each.
    const b = await startServer(dir, { ...env, TA_ADMIN_SOCKET: join(dir, "b.sock") });
    const { t, c } = await fixture(url);
    const refresh = (server: ServerProcess, refreshToken: string) =>
      postForm(server.url, "/oauth/token", c, { grant_type: "refresh_token", refresh_token: refreshToken });
    const clientCredentials = async (server: ServerProcess) => {
      const outcome = await postForm(server.url, "/oauth/token", c, { grant_type: "client_credentials", scope: "read" });
      expect(outcome.status).toBe(200);
      return outcome.body.access_token as string;
    };
    const jwksKids = async (server: ServerProcess) =>
      ((await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    try {
      // A revocation at A: the session is dead at B, its refresh token refused there.
      const revoked = await mintCodeSession(t, c);
      expect(await introspect(b.url, c, revoked.accessToken)).toMatchObject({ active: true });
      expect((await postForm(a.url, "/oauth/revoke", c, { token: revoked.refreshToken! })).status).toBe(200);
      expect(await introspect(b.url, c, revoked.accessToken)).toEqual({ active: false });
      expect(await refresh(b, revoked.refreshToken!)).toMatchObject({ status: 400, error: "invalid_grant" });

      // A refresh at A: replaying the old refresh token at B is reuse, which kills the family.
      const family = await mintCodeSession(t, c);
      const rotated = await refresh(a, family.refreshToken!);
      expect(rotated.status).toBe(200);
      expect(await introspect(b.url, c, rotated.body.access_token)).toMatchObject({ active: true });
      expect(await refresh(b, family.refreshToken!)).toMatchObject({ status: 400, error: "invalid_grant" });
      expect(await introspect(a.url, c, rotated.body.access_token)).toEqual({ active: false });
      expect(await refresh(a, rotated.body.refresh_token)).toMatchObject({ status: 400, error: "invalid_grant" });

      // `keys rotate` by the CLI while both run.
      const before = await clientCredentials(a);
      const oldKid = decodeProtectedHeader(before).kid!;
      const rotation = await runCli(dir, ["keys", "rotate"], env);
      expect(rotation.code).toBe(0);
      const { active_kid: newKid, retired_kid: retiredKid } = JSON.parse(rotation.stdout);
      expect(retiredKid).toBe(oldKid);
      // B publishes the new key by itself (periodic reload), before any token signed with it reached B.
      let kidsAtB = await jwksKids(b);
      for (let i = 0; i < 50 && !kidsAtB.includes(newKid); i++) kidsAtB = await Bun.sleep(100).then(() => jwksKids(b));
      expect(kidsAtB.sort()).toEqual([oldKid, newKid].sort());
      // A signs with the new key within its reload interval; B accepts those tokens.
      let after = await clientCredentials(a);
      for (let i = 0; i < 50 && decodeProtectedHeader(after).kid !== newKid; i++) after = await Bun.sleep(100).then(() => clientCredentials(a));
      expect(decodeProtectedHeader(after).kid).toBe(newKid);
      expect(await introspect(b.url, c, after)).toMatchObject({ active: true });
      for (const server of [a, b]) {
        expect(await introspect(server.url, c, before)).toMatchObject({ active: true });
        expect((await jwksKids(server)).sort()).toEqual([oldKid, newKid].sort());
      }
      // And a token of the new key revoked at B is dead at A.
      expect((await postForm(b.url, "/oauth/revoke", c, { token: after })).status).toBe(200);
      expect(await introspect(a.url, c, after)).toEqual({ active: false });
      expect([...unexpectedErrors(a), ...unexpectedErrors(b)]).toEqual([]);
    } finally {
      await a.stop();
      await b.stop();
      await t.close();
    }
  }, 60_000);
});
