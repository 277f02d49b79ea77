// Cancelling a query postgres.js has pipelined, as patched in patches/postgres@3.4.9.patch. Every
// query has a deadline (db/client.ts) and past it is cancelled; a query sent behind a slow one
// (pipelined, not yet the current query) is cancelled too when the database stalls — a primary
// that hangs, then wakes up. Unpatched, postgres.js skipped such a query when its turn came
// although the server still answered it, so its answer was taken for the next query's, and each
// later query's for the one after it: an INSERT got a SELECT's rows (the split test of
// test/cluster-faults.test.ts saw "a session INSERT of the batch returned no id", then duplicate
// keys). See docs/operating.md, "The postgres.js patch".
import { afterAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { TEST_DATABASE_URL } from "./helpers/db.ts";

describe.skipIf(!TEST_DATABASE_URL)("postgres.js: a pipelined query cancelled", () => {
  const sql = postgres(TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
  afterAll(() => sql.end({ timeout: 1 }));

  test("each query still gets its own answer, and the cancelled one no other's", async () => {
    // One connection, connected: the four go out one behind the other before the first has answered.
    await sql`select 1`;
    const slow = sql`select pg_sleep(0.3), 'slow' as v`.execute();
    const cancelled = sql`select 'cancelled' as v`.execute();
    const after = sql`select 'after' as v`.execute();
    const next = sql`select 'next' as v`.execute();
    await Bun.sleep(50);
    const settled: Promise<string | undefined> = cancelled.then(
      (rows) => rows[0]?.v as string | undefined,
      (error: { code?: string }) => error.code,
    );
    await cancelled.cancel();
    expect((await slow)[0]!.v).toBe("slow");
    expect((await after)[0]!.v).toBe("after");
    expect((await next)[0]!.v).toBe("next");
    // The cancelled query fails with 57014: never another's rows.
    expect(await settled).toBe("57014");
    // And the connection is still in step.
    expect((await sql`select 'still' as v`)[0]!.v).toBe("still");
  });

  test("a cancel request goes to the host the query runs on, not the first of a multi-host URL", async () => {
    const url = new URL(TEST_DATABASE_URL!);
    // A first host where nothing listens, then the real one: connections land on the second.
    const multi = postgres(`postgres://${url.username}@127.0.0.1:1,${url.hostname}:${url.port || 5432}${url.pathname}`, { max: 1, onnotice: () => {}, connect_timeout: 2 });
    try {
      const sleeping = multi`select pg_sleep(5)`.execute();
      await Bun.sleep(200);
      const started = performance.now();
      const outcome = sleeping.then(
        () => "finished",
        (error: { code?: string }) => error.code,
      );
      await sleeping.cancel();
      expect(await outcome).toBe("57014");
      expect(performance.now() - started).toBeLessThan(2000);
    } finally {
      await multi.end({ timeout: 1 });
    }
  });
});
