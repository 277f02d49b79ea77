// Push delivery (RFC 8935) of every enabled push stream, at least once and in order per stream:
// an instance leases a stream (several instances share the work: one delivers a stream at a
// time, SKIP LOCKED), reads its entries of the committed event log, POSTs each SET and settles
// it once the receiver accepted it; a failure leaves the stream where it was and retries with
// exponential backoff. Nothing here is on a request's path: a revocation only writes its log
// entries. Delivery yields to the server's own requests when it is busy, and catches up after.
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
export const PUSH_TIMEOUT_MS = 5000;
const MAX_BACKOFF_SECONDS = 300;
/**
 * How long a lease lasts without renewal: how long the streams of an instance that died wait
 * before another instance (or the same one, restarted, on PostgreSQL) takes them over. It is
 * renewed every third of that while a stream is being delivered.
 */
export const LEASE_SECONDS = 10;
/** Requests in flight at which the server counts as busy, and how long delivery then waits between SETs. */
const BUSY_REQUESTS = 8;
const BUSY_PAUSE_MS = 10;
/** Looks for streams to take at most this often (each look is a statement); a stream being delivered reads on by itself. */
const MIN_TICK_MS = 20;

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
  private timer: ReturnType<typeof setInterval> | undefined;
  private unwatch: (() => void) | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private lastTick = 0;
  private delayed: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly deps: PushDeps) {}

  start(): void {
    this.unwatch = this.deps.watch(() => this.kick());
    this.timer = setInterval(() => this.kick(), this.deps.intervalMs ?? 1000);
    this.timer.unref?.();
    if (this.deps.exclusive) {
      this.ticking = this.deps.store
        .releaseAllLeases()
        .catch((error) => this.deps.log.warn("ssf.push.claim_failed", { error: errorForLog(error) }))
        .finally(() => {
          this.ticking = undefined;
          this.kick();
        });
      return;
    }
    this.kick();
  }

  /** Stops taking streams and waits for the deliveries under way (their leases are given back). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.delayed);
    this.unwatch?.();
    await this.ticking;
    await Promise.allSettled([...this.running.values()]);
  }

  /** Something may be deliverable: look now, or as soon as the last look is MIN_TICK_MS old (coalesced). */
  kick(): void {
    if (this.stopped) return;
    if (this.ticking || this.delayed) {
      this.again = true;
      return;
    }
    const wait = this.lastTick + MIN_TICK_MS - Date.now();
    if (wait > 0) {
      this.delayed = setTimeout(() => {
        this.delayed = undefined;
        this.kick();
      }, wait);
      return;
    }
    this.lastTick = Date.now();
    this.ticking = this.tick()
      .catch((error) => this.deps.log.warn("ssf.push.claim_failed", { error: errorForLog(error) }))
      .finally(() => {
        this.ticking = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async tick(): Promise<void> {
    const streams = await this.deps.store.claim(this.owner, 16, LEASE_SECONDS, [...this.running.keys()]);
    for (const stream of streams) {
      const run = this.deliver(stream).finally(() => {
        this.running.delete(stream.id);
        // It may have stopped at a batch's end with more to read.
        this.kick();
      });
      this.running.set(stream.id, run);
    }
  }

  /** Delivers what the stream has, in order, until it is empty, fails, or this instance stops. */
  private async deliver(stream: ClaimedStream): Promise<void> {
    const { store, reader, log, metrics } = this.deps;
    let position = stream.position;
    let renewedAt = Date.now();
    try {
      for (;;) {
        const before = position;
        const reading = await reader.read({ id: stream.id, audience: stream.audience, eventsDelivered: stream.eventsDelivered, position, status: stream.status });
        const settled = new Set<number>(reading.silent);
        let failure: string | undefined;
        for (const delivery of reading.deliveries) {
          if (this.stopped) break;
          // A long batch (a slow receiver) renews the lease, saving what is delivered so far.
          if (Date.now() - renewedAt > (LEASE_SECONDS * 1000) / 3) {
            const next = advance(position, reading.entries, settled);
            if (!(await store.settle(stream.id, [...settled], next, this.owner, LEASE_SECONDS))) return; // the lease was lost
            position = next;
            renewedAt = Date.now();
          }
          // Delivery is background work: while the server is busy answering, it goes slower.
          if (metrics.requestsInFlight.value >= BUSY_REQUESTS) await Bun.sleep(BUSY_PAUSE_MS);
          const pushed = await this.push(stream, delivery.set);
          if (pushed.outcome === "retry") {
            failure = pushed.error;
            break;
          }
          metrics.ssfDeliveries.inc({ method: "push", result: pushed.outcome });
          if (pushed.outcome === "rejected") log.warn("ssf.push.rejected", { stream_id: stream.id, jti: delivery.jti, error: pushed.error });
          for (const cursor of delivery.cursors) settled.add(cursor);
        }
        const next = advance(position, reading.entries, settled);
        if (settled.size > 0 || next > position) {
          if (!(await store.settle(stream.id, [...settled], next, this.owner, LEASE_SECONDS))) return; // the lease was lost
          position = next;
          renewedAt = Date.now();
        }
        if (failure !== undefined) {
          metrics.ssfDeliveries.inc({ method: "push", result: "failed" });
          const retryIn = backoffSeconds(stream.failures + 1);
          log.warn("ssf.push.failed", { stream_id: stream.id, failures: stream.failures + 1, retry_in_seconds: retryIn, error: failure });
          await store.release(stream.id, this.owner, { retryInSeconds: retryIn, error: failure });
          return;
        }
        if (this.stopped || (settled.size === 0 && position === before)) break;
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
        maxBytes: 16 * 1024,
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
