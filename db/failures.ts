// What a database failure means for the caller: "could not do it right now" (→ 503, and for a
// batch whether its items are worth running again one by one), and what of it may be logged.
// Classification by SQLSTATE and by the drivers' own error codes (postgres.js, Node's sockets,
// PGlite).
import { DrizzleQueryError } from "drizzle-orm";

/** Connection-level failures of postgres.js, Node's sockets and PGlite. */
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "QUERY_WAIT_TIMEOUT", // db/client.ts: no connection or answer within the deadline (a failover)
  "57014", // query_canceled (statement_timeout)
  "55P03", // lock_not_available (lock_timeout)
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
  "40001", // serialization_failure: retryable
  "40P01", // deadlock_detected: retryable
  // read_only_sql_transaction: a connection that reached a replica (a primary demoted by a failover).
  "25006",
]);

/** SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention), 58 (system). */
const UNAVAILABLE_CLASSES = /^(08|53|57|58)[0-9A-Z]{3}$/;

/** Failures of one statement, not of the connection: its parts, run alone, may succeed. */
const STATEMENT_FAILURES = new Set(["57014", "55P03", "40001", "40P01"]);

/** The error and its causes (drizzle wraps the driver's error), outermost first. */
function* causes(error: unknown): Generator<unknown> {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) yield e;
}

/** True for an error that means "the database could not do it right now" (→ 503). */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (const e of causes(error)) {
    const { code, severity } = e as { code?: unknown; severity?: unknown };
    if (typeof code === "string" && (UNAVAILABLE_CODES.has(code) || UNAVAILABLE_CLASSES.test(code))) return true;
    // A FATAL error ends the connection (e.g. "database does not allow connections").
    if (severity === "FATAL" || severity === "PANIC") return true;
    if (e instanceof Error && /PGlite is closed|database is closing|connection.*(closed|terminated)/i.test(e.message)) return true;
  }
  return false;
}

/** True when the database is out of reach (not when one statement failed on a lock, a timeout or a deadlock). */
export function isConnectionFailure(error: unknown): boolean {
  if (!isDatabaseUnavailable(error)) return false;
  for (const e of causes(error)) if (STATEMENT_FAILURES.has((e as { code?: unknown }).code as string)) return false;
  return true;
}

/** True for an error raised by the database driver (a SQLSTATE code, or Drizzle's wrapper). */
export function isDatabaseError(error: unknown): boolean {
  const e = error as { code?: unknown };
  return error instanceof DrizzleQueryError || (typeof e?.code === "string" && /^[0-9A-Z]{5}$/.test(e.code));
}

/**
 * The error worth logging: DrizzleQueryError's message carries the query's parameters (tokens'
 * digests, secrets' hashes), so the driver's error it wraps stands in for it. (Its `name` is
 * plain "Error": only instanceof recognises it.)
 */
export function loggableDatabaseError(error: unknown): unknown {
  if (!(error instanceof DrizzleQueryError)) return error;
  return error.cause ?? new Error("DrizzleQueryError: query failed");
}
