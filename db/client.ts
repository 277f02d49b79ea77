// Opens the database behind one `Database` type: postgres.js when DATABASE_URL is set,
// otherwise the embedded PGlite persisted in TA_DATA_DIR.
import { PGlite } from "@electric-sql/pglite";
import type { SQL } from "drizzle-orm";
import { sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { lockDataDir } from "./data-dir-lock.ts";
import { loadPgliteAssets } from "./pglite-assets.ts";
import * as schema from "./schema.ts";

export type Schema = typeof schema;
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export type Unlisten = () => Promise<void>;

export interface Database {
  readonly kind: "postgres" | "pglite";
  readonly db: Db;
  /** Runs raw SQL and returns its rows, whichever driver is underneath. */
  rows<T extends Record<string, unknown>>(query: SQL): Promise<T[]>;
  /** LISTEN on a channel; resolves once listening. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<Unlisten>;
  /** NOTIFY a channel (outside any transaction: it is sent at once). */
  notify(channel: string, payload: string): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

function rowsOf<T>(result: unknown): T[] {
  // postgres.js returns an Array subclass; PGlite returns { rows }.
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

export interface PostgresOptions {
  poolSize: number;
  connectTimeout: number;
  statementTimeout: number;
  /**
   * remote_apply: a commit returns once every synchronous standby has replayed it, so a read
   * there sees it (what reads from replicas need: src/oauth/replica-reads.ts). Default: the
   * server's setting.
   */
  synchronousCommit?: "remote_apply";
}

/**
 * Seconds postgres.js waits before reconnecting after `retries` failed attempts: at most one
 * second, with jitter. Its default grows to 20 s, and a request queued on a connection waiting
 * to reconnect waits that long — during an outage and for as long after it (test/fault.test.ts).
 */
export function reconnectDelay(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** retries, 1);
}

/**
 * Drizzle runs every query without a name (`prepare: false`) unless the query was built
 * with `.prepare(name)`, and postgres.js then needs two round trips for any query with
 * parameters: Parse/Describe, wait, then Bind/Execute. This view of the client prepares
 * every statement on each connection once, so a query costs one round trip afterwards.
 * Transactions (`begin`) and savepoints get the same view of their reserved connection.
 */
function preparing<T extends postgres.Sql | postgres.TransactionSql>(client: T, deadlineMs: number): T {
  return new Proxy(client, {
    get(target, property) {
      if (property === "unsafe") {
        return (query: string, params?: postgres.ParameterOrJSON<never>[], options?: postgres.UnsafeQueryOptions) =>
          withDeadline(target.unsafe(query, params, { ...options, prepare: true }), deadlineMs);
      }
      if (property === "begin" || property === "savepoint") {
        return (...args: unknown[]) => {
          const callback = args.pop() as (tx: postgres.TransactionSql) => unknown;
          const method = Reflect.get(target, property, target) as (...a: unknown[]) => Promise<unknown>;
          if (property === "savepoint") return method(...args, (tx: postgres.TransactionSql) => callback(preparing(tx, deadlineMs)));
          // A transaction waits for a connection of its own; past the deadline it is given up, and if
          // the connection comes after all, it rolls back before doing anything. Its statements
          // have their own deadlines; its COMMIT, which postgres.js sends, gets one too: past it
          // the outcome is unknown (a 503), never a success reported late by a cancelled wait for
          // the synchronous standby.
          return new Promise((resolve, reject) => {
            let started = false;
            let abandoned = false;
            let committing: ReturnType<typeof setTimeout> | undefined;
            const timer = setTimeout(() => {
              if (started) return;
              abandoned = true;
              reject(new DatabaseWaitTimeout());
            }, deadlineMs);
            const run = method(...args, async (tx: postgres.TransactionSql) => {
              if (abandoned) throw new DatabaseWaitTimeout();
              started = true;
              const result = await callback(preparing(tx, deadlineMs));
              committing = setTimeout(() => reject(new DatabaseWaitTimeout()), deadlineMs);
              return result;
            });
            run.then(resolve, reject).finally(() => {
              clearTimeout(timer);
              clearTimeout(committing);
            });
          });
        };
      }
      return Reflect.get(target, property, target);
    },
  });
}

/** A query (or transaction) that found no connection, or no answer, within the deadline: the database is unavailable (503). */
export class DatabaseWaitTimeout extends Error {
  override name = "DatabaseWaitTimeout";
  readonly code = "QUERY_WAIT_TIMEOUT";
  constructor() {
    super("no database answer within the deadline");
  }
}

/**
 * Bounds a query's wait: past `ms` it fails as unavailable, and if it was not sent it is taken
 * out of the queue (it then never runs). One that was sent is left to finish, never cancelled:
 * PostgreSQL reports a commit whose wait for the synchronous standby was cancelled as committed
 * (with only a WARNING), and a cancel request that arrives late — a primary that hung, then woke
 * up — cancels whatever its backend runs then, a later query's commit wait: a success no standby
 * holds, answered 200 and lost at the failover (test/cluster-faults.test.ts). PostgreSQL's
 * statement_timeout, a second longer, ends a sent statement that runs away. Without it
 * a request waits for as long as no host of a multi-host DATABASE_URL is a primary (a failover:
 * Patroni's ttl), past the HTTP server's idle timeout, and answers nothing. postgres.js runs a
 * query when it is awaited, so the query is not touched until then: its own resolve and reject
 * clear the timer.
 */
function withDeadline<Q extends { cancel(): unknown }>(query: Q, ms: number): Q {
  const pending = query as unknown as { resolve: (value: unknown) => void; reject: (error: unknown) => void; state: unknown };
  const { resolve, reject } = pending;
  const timer = setTimeout(() => {
    // postgres.js sets `state` (the backend's key) when it hands the query to a connection that
    // is up. Before, cancel() only takes it out of the queue, or off the connection still connecting.
    if (!pending.state) void Promise.resolve(query.cancel()).catch(() => {});
    reject(new DatabaseWaitTimeout());
  }, ms);
  timer.unref?.();
  pending.resolve = (value) => {
    clearTimeout(timer);
    resolve(value);
  };
  pending.reject = (error) => {
    clearTimeout(timer);
    reject(error);
  };
  return query;
}

/** The server's lock_timeout: 80 % of the client's deadline (both from TA_DB_STATEMENT_TIMEOUT, seconds). */
const lockTimeoutMs = (statementTimeout: number) => Math.round(statementTimeout * 800);

export function openPostgres(url: string, options: PostgresOptions): Database {
  const client = postgres(url, {
    max: options.poolSize,
    connect_timeout: options.connectTimeout,
    backoff: reconnectDelay,
    idle_timeout: 300,
    onnotice: () => {},
    connection: {
      application_name: "token-authority",
      // A second past the client's deadline (below): the client gives up first. Server first, a
      // commit waiting for its synchronous standby would be cancelled by statement_timeout and
      // reported committed (with only a WARNING) though no standby has it — a 200 that a
      // failover loses (the split of test/cluster-faults.test.ts).
      statement_timeout: options.statementTimeout * 1000 + 1000,
      // Before the client's deadline: a statement waiting on a row lock held elsewhere ends with
      // lock_not_available (nothing changed, a 503) before the client gives up on it. At the
      // deadline itself, a lock released in between would let the statement go on and commit
      // after the client had answered 503 (test/lock-timeout.test.ts).
      lock_timeout: lockTimeoutMs(options.statementTimeout),
      idle_in_transaction_session_timeout: options.statementTimeout * 4 * 1000,
      ...(options.synchronousCommit ? { synchronous_commit: options.synchronousCommit } : {}),
    },
  });
  const db = drizzlePostgres(preparing(client, options.statementTimeout * 1000), { schema }) as unknown as Db;
  return {
    kind: "postgres",
    db,
    rows: async (query) => rowsOf(await db.execute(query)),
    async listen(channel, onPayload) {
      const { unlisten } = await client.listen(channel, onPayload);
      return unlisten;
    },
    async notify(channel, payload) {
      await db.execute(sql`select pg_notify(${channel}, ${payload})`);
    },
    async ping() {
      await db.execute(sql`select 1`);
    },
    close: () => client.end({ timeout: 5 }),
  };
}

export interface PgliteOptions {
  /** Directory persisted on disk; omitted = in memory. */
  dataDir?: string;
  /** A tarball from dumpDataDir() to start from (tests clone one migrated database). */
  loadDataDir?: Blob;
}

export async function openPglite(options: PgliteOptions = {}): Promise<Database & { pglite: PGlite }> {
  const lock = options.dataDir ? lockDataDir(options.dataDir) : undefined;
  let pglite: PGlite;
  try {
    pglite = await PGlite.create(options.dataDir, {
      ...(await loadPgliteAssets()),
      loadDataDir: options.loadDataDir,
    });
  } catch (error) {
    lock?.release();
    throw error;
  }
  const db = drizzlePglite(pglite, { schema }) as unknown as Db;
  let closing: Promise<void> | undefined;
  return {
    kind: "pglite",
    db,
    pglite,
    rows: async (query) => rowsOf(await db.execute(query)),
    listen: (channel, onPayload) => pglite.listen(channel, onPayload),
    async notify(channel, payload) {
      await db.execute(sql`select pg_notify(${channel}, ${payload})`);
    },
    async ping() {
      await pglite.query("select 1");
    },
    close() {
      closing ??= (async () => {
        try {
          if (!pglite.closed) await pglite.close();
        } finally {
          lock?.release();
        }
      })();
      return closing;
    },
  };
}

export interface DatabaseConfig extends PostgresOptions {
  databaseUrl: string | undefined;
  dataDir: string;
}

export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  if (config.databaseUrl) return openPostgres(config.databaseUrl, config);
  return openPglite({ dataDir: config.dataDir });
}

/** Connections of every TokenAuthority instance to this PostgreSQL database, by state (pg_stat_activity). */
export async function connectionsByState(database: Database): Promise<Array<{ state: string; count: number }>> {
  const rows = await database.rows<{ state: string | null; count: number }>(sql`
    select coalesce(state, 'unknown') as state, count(*)::int as count from pg_stat_activity
     where datname = current_database() and application_name = current_setting('application_name')
     group by 1`);
  return rows.map((row) => ({ state: row.state ?? "unknown", count: Number(row.count) }));
}
