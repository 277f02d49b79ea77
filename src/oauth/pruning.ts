// Data lifecycle: deletes what can no longer matter (db/stores/maintenance.ts), in small batches
// (one short statement each, rows locked elsewhere skipped rather than waited for), so pruning
// never holds long locks or blocks a revocation.
//
// What is kept, and why:
// - Every session — live, rotated (`refreshed`) or revoked — until both of its tokens have
//   expired. A rotated session is what makes reuse of its refresh token detectable; once the
//   family's refresh expiry has passed, that refresh token's own `exp` refuses it anyway.
// - An authorization grant while any session of it remains (a second redemption of its code
//   must still revoke those sessions, RFC 6749 §4.1.2), and for `margin` after its code expired.
// - Event-log entries (db/stores/revocation-events.ts) until the token they name has expired —
//   and beyond, while a Shared Signals stream that is not disabled has yet to read them, up to
//   TA_SSF_RETENTION after they were written. What a stream loses to that bound is logged
//   (ssf.events.dropped) and counted (ta_ssf_events_dropped_total) for that stream.
// - A client that registered itself (dynamic registration, a metadata document) while it has a
//   code or a token, or ever had one; one that never did is deleted after TA_UNUSED_CLIENT_TTL.
import type { Database } from "../../db/client.ts";
import type { PruneCounts, PruneOptions, UpkeepCounts } from "../../db/stores/maintenance.ts";
import { prune, upkeepNeeded, upkeep } from "../../db/stores/maintenance.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";
import type { Metrics } from "../metrics.ts";

export type { PruneCounts, PruneOptions };
export { DEFAULT_PRUNE_BATCH, prune } from "../../db/stores/maintenance.ts";

/** A maintenance pass run every interval, never two at once; a failed pass is logged as `<event>.failed`. */
export interface MaintenanceJob<T> {
  /** Runs one pass now (the timer's passes never overlap with it); `undefined` when it failed. */
  runOnce(): Promise<T | undefined>;
  stop(): Promise<void>;
}

export type PruningJob = MaintenanceJob<PruneCounts>;
/** Its pass answers `undefined` also when autovacuum does the work, or on PGlite. */
export type UpkeepJob = MaintenanceJob<UpkeepCounts>;

function everyInterval<T>(log: Logger, event: string, intervalSeconds: number, pass: () => Promise<T | undefined>): MaintenanceJob<T> {
  let running: Promise<T | undefined> | undefined;
  const runOnce = () => {
    running ??= (async () => {
      try {
        return await pass();
      } catch (error) {
        log.warn(`${event}.failed`, { error: errorForLog(error) });
        return undefined;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const timer = setInterval(runOnce, intervalSeconds * 1000);
  timer.unref?.();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/** Prunes every `intervalSeconds` (TA_PRUNE_INTERVAL); several instances may run it at once. */
export function startPruning(
  { database, log, metrics }: { database: Database; log: Logger; metrics: Pick<Metrics, "pruned" | "ssfEventsDropped"> },
  intervalSeconds: number,
  options: PruneOptions = {},
): PruningJob {
  return everyInterval(log, "maintenance.prune", intervalSeconds, async () => {
    const counts = await prune(database, options);
    metrics.pruned.inc({ table: "sessions" }, counts.sessions);
    metrics.pruned.inc({ table: "authorization_grants" }, counts.authorizationCodes);
    metrics.pruned.inc({ table: "revocation_events" }, counts.revocationEvents);
    metrics.pruned.inc({ table: "clients" }, counts.clients);
    metrics.pruned.inc({ table: "dpop_proofs" }, counts.dpopProofs);
    for (const [streamId, dropped] of Object.entries(counts.droppedByStream)) {
      metrics.ssfEventsDropped.inc({ stream_id: streamId }, dropped);
      log.warn("ssf.events.dropped", { stream_id: streamId, events: dropped, reason: "retention" });
    }
    const total = counts.sessions + counts.authorizationCodes + counts.revocationEvents + counts.clients;
    (total > 0 ? log.info : log.debug)("maintenance.prune.completed", {
      sessions: counts.sessions,
      authorization_codes: counts.authorizationCodes,
      revocation_events: counts.revocationEvents,
      unused_clients: counts.clients,
      dpop_proofs: counts.dpopProofs,
    });
    return counts;
  });
}

/**
 * Every `intervalSeconds` (TA_UPKEEP_INTERVAL), when the PostgreSQL database runs no autovacuum,
 * analyzes (and vacuums) the tables that have changed enough (db/stores/maintenance.ts upkeep).
 * Measured by `bun run bench:soak` on a server with autovacuum off: a single ANALYZE of the hot
 * tables after the second minute took the third from 1 697 to 5 092 req/s (bench/README.md).
 */
export function startUpkeep({ database, log }: { database: Database; log: Logger }, intervalSeconds: number): UpkeepJob {
  return everyInterval(log, "maintenance.upkeep", intervalSeconds, async () => {
    if (!(await upkeepNeeded(database))) return undefined;
    const counts = await upkeep(database);
    if (counts.vacuumed.length + counts.analyzed.length > 0) {
      log.info("maintenance.upkeep.completed", { vacuumed: counts.vacuumed.join(","), analyzed: counts.analyzed.join(",") });
    }
    return counts;
  });
}
