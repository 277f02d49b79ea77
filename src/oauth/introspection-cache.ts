// An in-process cache of verified live tokens for introspection (RFC 7662): a resource server
// that introspects the same token on every API call costs neither an ECDSA verification nor a
// database round trip while the entry is fresh. It must never answer for a revoked token:
//   * every revocation committed by this instance (RevocationNotifier.committed(), called
//     before the revoking request answers) empties it, and an entry whose lookup began before
//     that is never stored (the generation check);
//   * every notification on ta_revocations (other instances, the CLI) empties it: another
//     instance's revocation can still be answered from here until its NOTIFY arrives — the
//     notifier coalesces for a few milliseconds after the commit, then delivery takes about a
//     millisecond more;
//   * no entry lives longer than the TTL (TA_INTROSPECTION_CACHE_TTL, 1 s by default), which
//     bounds the damage of a lost notification;
//   * the cache serves nothing unless it heard its own heartbeat on the channel recently: a
//     LISTEN connection that is down (or a channel that delivers nothing) turns it off.
import { randomUUID } from "node:crypto";
import type { Database, Unlisten } from "../../db/client.ts";
import { errorForLog } from "../log.ts";
import type { Logger } from "../log.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import { HEARTBEAT_PREFIX, REVOCATION_CHANNEL } from "./revocation-notifier.ts";
import type { TokenClaims, TokenKind } from "./tokens.ts";

/** What introspection needs to describe a token again without the database. */
export interface CachedToken {
  kind: TokenKind;
  claims: TokenClaims;
  /** The client of the session (who may see the token). */
  clientId: string;
  /** When the token stops being live, ms since the epoch: the earlier of `exp` and the session's expiry. */
  expiresAt: number;
}

export interface IntrospectionCacheOptions {
  ttlMs: number;
  maxEntries?: number;
  /** Heartbeat period; the cache is on while its last heartbeat came back within 3 periods. */
  heartbeatMs?: number;
}

export class IntrospectionCache {
  private readonly entries = new Map<string, { token: CachedToken; storedAt: number }>();
  private generation = 0;
  private readonly beat = `${HEARTBEAT_PREFIX}${randomUUID()}`;
  private heardAt = -Infinity;
  private usedAt = -Infinity;
  private listening: Promise<Unlisten | undefined> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly unsubscribeLocal: () => void;
  private closed = false;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly heartbeatMs: number;

  constructor(
    private readonly database: Database,
    notifier: RevocationNotifier,
    private readonly log: Logger,
    options: IntrospectionCacheOptions,
  ) {
    this.ttlMs = options.ttlMs;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.heartbeatMs = options.heartbeatMs ?? 1000;
    this.unsubscribeLocal = notifier.onCommitted(() => this.invalidate());
  }

  /** The cached description of a token, if fresh and the cache is on. */
  get(token: string, now: number): CachedToken | undefined {
    if (!this.active()) return undefined;
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    if (performance.now() - entry.storedAt >= this.ttlMs || entry.token.expiresAt <= now) {
      this.entries.delete(token);
      return undefined;
    }
    return entry.token;
  }

  /** Taken before the database lookup whose result may be stored with `set`. */
  mark(): number {
    return this.generation;
  }

  /** Stores a token found live by a lookup that began at `mark`, unless a revocation came since. */
  set(token: string, value: CachedToken, mark: number): void {
    if (mark !== this.generation || !this.active()) return;
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { token: value, storedAt: performance.now() });
  }

  /** Something was revoked (here or elsewhere): nothing cached may be served again. */
  invalidate(): void {
    this.generation++;
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribeLocal();
    this.invalidate();
    const unlisten = await this.listening?.catch(() => undefined);
    await unlisten?.().catch(() => {});
  }

  /** On while recently used and the heartbeat comes back; use starts listening and beating. */
  private active(): boolean {
    const now = performance.now();
    this.usedAt = now;
    if (!this.listening && !this.closed) this.start();
    return now - this.heardAt < 3 * this.heartbeatMs;
  }

  private start(): void {
    this.listening = this.database
      .listen(REVOCATION_CHANNEL, (payload) => {
        if (payload === this.beat) {
          const now = performance.now();
          // A heartbeat that came late may mean a dropped connection: notifications lost.
          if (now - this.heardAt > 2 * this.heartbeatMs) this.invalidate();
          this.heardAt = now;
        } else if (!payload.startsWith(HEARTBEAT_PREFIX)) {
          this.invalidate();
        }
      })
      .then(
        (unlisten) => {
          // Notifications may have been missed before listening: nothing from then is kept.
          this.invalidate();
          this.heartbeat();
          return unlisten;
        },
        (error) => {
          this.log.warn("introspection_cache.listen_failed", { error: errorForLog(error) });
          this.listening = undefined; // the next use tries again
          return undefined;
        },
      );
    this.timer ??= setInterval(() => {
      // Beat only while in use: an idle server sends nothing.
      if (performance.now() - this.usedAt < 10 * this.heartbeatMs) this.heartbeat();
    }, this.heartbeatMs);
    this.timer.unref?.();
  }

  private heartbeat(): void {
    if (this.closed) return;
    this.database.notify(REVOCATION_CHANNEL, this.beat).catch((error) => {
      this.log.debug("introspection_cache.heartbeat_failed", { error: errorForLog(error) });
    });
  }
}
