// Poll delivery (RFC 8936): a receiver POSTs to its stream's poll URL what it acknowledges (ack)
// and what it found wrong (setErrs), and gets the SETs it has not acknowledged yet, oldest first,
// up to maxEvents — at once, or when one is logged (a long poll holding no database connection:
// it waits on this instance's commits and on the log's LISTEN), or empty after TA_SSF_LONG_POLL.
// A SET returned and not acknowledged is returned again by the next poll: at least once.
import type { SsfStore, SsfStream } from "../../db/stores/ssf.ts";
import type { Config } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { advance, cursorOfJti } from "./reader.ts";
import type { StreamReader } from "./reader.ts";
import { POLL } from "./streams.ts";

/** RFC 8936 §2.2. */
export interface PollRequest {
  maxEvents?: number;
  returnImmediately?: boolean;
  ack?: string[];
  setErrs?: Record<string, { err?: string; description?: string }>;
}

export interface PollDeps {
  store: SsfStore;
  reader: StreamReader;
  config: Pick<Config, "ssfLongPoll">;
  log: Logger;
  metrics: Pick<Metrics, "ssfDeliveries">;
  /** Resolves when log entries may have been written, or after `ms`, or when `signal` aborts. */
  wait(ms: number, signal: AbortSignal | undefined): Promise<void>;
}

/** Without maxEvents, at most this many SETs a poll (RFC 8936 leaves it to the transmitter). */
export const DEFAULT_MAX_EVENTS = 100;
export const MAX_EVENTS = 1000;

export class PollService {
  private readonly closing = new AbortController();

  constructor(private readonly deps: PollDeps) {}

  /** The server is stopping: long polls waiting now answer with what they have (nothing). */
  close(): void {
    this.closing.abort();
  }

  async poll(receiver: string, streamId: string, request: PollRequest, signal?: AbortSignal): Promise<{ sets: Record<string, string>; moreAvailable: boolean }> {
    const { store, reader, config, metrics, log } = this.deps;
    const stream = await store.find(streamId, receiver);
    if (!stream) throw new OAuthError("not_found", "no such stream");
    if (stream.deliveryMethod !== POLL) throw OAuthError.invalidRequest("this stream is delivered by push, not poll");
    const acknowledged = new Set<number>();
    for (const jti of request.ack ?? []) {
      const cursor = cursorOfJti(stream.id, jti);
      if (cursor !== undefined) acknowledged.add(cursor);
    }
    for (const [jti, error] of Object.entries(request.setErrs ?? {})) {
      const cursor = cursorOfJti(stream.id, jti);
      if (cursor === undefined) continue;
      // The receiver has it and cannot use it: sending it again would not help.
      acknowledged.add(cursor);
      metrics.ssfDeliveries.inc({ method: "poll", result: "error" });
      log.warn("ssf.poll.set_error", { stream_id: stream.id, jti, err: String(error?.err ?? "").slice(0, 64), description: String(error?.description ?? "").slice(0, 200) });
    }
    let position = stream.position;
    if (acknowledged.size > 0) {
      position = await this.settle(stream, position, acknowledged);
      metrics.ssfDeliveries.inc({ method: "poll", result: "acknowledged" }, acknowledged.size);
    }
    const maxEvents = Math.min(request.maxEvents ?? DEFAULT_MAX_EVENTS, MAX_EVENTS);
    // maxEvents 0 acknowledges only. (A paused or disabled stream transmits nothing but its own
    // announcements, SSF 1.0 §8.1.2: the reader holds the rest back.)
    if (maxEvents === 0) return { sets: {}, moreAvailable: false };
    const deadline = Date.now() + config.ssfLongPoll * 1000;
    for (;;) {
      const reading = await reader.read({ id: stream.id, audience: stream.audience, eventsDelivered: stream.eventsDelivered, position, status: stream.status }, 500, maxEvents);
      if (reading.silent.length > 0) position = await this.settle(stream, position, new Set(reading.silent), reading.entries);
      if (reading.deliveries.length > 0 || request.returnImmediately || Date.now() >= deadline || signal?.aborted || this.closing.signal.aborted) {
        metrics.ssfDeliveries.inc({ method: "poll", result: "returned" }, reading.deliveries.length);
        const sets = await Promise.all(reading.deliveries.map(async (d) => [d.jti, await d.sign()] as const));
        return { sets: Object.fromEntries(sets), moreAvailable: reading.more };
      }
      // Entries only this stream does not receive, or nothing: wait for the next (a long poll).
      if (reading.silent.length === 0 || !reading.more) {
        await this.deps.wait(Math.max(0, deadline - Date.now()), signal ? AbortSignal.any([signal, this.closing.signal]) : this.closing.signal);
      }
    }
  }

  /** Records settled entries and moves the stream's position over what is settled in order. */
  private async settle(stream: SsfStream, position: number, settled: ReadonlySet<number>, entries?: Awaited<ReturnType<StreamReader["read"]>>["entries"]): Promise<number> {
    const known = entries ?? (await this.deps.reader.read({ id: stream.id, audience: stream.audience, eventsDelivered: [], position, status: stream.status }, 500, 0)).entries;
    const next = advance(position, known, settled);
    await this.deps.store.settle(stream.id, [...settled], next);
    return next;
  }
}
