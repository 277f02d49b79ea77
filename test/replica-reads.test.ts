// Session lookups answered by a replica (TA_DATABASE_READ_URL, #21 item 4;
// src/oauth/replica-reads.ts). On one PostgreSQL: a read URL that is a primary, or that nobody
// answers, changes no answer and fails nothing. On the Patroni cluster (test/helpers/patroni.ts,
// synchronous_commit = remote_apply, TA_CLUSTER_TESTS=1): a revocation answered 200 at one
// instance is already replayed on the synchronous standby, and another instance reading there
// answers inactive at once; a replica whose replay stopped is never read past TA_READ_MAX_LAG,
// and never for a revocation of the instance itself — the primary answers instead.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import postgres from "postgres";
import type { Database } from "../db/client.ts";
import { openPostgres } from "../db/client.ts";
import { migrate } from "../db/migrate.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, createTestApp, introspect, mintClientSession, revoke } from "./helpers/app.ts";
import { openTestDatabase, TEST_DATABASE_URL, testDatabaseUrl } from "./helpers/db.ts";
import type { PatroniCluster, PatroniNode } from "./helpers/patroni.ts";
import { createClusterDatabase, patroniUnavailableReason, startPatroniCluster } from "./helpers/patroni.ts";

setDefaultTimeout(60_000);

const OPTIONS = { poolSize: 4, connectTimeout: 2, statementTimeout: 5 };

/** Lookups the instance's replica and primary answered so far. */
async function lookups(t: TestApp): Promise<{ replica: number; primary: number }> {
  const { values } = await t.services.metrics.sessionLookups.get();
  const of = (source: string) => values.find((v) => v.labels.source === source)?.value ?? 0;
  return { replica: of("replica"), primary: of("primary") };
}

/** Waits until the instance may read its replica (its floor read, its heartbeat heard). */
async function replicaReady(t: TestApp): Promise<void> {
  for (const deadline = Date.now() + 10_000; !t.services.replicaReads!.ready; ) {
    if (Date.now() > deadline) throw new Error("the replica never became readable");
    await Bun.sleep(10);
  }
}

const active = async (t: TestApp, c: TestClient, token: string) => (await introspect(t, c, token))[1].active as boolean;

describe.skipIf(!TEST_DATABASE_URL)("reads from a replica on one PostgreSQL", () => {
  test("a read URL that is a primary: it answers nothing, the primary answers everything, correctly", async () => {
    const database = await openTestDatabase("postgres");
    const t = await createTestApp("postgres", { TA_INTROSPECTION_CACHE_TTL: "0" }, { database, replica: openPostgres(testDatabaseUrl(database)!, OPTIONS) });
    try {
      const c = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
      const s = await mintClientSession(t, c);
      await replicaReady(t);
      expect(await active(t, c, s.accessToken)).toBe(true);
      expect((await revoke(t, c, s.accessToken))[0].status).toBe(200);
      expect(await active(t, c, s.accessToken)).toBe(false);
      // pg_last_wal_replay_lsn() is null on a primary: the lookup there returns no rows.
      expect(await lookups(t)).toEqual({ replica: 0, primary: 2 });
    } finally {
      await t.close();
    }
  });

  test("a read URL nobody answers: lookups go on at the primary, and the failure is logged", async () => {
    const database = await openTestDatabase("postgres");
    const t = await createTestApp("postgres", { TA_INTROSPECTION_CACHE_TTL: "0" }, { database, replica: openPostgres("postgres://postgres@127.0.0.1:1/none", { ...OPTIONS, connectTimeout: 1 }) });
    try {
      const c = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
      const s = await mintClientSession(t, c);
      await replicaReady(t);
      expect(await active(t, c, s.accessToken)).toBe(true);
      expect(t.logs.some((line) => line.includes('"db.replica_failed"'))).toBe(true);
      // Left alone for a while after it failed: the next lookup does not wait for it.
      expect(t.services.replicaReads!.ready).toBe(false);
      expect((await revoke(t, c, s.accessToken))[0].status).toBe(200);
      expect(await active(t, c, s.accessToken)).toBe(false);
      expect(await lookups(t)).toEqual({ replica: 0, primary: 2 });
    } finally {
      await t.close();
    }
  });
});

const unavailable = process.env.TA_CLUSTER_TESTS === "1" ? patroniUnavailableReason() : "TA_CLUSTER_TESTS is not 1";

describe.skipIf(unavailable !== undefined)("reads from replicas on a Patroni cluster", () => {
  let cluster: PatroniCluster;
  let sync: PatroniNode;
  let lagging: PatroniNode;
  const apps: TestApp[] = [];
  const direct: postgres.Sql[] = [];

  /** An instance on the cluster's primary, reading `replica` when given. */
  async function instance(replica?: PatroniNode): Promise<TestApp> {
    const database: Database = openPostgres(cluster.url("ta"), OPTIONS);
    const t = await createTestApp("postgres", { TA_INTROSPECTION_CACHE_TTL: "0", TA_READ_MAX_LAG: "1" }, {
      database,
      replica: replica && openPostgres(replica.url("ta"), OPTIONS),
    });
    apps.push(t);
    return t;
  }

  const on = (node: PatroniNode) => {
    const sql = postgres(node.url("ta"), { max: 1, onnotice: () => {} });
    direct.push(sql);
    return sql;
  };
  const statusOn = async (sql: postgres.Sql, sessionId: string) =>
    (await sql<{ status: string }[]>`select status from sessions where id = ${sessionId}`)[0]?.status;

  beforeAll(async () => {
    cluster = await startPatroniCluster({ synchronousCommit: "remote_apply", timeoutMs: 120_000 });
    await createClusterDatabase(cluster, "ta");
    const migrating = openPostgres(cluster.url("ta"), OPTIONS);
    await migrate(migrating);
    await migrating.close();
    const members = await cluster.members();
    sync = cluster.nodes.find((n) => members.find((m) => m.name === n.name)?.role === "sync_standby")!;
    lagging = cluster.nodes.find((n) => members.find((m) => m.name === n.name)?.role === "replica")!;
    expect(sync).toBeDefined();
    expect(lagging).toBeDefined();
  }, 180_000);

  afterAll(async () => {
    await Promise.all(apps.map((t) => t.close().catch(() => {})));
    await Promise.all(direct.map((sql) => sql.end({ timeout: 1 }).catch(() => {})));
    await cluster?.stop();
  });

  test("a revocation answered 200 at one instance is on the synchronous standby already: another, reading there, answers inactive at once", async () => {
    const a = await instance();
    const b = await instance(sync);
    const standby = on(sync);
    const c = await createClient(a, "confidential", { resourceServer: a.config.defaultAudience });
    let fromReplica = 0;
    for (let i = 0; i < 20; i++) {
      const s = await mintClientSession(a, c);
      await replicaReady(b);
      const before = await lookups(b);
      expect(await active(b, c, s.accessToken)).toBe(true);
      // remote_apply: the session was replayed on the standby before the mint returned.
      expect((await lookups(b)).replica).toBe(before.replica + 1);
      expect((await revoke(a, c, s.accessToken))[0].status).toBe(200);
      const revoked = await lookups(b);
      // At once: the other instance has most likely not heard the revocation's NOTIFY yet.
      expect(await active(b, c, s.accessToken)).toBe(false);
      if ((await lookups(b)).replica > revoked.replica) fromReplica++;
      expect(await statusOn(standby, s.sessionId)).toBe("revoked");
    }
    console.log(`replica reads: ${fromReplica} of 20 lookups right after a revocation at another instance answered by the synchronous standby`);
    expect(fromReplica).toBeGreaterThan(0);
  });

  test("a replica whose replay stopped: never read for the instance's own revocation, nor past TA_READ_MAX_LAG; the primary answers", async () => {
    const a = await instance(lagging);
    const d = await instance(lagging);
    const replica = on(lagging);
    const c = await createClient(a, "confidential", { resourceServer: a.config.defaultAudience });
    const s = await mintClientSession(a, c);
    // The session reaches the (asynchronous) replica, then its replay stops there.
    for (const deadline = Date.now() + 10_000; (await statusOn(replica, s.sessionId)) !== "created"; ) {
      if (Date.now() > deadline) throw new Error("the session never reached the replica");
      await Bun.sleep(20);
    }
    // Its replay stops: the startup process (recovery) stands still, queries are still served
    // (not pg_wal_replay_pause(): on the test cluster a paused replay was found resumed within a second).
    const [startup] = await replica<{ pid: number }[]>`select pid from pg_stat_activity where backend_type = 'startup'`;
    process.kill(startup!.pid, "SIGSTOP");
    try {
      await replicaReady(a);
      await replicaReady(d);
      expect(await active(d, c, s.accessToken)).toBe(true);
      expect((await revoke(a, c, s.accessToken))[0].status).toBe(200);
      // Its own revocation: the floor is read again before the replica may answer.
      const own = await lookups(a);
      expect(await active(a, c, s.accessToken)).toBe(false);
      expect(await lookups(a)).toEqual({ replica: own.replica, primary: own.primary + 1 });
      // The other instance: past the bound (1 s) its floor is past the replica's replay.
      await Bun.sleep(1100);
      const other = await lookups(d);
      expect(await active(d, c, s.accessToken)).toBe(false);
      expect(await lookups(d)).toEqual({ replica: other.replica, primary: other.primary + 1 });
      expect(await statusOn(replica, s.sessionId)).toBe("created"); // what the replica would have said
      // A token minted while the replica stands still is found at the primary.
      const fresh = await mintClientSession(a, c);
      expect(await active(d, c, fresh.accessToken)).toBe(true);
    } finally {
      process.kill(startup!.pid, "SIGCONT");
    }
  });
});
