// Session lookups answered by a replica (TA_DATABASE_READ_URL, #21 item 4) without an `active`
// answer for a token revoked before the lookup. Two things make a replica's answer current:
//   * the cluster: with a read URL the server commits with synchronous_commit = remote_apply
//     (db/client.ts), so a revocation is answered 200 only once every synchronous standby has
//     replayed it — a standby in Patroni's synchronous set is current for every instance;
//   * the floor, checked in the lookup itself (db/stores/sessions.ts): a replica's rows are used
//     only if it has replayed the primary's WAL up to a position read from the primary after the
//     last revocation this instance committed or heard of (its NOTIFY on ta_revocations), and
//     within TA_READ_MAX_LAG. Until that position is read the primary answers, so this instance
//     always reads its own revocations, and a replica that fell out of the synchronous set (or
//     lags for any reason) is never read more than TA_READ_MAX_LAG behind.
// A session the replica does not hold (a token minted a moment ago) is asked of the primary, and
// a replica that fails is left alone for a while: reads never fail because of the replica.
import type { Database } from "../../db/client.ts";
import type { SessionReplica } from "../../db/stores/sessions.ts";
import { flushedWalPosition } from "../../db/stores/replication.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import { RevocationWatch } from "./revocation-notifier.ts";

export interface ReplicaReadsOptions {
  /** How far behind the primary (ms) a replica may be read: the floor is read again every half of it. */
  maxLagMs: number;
  /** How long a replica that failed is left alone (ms). */
  pauseAfterFailureMs?: number;
}

export class ReplicaReads implements SessionReplica {
  private lsn: string | undefined;
  /** When the floor in `lsn` was asked for (performance.now()). */
  private takenAt = -Infinity;
  /** Revocations committed or heard of; a floor read since the last one is current. */
  private changes = 0;
  private current = false;
  private refreshing = false;
  private again = false;
  private failedUntil = -Infinity;
  private readonly watch: RevocationWatch;
  private readonly pauseMs: number;
  private readonly unsubscribeLocal: () => void;
  private closed = false;

  constructor(
    readonly database: Database,
    private readonly primary: Database,
    notifier: RevocationNotifier,
    private readonly log: Logger,
    private readonly metrics: Pick<Metrics, "sessionLookups">,
    private readonly options: ReplicaReadsOptions,
  ) {
    this.pauseMs = options.pauseAfterFailureMs ?? 1000;
    // The floor is read again each period (half the bound), with the heartbeat.
    this.watch = new RevocationWatch(primary, log, "db.replica", Math.max(options.maxLagMs / 2, 10), {
      revoked: () => this.changed(),
      listening: () => this.changed(),
      tick: () => this.refresh(),
    });
    this.unsubscribeLocal = notifier.onCommitted(() => this.changed());
  }

  /** The position the replica must have replayed for its answers to be used, or undefined: ask the primary. */
  floor(): string | undefined {
    // Without its own heartbeat back on the channel, other instances' revocations may go unheard.
    const heard = this.watch.use();
    if (!this.current || performance.now() - this.takenAt > this.options.maxLagMs) {
      if (!this.refreshing) this.refresh();
      return undefined;
    }
    return heard && performance.now() >= this.failedUntil ? this.lsn : undefined;
  }

  failed(error: unknown): void {
    if (performance.now() >= this.failedUntil) this.log.warn("db.replica_failed", { error: errorForLog(error) });
    this.failedUntil = performance.now() + this.pauseMs;
  }

  answered(replica: number, primary: number): void {
    if (replica > 0) this.metrics.sessionLookups.inc({ source: "replica" }, replica);
    if (primary > 0) this.metrics.sessionLookups.inc({ source: "primary" }, primary);
  }

  /** Whether the replica may answer now (tests wait for it). */
  get ready(): boolean {
    return this.floor() !== undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribeLocal();
    this.current = false;
    await this.watch.close();
  }

  /** A revocation committed here or elsewhere: the primary answers until a floor past it is read. */
  private changed(): void {
    this.changes++;
    this.current = false;
    this.refresh();
  }

  private refresh(): void {
    if (this.closed) return;
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = true;
    const changes = this.changes;
    const askedAt = performance.now();
    flushedWalPosition(this.primary)
      .then(
        (lsn) => {
          this.lsn = lsn;
          this.takenAt = askedAt;
          // A revocation that came while asking may be past this position.
          this.current = changes === this.changes;
        },
        (error) => this.log.debug("db.replica_floor_failed", { error: errorForLog(error) }),
      )
      .finally(() => {
        this.refreshing = false;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
  }
}
