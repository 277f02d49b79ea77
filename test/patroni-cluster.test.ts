// The Patroni test cluster itself (#21, test/helpers/patroni.ts): a commit the primary acknowledged
// is already on the synchronous standby; when the primary dies (its Patroni, postmaster and
// backends SIGKILLed at once) that standby takes over with the row, the multi-host URL finds the
// new primary on a new connection and writes there, and the old primary rejoins as a replica.
// Prints the failover times. Runs when Patroni and etcd are installed and TA_CLUSTER_TESTS=1
// (.ci/run sets it).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import type { PatroniCluster } from "./helpers/patroni.ts";
import { patroniUnavailableReason, startPatroniCluster } from "./helpers/patroni.ts";

const unavailable = process.env.TA_CLUSTER_TESTS === "1" ? patroniUnavailableReason() : "TA_CLUSTER_TESTS is not 1";

describe.skipIf(unavailable !== undefined)("the Patroni test cluster", () => {
  let cluster: PatroniCluster;
  const connections: postgres.Sql[] = [];
  const connect = (url: string) => {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    connections.push(sql);
    return sql;
  };

  beforeAll(async () => {
    const started = performance.now();
    cluster = await startPatroniCluster();
    console.log(`patroni cluster: started in ${Math.round(performance.now() - started)} ms`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(connections.map((sql) => sql.end({ timeout: 1 })));
    await cluster?.stop();
  });

  test("an acknowledged commit is on the synchronous standby, survives the primary's death, and the old primary rejoins", async () => {
    const primary = (await cluster.primary())!;
    const syncStandby = (await cluster.members()).find((m) => m.role === "sync_standby")!;
    const before = connect(cluster.dsn);
    const [server] = await before<{ port: number }[]>`select inet_server_port() as port`;
    expect(server!.port).toBe(primary.port);

    await before`create table failover_probe (id int primary key, written_on text not null)`;
    // An LSN inside the transaction is below its commit record: once COMMIT returns, the
    // synchronous standby must have reported a flush past it.
    const lsn = await before.begin(async (tx) => {
      await tx`insert into failover_probe values (1, ${primary.name})`;
      const [position] = await tx<{ lsn: string }[]>`select pg_current_wal_insert_lsn()::text as lsn`;
      return position!.lsn;
    });
    const standbys = await before<{ name: string; sync_state: string; flushed: boolean }[]>`
      select application_name as name, sync_state, flush_lsn >= ${lsn}::pg_lsn as flushed from pg_stat_replication order by 1`;
    expect(standbys.map((s) => s.sync_state).sort()).toEqual(["async", "sync"]);
    expect(standbys.find((s) => s.sync_state === "sync")).toEqual({ name: syncStandby.name, sync_state: "sync", flushed: true });
    await before.end();

    const killed = performance.now();
    await cluster.kill(primary);
    const leader = await cluster.waitForLeader(60_000, { not: primary });
    const elected = performance.now();
    // Synchronous mode: only the standby that had every acknowledged commit may be promoted.
    expect(leader.name).toBe(syncStandby.name);

    const after = connect(cluster.dsn);
    const [row] = await after<{ written_on: string }[]>`select written_on from failover_probe where id = 1`;
    expect(row?.written_on).toBe(primary.name);
    // Strict synchronous mode: this commit is acknowledged only once the third node streams
    // synchronously from the new primary.
    const [written] = await after<{ port: number }[]>`insert into failover_probe values (2, ${leader.name}) returning inet_server_port() as port`;
    const writable = performance.now();
    expect(written!.port).toBe(leader.port);
    const third = cluster.nodes.find((n) => n !== primary && n !== leader)!;
    const [sync] = await after<{ name: string }[]>`select application_name as name from pg_stat_replication where sync_state = 'sync'`;
    expect(sync?.name).toBe(third.name);

    await cluster.start(primary);
    await cluster.waitForReplicas(60_000);
    const rejoined = performance.now();
    const old = connect(primary.url());
    const [recovering] = await old<{ standby: boolean }[]>`select pg_is_in_recovery() as standby`;
    expect(recovering?.standby).toBe(true);
    expect(await cluster.primary()).toBe(leader);
    // It follows the new primary's timeline: the row written there arrives.
    const deadline = Date.now() + 10_000;
    while ((await old`select 1 from failover_probe where id = 2`).length === 0) {
      expect(Date.now()).toBeLessThan(deadline);
      await Bun.sleep(100);
    }

    console.log(
      `patroni failover: ${leader.name} leader ${Math.round(elected - killed)} ms after ${primary.name} was killed, ` +
        `first write acknowledged at ${Math.round(writable - killed)} ms; ${primary.name} streaming again at ${Math.round(rejoined - killed)} ms`,
    );
  }, 120_000);
});
