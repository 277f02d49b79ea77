// Announces committed revocations on the `ta_revocations` channel (LISTEN/NOTIFY), coalesced:
// at most one NOTIFY per `delayMs`, sent after the revoking transactions committed and never
// awaited by the request that revoked. A NOTIFY inside the revoking transaction would
// serialize every commit on PostgreSQL's notification-queue lock.
import type { Database } from "../../db/client.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";

export const REVOCATION_CHANNEL = "ta_revocations";
/** Payloads on the channel that announce no revocation (introspection-cache heartbeats). */
export const HEARTBEAT_PREFIX = "heartbeat:";
/**
 * The channel that says a cached thing changed: `client:<client_id>`, `keys`. Not the revocation
 * channel: every instance listens here all the time, and a listener on the revocation channel
 * costs every revocation (the database signals and delivers each coalesced NOTIFY to it) — 4 to
 * 7 % of revocation throughput in bench/profile.ts revoke --plain.
 */
export const INVALIDATION_CHANNEL = "ta_invalidations";

export class RevocationNotifier {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly localListeners = new Set<() => void>();

  constructor(
    private readonly database: Pick<Database, "notify">,
    private readonly log: Logger,
    private readonly delayMs = 2,
  ) {}

  /** Call after a transaction that revoked something has committed. */
  committed(): void {
    for (const listener of this.localListeners) listener();
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.database.notify(REVOCATION_CHANNEL, "").catch((error) => {
        // Listeners also poll: a lost notification delays other instances, loses nothing.
        this.log.warn("revocation.notify_failed", { error: errorForLog(error) });
      });
    }, this.delayMs);
  }

  /**
   * Tells every instance (and the CLI's changes made straight on PostgreSQL) that a cached
   * client or the signing keys changed, so no instance serves the old one until its TTL.
   */
  async invalidate(what: { client: string } | "keys" | "resources"): Promise<void> {
    const payload = typeof what === "string" ? what : `client:${what.client}`;
    await this.database.notify(INVALIDATION_CHANNEL, payload).catch((error) => {
      this.log.warn("cache.invalidate_failed", { error: errorForLog(error) });
    });
  }

  /** In-process subscribers (this instance's feed) are told at once, without a round trip. */
  onCommitted(listener: () => void): () => void {
    this.localListeners.add(listener);
    return () => this.localListeners.delete(listener);
  }

  /** Sends a pending notification now (before the database closes). */
  async flush(): Promise<void> {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.database.notify(REVOCATION_CHANNEL, "").catch(() => {});
  }
}
