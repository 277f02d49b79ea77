// A transaction whose BEGIN fills a postgres.js connection's pipeline, as patched in
// patches/postgres@3.4.9.patch. postgres.js sends up to `max_pipeline` (100) queries on a
// connection before the first has answered; when the database stalls — a primary that hangs —
// the queries of a busy pool pile up there. Unpatched, a BEGIN that was the 100th did not reserve
// its connection: sql.begin failed with a TypeError, and the pool kept sending other queries to a
// connection left inside that transaction — each answered as a success, none ever committed: a
// mint answered 200 that no node held afterwards (the split of test/cluster-faults.test.ts). See
// docs/operating.md, "The postgres.js patch".
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { TEST_DATABASE_URL } from "./helpers/db.ts";

describe.skipIf(!TEST_DATABASE_URL)("postgres.js: a BEGIN that fills the pipeline", () => {
  // The server's defaults (max_pipeline 100), on one connection.
  const sql = postgres(TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
  const other = postgres(TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
  const table = `pipeline_${process.pid}`;

  beforeAll(async () => {
    await sql`create table ${sql(table)} (v text)`;
  });
  afterAll(async () => {
    await other`drop table if exists ${other(table)}`;
    await sql.end({ timeout: 1 });
    await other.end({ timeout: 1 });
  });

  test("reserves its connection: the transaction commits, and what the pool runs next runs outside it", async () => {
    await sql`select 1`;
    // The current query, then 99 sent behind it: the BEGIN is the 100th sent. (Without
    // parameters: a query with parameters not yet prepared is described first, alone.)
    const slow = sql`select pg_sleep(0.2)`.execute();
    const queued = Array.from({ length: 99 }, () => sql`select 1 as i`.execute());
    const transaction = sql.begin(async (tx) => {
      await tx`insert into ${tx(table)} values ('in the transaction')`;
      return "committed";
    });
    const after = sql`insert into ${sql(table)} values ('after it') returning v`.execute();
    await slow;
    expect((await Promise.all(queued)).map((rows) => rows[0]!.i)).toEqual(Array(99).fill(1));
    expect(await transaction).toBe("committed");
    expect((await after)[0]!.v).toBe("after it");
    // Both committed: another connection sees them.
    const rows = await other`select v from ${other(table)} order by v`;
    expect(rows.map((row) => row.v)).toEqual(["after it", "in the transaction"]);
    // And the pool's connection is in no transaction.
    const [backend] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const [activity] = await other`select state from pg_stat_activity where pid = ${backend!.pid}`;
    expect(activity!.state).toBe("idle");
  });
});
