// The storage side of pruning (src/oauth/pruning.ts says what is kept and why): deletes what can
// no longer matter in small batches — one short statement each, rows locked elsewhere skipped
// rather than waited for — so pruning never holds long locks or blocks a revocation.
import type { SQL } from "drizzle-orm";
import { sql } from "drizzle-orm";
import type { Database } from "../client.ts";

export interface PruneCounts {
  authorizationCodes: number;
  sessions: number;
  revocationEvents: number;
}

export interface PruneOptions {
  /** Rows per DELETE statement. */
  batchSize?: number;
  /** Seconds past expiry before a row is pruned (covers clock skew and in-flight requests). */
  margin?: number;
}

export const DEFAULT_PRUNE_BATCH = 1000;
const DEFAULT_MARGIN = 300;

/** One batch: deletes at most `batch` rows older than `cutoff`, returns `{ n }` deleted. */
const deletions: Record<keyof PruneCounts, (cutoff: SQL, batch: number) => SQL> = {
  sessions: (cutoff, batch) => sql`
    with doomed as (
      select id from sessions
       where access_expires_at < ${cutoff} and (refresh_expires_at is null or refresh_expires_at < ${cutoff})
       limit ${batch} for update skip locked
    ), deleted as (delete from sessions s using doomed where s.id = doomed.id returning 1)
    select count(*)::int as n from deleted`,
  // After sessions, so that grants whose sessions have just gone are pruned in the same run.
  authorizationCodes: (cutoff, batch) => sql`
    with doomed as (
      select g.id from authorization_grants g
       where g.expires_at < ${cutoff} and not exists (select 1 from sessions s where s.grant_id = g.id)
       limit ${batch} for update skip locked
    ), deleted as (delete from authorization_grants g using doomed where g.id = doomed.id returning 1)
    select count(*)::int as n from deleted`,
  revocationEvents: (cutoff, batch) => sql`
    with doomed as (
      select cursor from revocation_events where expires_at < ${cutoff}
       limit ${batch} for update skip locked
    ), deleted as (delete from revocation_events e using doomed where e.cursor = doomed.cursor returning 1)
    select count(*)::int as n from deleted`,
};

/** Deletes expired sessions, authorization codes and revocation-feed entries; returns the counts. */
export async function prune(database: Database, options: PruneOptions = {}): Promise<PruneCounts> {
  const batch = Math.max(1, Math.floor(options.batchSize ?? DEFAULT_PRUNE_BATCH));
  const cutoff = sql`now() - make_interval(secs => ${options.margin ?? DEFAULT_MARGIN})`;
  const counts: PruneCounts = { sessions: 0, authorizationCodes: 0, revocationEvents: 0 };
  for (const table of Object.keys(deletions) as Array<keyof PruneCounts>) {
    for (;;) {
      const [row] = await database.rows<{ n: number }>(deletions[table](cutoff, batch));
      const deleted = Number(row?.n ?? 0);
      counts[table] += deleted;
      if (deleted < batch) break;
    }
  }
  return counts;
}

