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
  /** DPoP proofs past the window in which a replay could pass the freshness check. */
  dpopProofs: number;
  /** Per Shared Signals stream: log entries pruned before it read them (held past `eventRetention`). */
  droppedByStream: Record<string, number>;
}

export interface PruneOptions {
  /** Rows per DELETE statement. */
  batchSize?: number;
  /** Seconds past expiry before a row is pruned (covers clock skew and in-flight requests). */
  margin?: number;
  /** Seconds after which a self-registered client never seen in use is deleted; 0 or absent = never. */
  unusedClientTtl?: number;
  /**
   * Seconds a log entry is kept for a Shared Signals stream that has not read it yet
   * (TA_SSF_RETENTION); past that it is pruned anyway, and counted against the stream.
   */
  eventRetention?: number;
}

export const DEFAULT_PRUNE_BATCH = 1000;
const DEFAULT_MARGIN = 300;
const DEFAULT_EVENT_RETENTION = 7 * 24 * 3600;

/** One batch: deletes at most `batch` rows older than `cutoff`, returns `{ n }` deleted. */
const deletions: Record<"sessions" | "authorizationCodes" | "dpopProofs", (cutoff: SQL, batch: number) => SQL> = {
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
  dpopProofs: (cutoff, batch) => sql`
    with doomed as (
      select id from dpop_proofs where expires_at < ${cutoff} limit ${batch} for update skip locked
    ), deleted as (delete from dpop_proofs p using doomed where p.id = doomed.id returning 1)
    select count(*)::int as n from deleted`,
};

/**
 * Log entries whose token has expired, unless a stream that is not disabled has yet to read them
 * (an entry for one stream only holds that stream) and they are younger than the retention.
 * Answers, besides the count, how many entries each such stream lost: those above its position
 * that it had not settled.
 */
const pruneEvents = (cutoff: SQL, retention: number, batch: number) => sql`
  with doomed as (
    select e.cursor from revocation_events e
     where e.expires_at < ${cutoff}
       and (e.revoked_at < now() - make_interval(secs => ${retention})
            or not exists (select 1 from ssf_streams s
                            where s.status <> 'disabled' and s.position < e.cursor
                              and (e.stream_id is null or e.stream_id = s.id)))
     limit ${batch} for update skip locked
  ), deleted as (
    delete from revocation_events e using doomed where e.cursor = doomed.cursor returning e.cursor, e.stream_id
  ), lost as (
    select s.id, count(*)::int as n
      from ssf_streams s join deleted d on d.cursor > s.position and (d.stream_id is null or d.stream_id = s.id)
     where s.status <> 'disabled'
       and not exists (select 1 from ssf_acks a where a.stream_id = s.id and a.cursor = d.cursor)
     group by s.id
  )
  select (select count(*)::int from deleted) as n,
         (select coalesce(json_object_agg(lost.id, lost.n), '{}'::json) from lost) as dropped`;

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

/**
 * Deletes expired sessions, authorization codes and event-log entries (those no stream still
 * needs), and unused clients; returns the counts.
 */
export async function prune(database: Database, options: PruneOptions = {}): Promise<PruneCounts> {
  const batch = Math.max(1, Math.floor(options.batchSize ?? DEFAULT_PRUNE_BATCH));
  const cutoff = sql`now() - make_interval(secs => ${options.margin ?? DEFAULT_MARGIN})`;
  const counts: PruneCounts = { sessions: 0, authorizationCodes: 0, revocationEvents: 0, clients: 0, dpopProofs: 0, droppedByStream: {} };
  const unusedTtl = options.unusedClientTtl ?? 0;
  if (unusedTtl > 0) await database.rows(markUsedClients);
  for (const table of Object.keys(deletions) as Array<keyof typeof deletions>) {
    counts[table] = await inBatches(database, batch, () => deletions[table](cutoff, batch));
  }
  const retention = options.eventRetention ?? DEFAULT_EVENT_RETENTION;
  for (;;) {
    const [row] = await database.rows<{ n: number; dropped: Record<string, number> | string }>(pruneEvents(cutoff, retention, batch));
    const deleted = Number(row?.n ?? 0);
    counts.revocationEvents += deleted;
    const dropped = typeof row?.dropped === "string" ? (JSON.parse(row.dropped) as Record<string, number>) : (row?.dropped ?? {});
    for (const [streamId, n] of Object.entries(dropped)) counts.droppedByStream[streamId] = (counts.droppedByStream[streamId] ?? 0) + Number(n);
    if (deleted < batch) break;
  }
  if (unusedTtl > 0) counts.clients = await inBatches(database, batch, () => deleteUnusedClients(unusedTtl, batch));
  return counts;
}


/** What one upkeep pass did: the tables it vacuumed (with ANALYZE) and the ones it only analyzed. */
export interface UpkeepCounts {
  vacuumed: string[];
  analyzed: string[];
}

/**
 * Whether upkeep() is this server's to do: on PostgreSQL where no autovacuum launcher runs
 * (autovacuum off). Not on PGlite: its single-user backend has no autovacuum, but its
 * `pg_stat_user_tables` counters do not move either, so there is nothing to go by.
 */
export async function upkeepNeeded(database: Database): Promise<boolean> {
  if (database.kind === "pglite") return false;
  const [row] = await database.rows<{ runs: boolean }>(
    sql`select exists (select 1 from pg_stat_activity where backend_type = 'autovacuum launcher') as runs`,
  );
  return row?.runs === false;
}

/**
 * What autovacuum would do with its default thresholds (PostgreSQL's autovacuum_* settings:
 * vacuum past 50 + 20 % dead rows, analyze past 50 + 10 % rows changed since the last ANALYZE),
 * done now for this schema's tables. Without it, statements prepared while a table was nearly
 * empty keep plans made for an empty table (an ANALYZE is what invalidates them), and updated
 * rows' dead versions pile up. SKIP_LOCKED: a table another instance is vacuuming is left to it.
 */
export async function upkeep(database: Database): Promise<UpkeepCounts> {
  const due = await database.rows<{ relname: string; vacuum: boolean }>(sql`
    select s.relname, s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0) as vacuum
      from pg_stat_user_tables s join pg_class c on c.oid = s.relid
     where s.schemaname = current_schema()
       and (s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0) or s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0))
     order by s.relname`);
  const counts: UpkeepCounts = { vacuumed: [], analyzed: [] };
  for (const { relname, vacuum } of due) {
    await database.rows(vacuum ? sql`vacuum (analyze, skip_locked) ${sql.identifier(relname)}` : sql`analyze (skip_locked) ${sql.identifier(relname)}`);
    (vacuum ? counts.vacuumed : counts.analyzed).push(relname);
  }
  return counts;
}
