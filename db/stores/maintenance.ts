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
  /** Self-registered clients never used within the unused-client TTL. */
  clients: number;
}

export interface PruneOptions {
  /** Rows per DELETE statement. */
  batchSize?: number;
  /** Seconds past expiry before a row is pruned (covers clock skew and in-flight requests). */
  margin?: number;
  /** Seconds after which a self-registered client never seen in use is deleted; 0 or absent = never. */
  unusedClientTtl?: number;
}

export const DEFAULT_PRUNE_BATCH = 1000;
const DEFAULT_MARGIN = 300;

/** One batch: deletes at most `batch` rows older than `cutoff`, returns `{ n }` deleted. */
const deletions: Record<Exclude<keyof PruneCounts, "clients">, (cutoff: SQL, batch: number) => SQL> = {
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

/**
 * Self-registered clients (dynamic registration, metadata documents) are marked used once a pass
 * sees a code or a live token of theirs — before the sessions and codes that show it are pruned
 * in the same pass, so no use goes unseen. A client with neither, older than the TTL, is deleted
 * (rows locked elsewhere, such as one a token is being issued for, are skipped).
 */
const markUsedClients = sql`
  update clients c set first_used_at = now()
   where c.registration <> 'operator' and c.first_used_at is null
     and (exists (select 1 from authorization_grants g where g.client_id = c.client_id)
          or exists (select 1 from sessions s where s.client_id = c.client_id and s.status = 'created'))`;

const deleteUnusedClients = (ttl: number, batch: number) => sql`
  with doomed as (
    select c.id from clients c
     where c.registration <> 'operator' and c.first_used_at is null
       and c.created_at < now() - make_interval(secs => ${ttl})
       and not exists (select 1 from authorization_grants g where g.client_id = c.client_id)
       and not exists (select 1 from sessions s where s.client_id = c.client_id and s.status = 'created')
     limit ${batch} for update skip locked
  ), deleted as (delete from clients c using doomed where c.id = doomed.id returning 1)
  select count(*)::int as n from deleted`;

/** Runs one batched deletion until a batch comes back short; answers the rows deleted. */
async function inBatches(database: Database, batch: number, statement: () => SQL): Promise<number> {
  let total = 0;
  for (;;) {
    const [row] = await database.rows<{ n: number }>(statement());
    const deleted = Number(row?.n ?? 0);
    total += deleted;
    if (deleted < batch) return total;
  }
}

/** Deletes expired sessions, authorization codes and revocation-feed entries, and unused clients; returns the counts. */
export async function prune(database: Database, options: PruneOptions = {}): Promise<PruneCounts> {
  const batch = Math.max(1, Math.floor(options.batchSize ?? DEFAULT_PRUNE_BATCH));
  const cutoff = sql`now() - make_interval(secs => ${options.margin ?? DEFAULT_MARGIN})`;
  const counts: PruneCounts = { sessions: 0, authorizationCodes: 0, revocationEvents: 0, clients: 0 };
  const unusedTtl = options.unusedClientTtl ?? 0;
  if (unusedTtl > 0) await database.rows(markUsedClients);
  for (const table of Object.keys(deletions) as Array<keyof typeof deletions>) {
    counts[table] = await inBatches(database, batch, () => deletions[table](cutoff, batch));
  }
  if (unusedTtl > 0) counts.clients = await inBatches(database, batch, () => deleteUnusedClients(unusedTtl, batch));
  return counts;
}

