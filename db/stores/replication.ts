// What reads from a replica need of the primary (#21 item 4, src/oauth/replica-reads.ts): the
// WAL position the primary has flushed, which a replica must have replayed before its answers
// are used.
import { sql } from "drizzle-orm";
import type { Database } from "../client.ts";

/** The primary's flushed WAL position (pg_lsn as text): every commit acknowledged so far is below it. */
export async function flushedWalPosition(primary: Database): Promise<string> {
  const [row] = await primary.rows<{ lsn: string }>(sql`select pg_current_wal_flush_lsn()::text as lsn`);
  return row!.lsn;
}
