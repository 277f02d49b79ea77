// Announces committed revocations on the `ta_revocations` channel (LISTEN/NOTIFY), coalesced:
// at most one NOTIFY per `delayMs`, sent after the revoking transactions committed and never
// awaited by the request that revoked. A NOTIFY inside the revoking transaction would
// serialize every commit on PostgreSQL's notification-queue lock.
import { randomUUID } from "node:crypto";
import type { Database, Unlisten } from "../../db/client.ts";
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

export interface RevocationWatchHooks {
  /** A revocation was announced (by any instance, or the CLI). */
  revoked(): void;
  /** Its own heartbeat came back; `late` when more than two periods after the last one (notifications may have been lost). */
  heard?(late: boolean): void;
  /** Listening began (notifications before it were missed). */
  listening(): void;
  /** Each period while in use, and once listening began, besides the heartbeat. */
  tick?(): void;
}

/**
 * Listens on `ta_revocations` for something that must not miss a revocation (the introspection
 * cache, replica reads), with a heartbeat of its own on the channel: while the heartbeat comes
 * back the LISTEN connection delivers. It starts on first use and beats only while in use.
 */
export class RevocationWatch {
  private readonly beat = `${HEARTBEAT_PREFIX}${randomUUID()}`;
  private heardAt = -Infinity;
  private usedAt = -Infinity;
  private listening: Promise<Unlisten | undefined> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(
    private readonly database: Pick<Database, "listen" | "notify">,
    private readonly log: Logger,
    /** Names its log events: `<name>.listen_failed`, `<name>.heartbeat_failed`. */
    private readonly name: string,
    readonly periodMs: number,
    private readonly hooks: RevocationWatchHooks,
  ) {}

  /** Marks it in use (starting it the first time); answers whether its heartbeat came back within 3 periods. */
  use(): boolean {
    const now = performance.now();
    this.usedAt = now;
    if (!this.listening && !this.closed) this.start();
    return now - this.heardAt < 3 * this.periodMs;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const unlisten = await this.listening?.catch(() => undefined);
    await unlisten?.().catch(() => {});
  }

  private start(): void {
    this.listening = this.database
      .listen(REVOCATION_CHANNEL, (payload) => {
        if (payload === this.beat) {
          const now = performance.now();
          this.hooks.heard?.(now - this.heardAt > 2 * this.periodMs);
          this.heardAt = now;
        } else if (!payload.startsWith(HEARTBEAT_PREFIX)) {
          this.hooks.revoked();
        }
      })
      .then(
        (unlisten) => {
          this.hooks.listening();
          this.tick();
          return unlisten;
        },
        (error) => {
          this.log.warn(`${this.name}.listen_failed`, { error: errorForLog(error) });
          this.listening = undefined; // the next use tries again
          return undefined;
        },
      );
    this.timer ??= setInterval(() => {
      // Only while in use: an idle server sends nothing.
      if (performance.now() - this.usedAt < 10 * this.periodMs) this.tick();
    }, this.periodMs);
    this.timer.unref?.();
  }

  private tick(): void {
    if (this.closed) return;
    this.hooks.tick?.();
    this.database.notify(REVOCATION_CHANNEL, this.beat).catch((error) => {
      this.log.debug(`${this.name}.heartbeat_failed`, { error: errorForLog(error) });
    });
  }
}
