// Push delivery (RFC 8935) of every enabled push stream, at least once and in order per stream:
// an instance leases a stream (several instances share the work: one delivers a stream at a
// time, SKIP LOCKED) and keeps it, reading its entries of the committed event log when this
// instance commits some (or every second, for other instances' commits), POSTing each SET and
// settling it once the receiver accepted it; a failure leaves the stream where it was and
// retries with exponential backoff. Nothing here is on a request's path: a revocation only
// writes its log entries and wakes the deliveries waiting. Delivery yields to the server's own
// requests when it is busy, and catches up after.
import { randomUUID } from "node:crypto";
import type { ClaimedStream, SsfStore } from "../../db/stores/ssf.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Outbound } from "../outbound.ts";
import { OutboundError } from "../outbound.ts";
import { advance, StreamReader } from "./reader.ts";

/** RFC 8935 §2.4 error codes after which the same SET would only fail again: counted and passed over. */
const PERMANENT = new Set(["invalid_request", "invalid_audience", "invalid_issuer"]);
const PUSH_TIMEOUT_MS = 5000;
const MAX_BACKOFF_SECONDS = 300;
/**
 * How long a lease lasts without renewal: how long the streams of an instance that died wait
 * before another instance (or the same one, restarted, on PostgreSQL) takes them over. It is
 * renewed every third of that while a stream is being delivered.
 */
export const LEASE_SECONDS = 10;
/**
 * Requests in flight at which the server counts as busy, and the spacing of SETs then — across
 * every stream this instance delivers (at most 100 SETs a second in all while busy; the backlog
 * goes out at full speed once the load eases).
 */
const BUSY_REQUESTS = 8;
const BUSY_SPACING_MS = 10;

export interface PushDeps {
  store: SsfStore;
  reader: StreamReader;
  outbound: Outbound;
  log: Logger;
  metrics: Pick<Metrics, "ssfDeliveries" | "requestsInFlight">;
  /**
   * Calls a listener when this instance committed log entries. Entries committed by another
   * instance are found by that instance's own delivery, or by the periodic look.
   */
  watch(listener: () => void): () => void;
  /** The periodic look: other instances' entries, retries after failures, leases that expired. */
  intervalMs?: number;
  /**
   * No other instance can share the database (embedded PGlite, locked by this process): leases
   * left by an earlier process are stale at start, and are released.
   */
  exclusive?: boolean;
}

/** Seconds before the next attempt after `failures` failures in a row: 1, 2, 4, … 300, with jitter. */
export function backoffSeconds(failures: number): number {
  const base = Math.min(MAX_BACKOFF_SECONDS, 2 ** Math.max(0, failures - 1));
  return Math.max(1, Math.round(base * (0.75 + Math.random() * 0.5)));
}

export class PushDelivery {
  readonly owner = `instance-${randomUUID()}`;
  private readonly running = new Map<string, Promise<void>>();
  /** Deliveries waiting idle for entries, each woken by a commit or the periodic look. */
  private readonly idle = new Set<() => void>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private unwatch: (() => void) | undefined;
  private looking: Promise<void> | undefined;
  private again = false;
  /** Only a started instance delivers (a CLI command changing a stream must not take it). */
  private started = false;
  private stopped = false;
  /** Bumped when a stream changed here: every delivery takes its stream again, configured afresh. */
  private generation = 0;
  /** While the server is busy: when the next SET may go out (shared by every stream's delivery). */
  private nextBusySlot = 0;

  constructor(private readonly deps: PushDeps) {}

  start(): void {
    this.started = true;
    this.unwatch = this.deps.watch(() => this.wake());
    this.timer = setInterval(() => {
      this.wake();
      this.look();
    }, this.deps.intervalMs ?? 1000);
    this.timer.unref?.();
    if (this.deps.exclusive) {
      this.looking = this.deps.store
        .releaseAllLeases()
        .catch((error) => this.deps.log.warn("ssf.push.claim_failed", { error: errorForLog(error) }))
        .finally(() => {
          this.looking = undefined;
          this.look();
        });
      return;
    }
    this.look();
  }

  /** Stops taking streams and waits for the deliveries under way (their leases are given back). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.unwatch?.();
    this.wake();
    await this.looking;
    await Promise.allSettled([...this.running.values()]);
  }

  /** A stream was created or changed here: deliveries start again with what it is now. */
  changed(): void {
    this.generation++;
    this.wake();
    this.look();
  }

  /** Entries may have been logged: the deliveries waiting idle read again. */
  wake(): void {
    for (const resume of [...this.idle]) resume();
  }

  /** Takes the streams no instance delivers (one look at a time; a look asked for meanwhile follows it). */
  look(): void {
    if (!this.started || this.stopped) return;
    if (this.looking) {
      this.again = true;
      return;
    }
    this.looking = this.claim()
      .catch((error) => this.deps.log.warn("ssf.push.claim_failed", { error: errorForLog(error) }))
      .finally(() => {
        this.looking = undefined;
        if (this.again) {
          this.again = false;
          this.look();
        }
      });
  }

  private async claim(): Promise<void> {
    const streams = await this.deps.store.claim(this.owner, 64, LEASE_SECONDS, [...this.running.keys()]);
    for (const stream of streams) {
      const run = this.deliver(stream).finally(() => {
        this.running.delete(stream.id);
        // Released after a change, or for a status that holds nothing more: take what is due again.
        if (!this.stopped) this.look();
      });
      this.running.set(stream.id, run);
    }
  }

  /** Waits for this instance's next SET slot while the server is busy. */
  private busySlot(): Promise<void> {
    const now = Date.now();
    const at = Math.max(now, this.nextBusySlot);
    this.nextBusySlot = at + BUSY_SPACING_MS;
    return Bun.sleep(at - now);
  }

  /** Resolves on the next wake, after `ms`, or at stop. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const resume = () => {
        clearTimeout(timer);
        this.idle.delete(resume);
        resolve();
      };
      const timer = setTimeout(resume, ms);
      this.idle.add(resume);
      if (this.stopped) resume();
    });
  }

  /**
   * Delivers the stream, in order, for as long as this instance holds it: what is there, then
   * whatever is logged next (waiting idle between, the lease renewed every third of its time).
   * It gives the stream back when it fails (to retry after a backoff), when the stream changed
   * (here or at another instance: taken again, configured afresh), when the stream is not
   * enabled and its announcement went out, and when this instance stops.
   */
  private async deliver(stream: ClaimedStream): Promise<void> {
    const { store, reader, log, metrics } = this.deps;
    const generation = this.generation;
    const renewMs = (LEASE_SECONDS * 1000) / 3;
    let position = stream.position;
    let renewedAt = Date.now();
    /** Saves progress and renews the lease; false when the stream should be given back (gone, changed, lease lost). */
    const keep = async (settled: ReadonlySet<number>, next: number): Promise<boolean> => {
      const updatedAt = await store.settle(stream.id, [...settled], next, this.owner, LEASE_SECONDS);
      if (updatedAt === undefined) return false;
      position = Math.max(position, next);
      renewedAt = Date.now();
      return updatedAt === stream.updatedAt;
    };
    try {
      for (;;) {
        if (this.stopped || this.generation !== generation) break;
        const before = position;
        const reading = await reader.read({ id: stream.id, audience: stream.audience, eventsDelivered: stream.eventsDelivered, position, status: stream.status });
        // Deleted or changed since it was taken (here or at another instance): nothing goes out as it was.
        if (reading.entries.length > 0 && reading.streamUpdatedAt !== stream.updatedAt) break;
        const settled = new Set<number>(reading.silent);
        let failure: string | undefined;
        let kept = true;
        for (const delivery of reading.deliveries) {
          if (this.stopped || this.generation !== generation) break;
          // A long batch (a slow receiver) renews the lease, saving what is delivered so far.
          if (Date.now() - renewedAt > renewMs && !(kept = await keep(settled, advance(position, reading.entries, settled)))) break;
          // Delivery is background work: while the server is busy answering, it goes slower.
          if (metrics.requestsInFlight.value >= BUSY_REQUESTS) await this.busySlot();
          const pushed = await this.push(stream, await delivery.sign());
          if (pushed.outcome === "retry") {
            failure = pushed.error;
            break;
          }
          metrics.ssfDeliveries.inc({ method: "push", result: pushed.outcome });
          if (pushed.outcome === "rejected") log.warn("ssf.push.rejected", { stream_id: stream.id, jti: delivery.jti, error: pushed.error });
          for (const cursor of delivery.cursors) settled.add(cursor);
        }
        const next = advance(position, reading.entries, settled);
        if (kept && (settled.size > 0 || next > position)) kept = await keep(settled, next);
        if (failure !== undefined) {
          metrics.ssfDeliveries.inc({ method: "push", result: "failed" });
          const retryIn = backoffSeconds(stream.failures + 1);
          log.warn("ssf.push.failed", { stream_id: stream.id, failures: stream.failures + 1, retry_in_seconds: retryIn, error: failure });
          await store.release(stream.id, this.owner, { retryInSeconds: retryIn, error: failure });
          return;
        }
        if (!kept) break;
        if (reading.deliveries.length > 0 || settled.size > 0 || position > before) continue; // more may be waiting
        // Nothing to deliver. A paused or disabled stream was taken for its announcement only.
        if (stream.status !== "enabled") break;
        if (Date.now() - renewedAt > renewMs && !(await keep(settled, position))) break;
        await this.pause(Math.max(0, renewMs - (Date.now() - renewedAt)));
      }
      await store.release(stream.id, this.owner);
    } catch (error) {
      log.warn("ssf.push.error", { stream_id: stream.id, error: errorForLog(error) });
      await store.release(stream.id, this.owner, { retryInSeconds: backoffSeconds(stream.failures + 1), error: String(error) }).catch(() => {});
    }
  }

  /** One POST (RFC 8935 §2): delivered (202, or any 2xx), rejected for good (400 with a permanent err), or to retry. */
  private async push(stream: ClaimedStream, set: string): Promise<{ outcome: "delivered" | "rejected" | "retry"; error?: string }> {
    try {
      const response = await this.deps.outbound.fetch("ssf_push", stream.endpointUrl, {
        method: "POST",
        headers: {
          "content-type": "application/secevent+jwt",
          accept: "application/json",
          // SSF 1.0 §6.1.1: "the Transmitter MUST provide this value with every HTTP request".
          ...(stream.authorizationHeader ? { authorization: stream.authorizationHeader } : {}),
        },
        body: set,
        timeoutMs: PUSH_TIMEOUT_MS,
        // Only a 400's error code is read: a receiver's long answer is cut, not a failure.
        maxBytes: 16 * 1024,
        truncate: true,
        maxRedirects: 0,
      });
      if (response.status >= 200 && response.status < 300) return { outcome: "delivered" };
      const err = response.status === 400 ? errorCode(response.body) : undefined;
      const error = `HTTP ${response.status}${err ? ` ${err}` : ""}`;
      return { outcome: err !== undefined && PERMANENT.has(err) ? "rejected" : "retry", error };
    } catch (error) {
      return { outcome: "retry", error: error instanceof OutboundError ? error.message : String(error) };
    }
  }
}

/** RFC 8935 §2.3: a 400's body is {"err": "...", "description": "..."}. */
function errorCode(body: Uint8Array): string | undefined {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(body)) as { err?: unknown };
    return typeof parsed.err === "string" ? parsed.err.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}
