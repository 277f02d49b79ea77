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
import type { PruneCounts, PruneOptions } from "../../db/stores/maintenance.ts";
import { prune } from "../../db/stores/maintenance.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";
import type { Metrics } from "../metrics.ts";

export type { PruneCounts, PruneOptions };
export { DEFAULT_PRUNE_BATCH, prune } from "../../db/stores/maintenance.ts";

export interface PruningJob {
  /** Runs one pass now (the timer's passes never overlap with it). */
  runOnce(): Promise<PruneCounts | undefined>;
  stop(): Promise<void>;
}

/** Prunes every `intervalSeconds` (TA_PRUNE_INTERVAL); several instances may run it at once. */
export function startPruning(
  { database, log, metrics }: { database: Database; log: Logger; metrics: Pick<Metrics, "pruned" | "ssfEventsDropped"> },
  intervalSeconds: number,
  options: PruneOptions = {},
): PruningJob {
  let running: Promise<PruneCounts | undefined> | undefined;
  const runOnce = () => {
    running ??= (async () => {
      try {
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
      } catch (error) {
        log.warn("maintenance.prune.failed", { error: errorForLog(error) });
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
