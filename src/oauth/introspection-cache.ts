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
import type { Database } from "../../db/client.ts";
import type { Logger } from "../log.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import { RevocationWatch } from "./revocation-notifier.ts";
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
  private readonly watch: RevocationWatch;
  private readonly unsubscribeLocal: () => void;
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  constructor(
    database: Database,
    notifier: RevocationNotifier,
    log: Logger,
    options: IntrospectionCacheOptions,
  ) {
    this.ttlMs = options.ttlMs;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.watch = new RevocationWatch(database, log, "introspection_cache", options.heartbeatMs ?? 1000, {
      revoked: () => this.invalidate(),
      // A heartbeat that came late may mean a dropped connection: notifications lost.
      heard: (late) => late && this.invalidate(),
      // Notifications may have been missed before listening: nothing from then is kept.
      listening: () => this.invalidate(),
    });
    this.unsubscribeLocal = notifier.onCommitted(() => this.invalidate());
  }

  /** The cached description of a token, if fresh and the cache is on. */
  get(token: string, now: number): CachedToken | undefined {
    if (!this.watch.use()) return undefined;
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
    if (mark !== this.generation || !this.watch.use()) return;
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
    this.unsubscribeLocal();
    this.invalidate();
    await this.watch.close();
  }
}
