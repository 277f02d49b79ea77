// The revocation feed: the entries of revocation_events after a cursor (JSON pages), and a
// per-process hub that follows the table for live (SSE) subscribers. The hub is woken at once
// by this instance's revocations (RevocationNotifier), by one LISTEN ta_revocations per
// process for the other instances sharing the PostgreSQL, and by a safety poll.
//
// Cursors come from a sequence taken inside the revoking transaction, so a transaction still
// in flight can leave a hole below a cursor that is already visible; the hole fills when it
// commits. A reader that jumped past the hole would miss that revocation forever. So the
// position a reader may resume from (`next_cursor`, and the SSE `id:`) never passes a hole
// that might still fill, and a late entry reaches live subscribers whenever it appears.
// Without holes that position is simply the entry's own cursor. A hole counts as
// settled (rolled back, or lost to a crash) once the entry above it was written more than
// SETTLE_SECONDS ago: revoking transactions are single statements bounded by the statement
// timeout, far shorter than that.
import type { Database, Unlisten } from "../../db/client.ts";
import type { RevocationEventRow, RevocationEventStore } from "../../db/stores/revocation-events.ts";
import { OAuthError } from "../errors.ts";
import { errorForLog } from "../log.ts";
import type { Logger } from "../log.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import { HEARTBEAT_PREFIX, REVOCATION_CHANNEL } from "./revocation-notifier.ts";
import type { TokenKind } from "./tokens.ts";

export const SETTLE_SECONDS = 60;
export const MAX_PAGE = 1000;

/** One revoked token as resource servers see it. `exp` and `revoked_at` are NumericDates. */
export interface FeedEntry {
  jti: string;
  exp: number;
  revoked_at: number;
  cursor: number;
  /** Why it ended: revoked_by_client, refresh_token_reuse, user_disabled, key_revoked, signed_out, … */
  reason: string | null;
}

export interface FeedPage {
  entries: FeedEntry[];
  /** Where to resume: never past an entry that may still appear. Entries may repeat. */
  next_cursor: number;
}

export interface FeedOptions {
  /** Safety poll while someone is subscribed, in case a notification is lost. */
  pollMs: number;
  /** SSE comment lines that keep idle connections (and proxies) open. */
  heartbeatMs: number;
}

interface FeedRow {
  entry: FeedEntry;
  kind: TokenKind;
  /** Not yet expired (by the database clock): only these are served. */
  live: boolean;
  /** Local time after which a hole below this row counts as settled. */
  settlesAt: number;
}

/** An entry with the cursor a reader that has received it may resume from (SSE `id:`). */
export interface FeedEvent {
  entry: FeedEntry;
  resume: number;
}

/**
 * Walks rows (ascending, all above the position) and moves the position over each row that
 * follows it directly or sits above a settled hole; past an unsettled hole it stops for good.
 * Each served row is paired with the position reached: its own cursor unless it is held back.
 */
class Scan {
  readonly events: FeedEvent[] = [];
  private blocked = false;

  constructor(
    public position: number,
    private readonly kind: TokenKind | undefined,
  ) {}

  add(rows: readonly FeedRow[], now: number): this {
    for (const row of rows) {
      if (!this.blocked && (row.entry.cursor === this.position + 1 || row.settlesAt <= now)) this.position = row.entry.cursor;
      else this.blocked = true;
      if (row.live && (!this.kind || row.kind === this.kind)) this.events.push({ entry: row.entry, resume: this.position });
    }
    return this;
  }
}

export interface FeedSink {
  events(events: FeedEvent[]): void;
  /** The feed can no longer serve this subscriber; it should reconnect and resume. */
  close(): void;
}

export interface Subscription {
  /** Entries after the requested cursor, read when subscribing. */
  backlog: FeedEvent[];
  /** Starts live delivery (entries found since subscribing first, without repeating the backlog). */
  attach(sink: FeedSink): void;
  close(): void;
}

interface Subscriber {
  /** Where it resumed: nothing at or below can appear late (see the top of this file). */
  after: number;
  kind: TokenKind | undefined;
  sink: FeedSink | undefined;
  /** Entries found while the backlog was read, delivered on attach. */
  pending: FeedEvent[];
}

export class RevocationFeed {
  readonly options: FeedOptions;
  private readonly subscribers = new Set<Subscriber>();
  /** Told whenever the hub finds new entries of any kind (SSF delivery follows the log through it). */
  private readonly watchers = new Set<() => void>();
  private unlisten: Unlisten | undefined;
  private unsubscribeLocal: (() => void) | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private starting: Promise<void> | undefined;
  /** Every cursor up to here is known (and was delivered to the subscribers then present). */
  private position = 0;
  private maxSeen = 0;
  /** Rows above `position` already found, by cursor. */
  private readonly found = new Map<number, FeedRow>();
  private polling: Promise<void> | undefined;
  private pollAgain = false;
  private closed = false;

  constructor(
    private readonly database: Pick<Database, "listen">,
    private readonly store: RevocationEventStore,
    private readonly log: Logger,
    private readonly notifier?: RevocationNotifier,
    options: Partial<FeedOptions> = {},
  ) {
    this.options = { pollMs: 1000, heartbeatMs: 5000, ...options };
  }

  /** Rows as the feed serves them, with the local time after which a hole below each settles. */
  private rows(rows: readonly RevocationEventRow[]): FeedRow[] {
    const now = Date.now();
    return rows.map((row) => ({
      entry: { jti: row.jti ?? "", exp: row.exp, revoked_at: row.revokedAt, cursor: row.cursor, reason: row.reason },
      kind: row.kind ?? "access_token",
      // Entries that name no token (account and stream events) move the position, and are not served.
      live: row.live && row.jti !== null,
      settlesAt: now + (SETTLE_SECONDS - row.age) * 1000,
    }));
  }

  /** One page of unexpired entries after `after` (JSON feed). */
  async page(after: number, limit: number, kind?: TokenKind): Promise<FeedPage> {
    const rows = this.rows(await this.store.after(after, Math.min(limit, MAX_PAGE)));
    const scan = new Scan(after, kind).add(rows, Date.now());
    return { entries: scan.events.map((event) => event.entry), next_cursor: scan.position };
  }

  /**
   * Subscribes to entries after `after` (a `next_cursor` or an SSE id this feed gave out):
   * the backlog, then live entries as the hub finds them.
   */
  async subscribe(after: number, kind?: TokenKind): Promise<Subscription> {
    if (this.closed) throw OAuthError.temporarilyUnavailable("the server is shutting down");
    await this.start();
    const subscriber: Subscriber = { after, kind, sink: undefined, pending: [] };
    this.subscribers.add(subscriber);
    const close = () => {
      if (this.subscribers.delete(subscriber) && this.listeners === 0) this.idle();
    };
    const scan = new Scan(after, kind);
    try {
      // Bring the hub up to date first, so the backlog and live delivery overlap little.
      await this.polling;
      this.wake();
      await this.polling;
      for (let cursor = after; ; ) {
        const rows = this.rows(await this.store.after(cursor, MAX_PAGE));
        scan.add(rows, Date.now());
        if (rows.length < MAX_PAGE) break;
        cursor = rows.at(-1)!.entry.cursor;
      }
    } catch (error) {
      close();
      throw error;
    }
    return {
      backlog: scan.events,
      attach: (sink) => {
        const sent = new Set(scan.events.map((event) => event.entry.cursor));
        const missed = subscriber.pending.filter((event) => !sent.has(event.entry.cursor));
        subscriber.sink = sink;
        subscriber.pending = [];
        if (missed.length > 0) sink.events(missed);
      },
      close,
    };
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /**
   * Calls `listener` whenever the log has new entries — this instance's commits at once, other
   * instances' through the one LISTEN — while it is registered; answers how to unregister.
   */
  watch(listener: () => void): () => void {
    this.watchers.add(listener);
    this.start().catch((error) => this.log.warn("revocation_feed.start_failed", { error: errorForLog(error) }));
    return () => {
      if (this.watchers.delete(listener) && this.listeners === 0) this.idle();
    };
  }

  private get listeners(): number {
    return this.subscribers.size + this.watchers.size;
  }

  /** Ends every subscription and stops listening (the database handle is closed separately). */
  async close(): Promise<void> {
    this.closed = true;
    for (const subscriber of [...this.subscribers]) subscriber.sink?.close();
    this.subscribers.clear();
    this.watchers.clear();
    this.idle();
    this.unsubscribeLocal?.();
    this.unsubscribeLocal = undefined;
    const unlisten = this.unlisten;
    this.unlisten = undefined;
    await unlisten?.().catch(() => {});
  }

  private start(): Promise<void> {
    this.starting ??= (async () => {
      this.unsubscribeLocal ??= this.notifier?.onCommitted(() => this.wake());
      this.unlisten ??= await this.database.listen(REVOCATION_CHANNEL, (payload) => payload.startsWith(HEARTBEAT_PREFIX) || this.wake());
      // Every hole below the newest entry written before the settle window has settled.
      this.position = this.maxSeen = await this.store.newestOlderThan(SETTLE_SECONDS);
      this.found.clear();
      this.timer = setInterval(() => this.wake(), this.options.pollMs);
      this.timer.unref?.();
    })().catch((error) => {
      this.starting = undefined;
      throw error;
    });
    return this.starting;
  }

  /** Nobody is subscribed: stop polling; the next subscriber starts afresh. */
  private idle(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.starting = undefined;
  }

  private wake(): void {
    if (this.listeners === 0 || !this.timer) return;
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    this.polling = this.poll()
      .catch((error) => this.log.warn("revocation_feed.poll_failed", { error: errorForLog(error) }))
      .finally(() => {
        this.polling = undefined;
        if (this.pollAgain) {
          this.pollAgain = false;
          this.wake();
        }
      });
  }

  /** Reads what is new (above everything seen, or in a hole) and hands it to the subscribers. */
  private async poll(): Promise<void> {
    for (;;) {
      const holes: number[] = [];
      for (let cursor = this.position + 1; cursor < this.maxSeen && holes.length < 500; cursor++) {
        if (!this.found.has(cursor)) holes.push(cursor);
      }
      const rows = this.rows(await this.store.afterOrAt(this.maxSeen, holes, MAX_PAGE));
      const fresh = rows.filter((row) => row.entry.cursor > this.position && !this.found.has(row.entry.cursor));
      for (const row of fresh) {
        this.found.set(row.entry.cursor, row);
        this.maxSeen = Math.max(this.maxSeen, row.entry.cursor);
      }
      this.advance();
      this.deliver(fresh);
      if (fresh.length > 0) for (const watcher of this.watchers) watcher();
      if (rows.length < MAX_PAGE) return;
    }
  }

  /** Moves the position over what was found, then forgets the rows at or below it. */
  private advance(): void {
    const rows = [...this.found.values()].sort((a, b) => a.entry.cursor - b.entry.cursor);
    this.position = new Scan(this.position, undefined).add(rows, Date.now()).position;
    for (const cursor of this.found.keys()) if (cursor <= this.position) this.found.delete(cursor);
  }

  private deliver(rows: FeedRow[]): void {
    for (const subscriber of this.subscribers) {
      const events = rows
        .filter((row) => row.live && row.entry.cursor > subscriber.after && (!subscriber.kind || row.kind === subscriber.kind))
        .map((row) => ({ entry: row.entry, resume: Math.min(row.entry.cursor, this.position) }));
      if (events.length === 0) continue;
      if (!subscriber.sink) {
        subscriber.pending.push(...events);
        continue;
      }
      try {
        subscriber.sink.events(events);
      } catch {
        subscriber.sink.close();
      }
    }
  }
}
