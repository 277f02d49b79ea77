// Reads a stream's part of the event log: the entries above its position not yet settled for it,
// turned into the Security Event Tokens this stream receives — filtered by the events it is
// delivered, the subjects its receiver removed and the stream an event is for — and how far its
// position may move once some of them are settled. The position never passes a hole that may
// still fill (a transaction that took a lower cursor and has not committed yet, see
// src/oauth/revocation-feed.ts), but what is committed above it is delivered meanwhile: an event
// whose transaction commits after a later one goes out when it commits, and nothing waits on a
// hole a rolled-back transaction left.
import { CompactSign } from "jose";
import type { LogEntry, SsfStore } from "../../db/stores/ssf.ts";
import type { KeyStore } from "../oauth/keys.ts";
import { SETTLE_SECONDS } from "../oauth/revocation-feed.ts";
import type { Signal, Subject } from "./events.ts";
import { signalsOf, subjectMatches } from "./events.ts";

/** A SET for one stream, signed when it is about to go out. */
export interface Delivery {
  jti: string;
  /** The compact JWS (RFC 8417, typ secevent+jwt). */
  sign(): Promise<string>;
  /** The log entries it stands for: settled once it is delivered (push) or acknowledged (poll). */
  cursors: number[];
}

export interface StreamView {
  id: string;
  audience: string;
  eventsDelivered: readonly string[];
  position: number;
  /** Paused or disabled: only the stream's own announcements go out; everything else waits. */
  status: "enabled" | "paused" | "disabled";
}

export interface Reading {
  deliveries: Delivery[];
  /** Entries in reach that this stream does not receive: settled at once. */
  silent: number[];
  /** Every entry read (ascending), to move the position over what is settled. */
  entries: Array<Pick<LogEntry, "cursor" | "age"> & { settled: boolean }>;
  /** The read was a full batch: there is more above. */
  more: boolean;
  /** When the stream's configuration last changed (ms), as of this read; null if it is gone; undefined if nothing was read. */
  streamUpdatedAt: number | null | undefined;
}

/** A SET's jti: the stream and the first entry it stands for (stable across retries and polls). */
export const jtiOf = (streamId: string, cursor: number) => `${streamId}.${cursor}`;

/** The cursor a jti of this stream names, or undefined for anything else. */
export function cursorOfJti(streamId: string, jti: unknown): number | undefined {
  if (typeof jti !== "string" || !jti.startsWith(`${streamId}.`)) return undefined;
  const cursor = Number(jti.slice(streamId.length + 1));
  return Number.isSafeInteger(cursor) && cursor > 0 ? cursor : undefined;
}

/**
 * The position a stream may move to: over each entry that is settled and either follows it
 * directly or sits above a hole old enough to have settled; it stops at the first that is not.
 */
export function advance(position: number, entries: Reading["entries"], settled: ReadonlySet<number>): number {
  for (const entry of entries) {
    if (entry.cursor <= position) continue;
    if (entry.cursor !== position + 1 && entry.age < SETTLE_SECONDS) break;
    if (!entry.settled && !settled.has(entry.cursor)) break;
    position = entry.cursor;
  }
  return position;
}

export class StreamReader {
  constructor(
    private readonly store: SsfStore,
    private readonly keys: KeyStore,
    private readonly issuer: string,
    private readonly excludedSubjects: (streamId: string) => Promise<Subject[]>,
    private readonly now: () => number = Date.now,
  ) {}

  /** At most `maxDeliveries` SETs are made; `more` says whether there were others. */
  async read(stream: StreamView, limit = 500, maxDeliveries = Number.POSITIVE_INFINITY): Promise<Reading> {
    const rows = await this.store.entries(stream.id, stream.position, limit);
    const { signals, silent } = signalsOf(rows.filter((row) => !row.settled), this.issuer);
    const excluded = signals.length > 0 ? await this.excludedSubjects(stream.id) : [];
    const deliveries: Delivery[] = [];
    let more = rows.length >= limit;
    for (const signal of signals) {
      if (deliveries.length >= maxDeliveries) {
        more = true;
        break;
      }
      // SSF 1.0 §8.1.2: a paused stream holds its events (a disabled one dropped them already).
      if (stream.status !== "enabled" && signal.streamId !== stream.id) continue;
      if (!this.receives(stream, signal, excluded)) {
        silent.push(...signal.cursors);
        continue;
      }
      deliveries.push({ jti: jtiOf(stream.id, signal.cursors[0]!), sign: () => this.sign(stream, signal), cursors: signal.cursors });
    }
    return { deliveries, silent, entries: rows.map(({ cursor, age, settled }) => ({ cursor, age, settled })), more, streamUpdatedAt: rows[0]?.streamUpdatedAt };
  }

  private receives(stream: StreamView, signal: Signal, excluded: readonly Subject[]): boolean {
    // Events for one stream go to that stream only, delivered or not (SSF 1.0 §8.1.4, §8.1.5).
    if (signal.streamId !== null) return signal.streamId === stream.id;
    if (!stream.eventsDelivered.includes(signal.type)) return false;
    return !excluded.some((subject) => subjectMatches(subject, signal.subject));
  }

  /** RFC 8417 with SSF 1.0 §4.1: typ secevent+jwt, top-level sub_id, no sub and no exp, one event. */
  private async sign(stream: StreamView, signal: Signal): Promise<string> {
    const { kid, alg, key } = this.keys.signingKey();
    const claims = {
      iss: this.issuer,
      jti: jtiOf(stream.id, signal.cursors[0]!),
      iat: Math.floor(this.now() / 1000),
      aud: stream.audience,
      ...(signal.txn ? { txn: signal.txn } : {}),
      sub_id: signal.subject,
      events: { [signal.type]: signal.event },
    };
    return new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg, kid, typ: "secevent+jwt" }).sign(key);
  }
}
