// The storage port of Shared Signals (SSF 1.0): streams, the subjects receivers removed, the
// event log read for a stream (with what a token entry's session says, when the entry does not),
// and a stream's progress — its position plus the events settled above it — moved only by the
// instance holding its delivery lease (push) or by its receiver's acknowledgements (poll).
import { and, asc, count, eq, lte, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { SsfStream } from "../schema.ts";
import { revocationEvents, ssfAcks, ssfExcludedSubjects, ssfStreams } from "../schema.ts";

export type { SsfStream };
export type NewStreamRow = Omit<typeof ssfStreams.$inferInsert, "position">;
export type StreamStatus = SsfStream["status"];

/** One entry of the event log as a stream reads it. */
export interface LogEntry {
  cursor: number;
  /** A revoked token's kind, or null for another event. */
  tokenKind: string | null;
  event: string | null;
  reason: string | null;
  /** NumericDate (seconds) of the change. */
  at: number;
  /** Seconds since it was written, by the database clock (holes below it settle after a while). */
  age: number;
  subject: string | null;
  clientId: string | null;
  familyId: string | null;
  /** Whether the token's family had a grant (a user's), or was a client's own (client_credentials). */
  hasGrant: boolean;
  streamId: string | null;
  detail: Record<string, unknown> | null;
  txn: string | null;
}

/**
 * A log entry with whether it is settled for the stream reading it already, and when the
 * stream's configuration last changed (ms; null once the stream is deleted), as of the read.
 */
export type StreamEntry = LogEntry & { settled: boolean; streamUpdatedAt: number | null };

/** What push delivery needs of a stream it leased. */
export interface ClaimedStream {
  id: string;
  clientId: string;
  audience: string;
  status: StreamStatus;
  eventsDelivered: string[];
  endpointUrl: string;
  authorizationHeader: string | null;
  position: number;
  failures: number;
  /** When its configuration last changed (ms): a delivery that sees another value takes it again. */
  updatedAt: number;
}

export class SsfStore {
  constructor(private readonly database: Database) {}

  /**
   * A new stream, positioned after every event logged so far (it receives what happens next);
   * with `backlog`, before the oldest entry of a token still valid, and before every entry
   * whose transaction may not have settled yet (SETTLE_SECONDS): it first receives every
   * revocation still in force.
   */
  async create(row: NewStreamRow, options: { backlog?: { settleSeconds: number } } = {}): Promise<SsfStream> {
    const newest = sql`(select coalesce(max(${revocationEvents.cursor}), 0) from ${revocationEvents})`;
    const position = options.backlog
      ? sql`least(
          (select coalesce(min(${revocationEvents.cursor}) - 1, ${newest}) from ${revocationEvents}
            where ${revocationEvents.tokenKind} is not null and ${revocationEvents.expiresAt} > now()),
          (select coalesce(max(${revocationEvents.cursor}), 0) from ${revocationEvents}
            where ${revocationEvents.revokedAt} < now() - make_interval(secs => ${options.backlog.settleSeconds})))`
      : newest;
    const [stream] = await this.database.db.insert(ssfStreams).values({ ...row, position }).returning();
    return stream!;
  }

  /** A receiver's stream (another receiver's is as absent as a stream that does not exist). */
  async find(streamId: string, clientId?: string): Promise<SsfStream | undefined> {
    if (!UUID.test(streamId)) return undefined;
    const [stream] = await this.database.db
      .select()
      .from(ssfStreams)
      .where(and(eq(ssfStreams.id, streamId), clientId === undefined ? undefined : eq(ssfStreams.clientId, clientId)));
    return stream;
  }

  /** A receiver's streams, oldest first; every stream without one. */
  list(clientId?: string): Promise<SsfStream[]> {
    return this.database.db
      .select()
      .from(ssfStreams)
      .where(clientId === undefined ? undefined : eq(ssfStreams.clientId, clientId))
      .orderBy(asc(ssfStreams.createdAt), asc(ssfStreams.id));
  }

  async countFor(clientId: string): Promise<number> {
    const [row] = await this.database.db.select({ n: count() }).from(ssfStreams).where(eq(ssfStreams.clientId, clientId));
    return Number(row?.n ?? 0);
  }

  async update(streamId: string, clientId: string, values: Partial<NewStreamRow>): Promise<SsfStream | undefined> {
    const [stream] = await this.database.db
      .update(ssfStreams)
      .set({ ...values, updatedAt: sql`now()` })
      .where(and(eq(ssfStreams.id, streamId), eq(ssfStreams.clientId, clientId)))
      .returning();
    return stream;
  }

  async delete(streamId: string, clientId: string): Promise<boolean> {
    const deleted = await this.database.db
      .delete(ssfStreams)
      .where(and(eq(ssfStreams.id, streamId), eq(ssfStreams.clientId, clientId)))
      .returning({ id: ssfStreams.id });
    return deleted.length > 0;
  }

  /**
   * Changes a stream's status (SSF 1.0 §8.1.2). A disabled stream "will not hold any events":
   * disabling it, and enabling or pausing it again, moves it past everything logged so far.
   * With `announce`, a stream-updated event for it is logged in the same transaction (the
   * transmitter changed it: §8.1.5, sent before it stops).
   */
  setStatus(
    streamId: string,
    status: StreamStatus,
    reason: string | null,
    options: { clientId?: string; announce?: { retention: number } } = {},
  ): Promise<SsfStream | undefined> {
    return this.database.db.transaction(async (tx) => {
      const [current] = await tx
        .select()
        .from(ssfStreams)
        .where(and(eq(ssfStreams.id, streamId), options.clientId === undefined ? undefined : eq(ssfStreams.clientId, options.clientId)))
        .for("update");
      if (!current) return undefined;
      if (options.announce && current.status !== status) {
        await tx.insert(revocationEvents).values({
          event: "stream-updated",
          streamId,
          reason,
          detail: { status },
          expiresAt: sql`now() + make_interval(secs => ${options.announce.retention})`,
        });
      }
      const skip = status === "disabled" || current.status === "disabled";
      if (skip) await tx.delete(ssfAcks).where(eq(ssfAcks.streamId, streamId));
      const [stream] = await tx
        .update(ssfStreams)
        .set({
          status,
          statusReason: reason,
          updatedAt: sql`now()`,
          failures: 0,
          nextAttemptAt: sql`now()`,
          // The announcement is the last thing a stream being disabled still receives.
          ...(skip && !(options.announce && status === "disabled")
            ? { position: sql`(select coalesce(max(${revocationEvents.cursor}), 0) from ${revocationEvents})` }
            : {}),
        })
        .where(eq(ssfStreams.id, streamId))
        .returning();
      return stream;
    });
  }

  /** Logs a verification event for the stream (SSF 1.0 §8.1.4); false if asked sooner than `minInterval` seconds after the last. */
  verify(streamId: string, state: string | undefined, minInterval: number, retention: number): Promise<boolean> {
    return this.database.db.transaction(async (tx) => {
      const [stream] = await tx
        .update(ssfStreams)
        .set({ lastVerificationAt: sql`now()` })
        .where(
          and(
            eq(ssfStreams.id, streamId),
            sql`(${ssfStreams.lastVerificationAt} is null or ${ssfStreams.lastVerificationAt} <= now() - make_interval(secs => ${minInterval}))`,
          ),
        )
        .returning({ id: ssfStreams.id });
      if (!stream) return false;
      await tx.insert(revocationEvents).values({
        event: "verification",
        streamId,
        detail: state === undefined ? {} : { state },
        expiresAt: sql`now() + make_interval(secs => ${retention})`,
      });
      return true;
    });
  }

  // ---- subjects (SSF 1.0 §8.1.3; every subject is in a stream unless its receiver removed it)

  async excludedSubjects(streamId: string): Promise<Array<Record<string, unknown>>> {
    const rows = await this.database.db.select({ subject: ssfExcludedSubjects.subject }).from(ssfExcludedSubjects).where(eq(ssfExcludedSubjects.streamId, streamId));
    return rows.map((row) => row.subject);
  }

  /** Removes a subject from a stream (it is excluded); false past `limit` excluded subjects. */
  async excludeSubject(streamId: string, key: string, subject: Record<string, unknown>, limit: number): Promise<boolean> {
    const [row] = await this.database.db.select({ n: count() }).from(ssfExcludedSubjects).where(eq(ssfExcludedSubjects.streamId, streamId));
    if (Number(row?.n ?? 0) >= limit) return false;
    await this.database.db.insert(ssfExcludedSubjects).values({ streamId, subjectKey: key, subject }).onConflictDoNothing();
    return true;
  }

  /** Adds a subject (back) to a stream. */
  async includeSubject(streamId: string, key: string): Promise<void> {
    await this.database.db.delete(ssfExcludedSubjects).where(and(eq(ssfExcludedSubjects.streamId, streamId), eq(ssfExcludedSubjects.subjectKey, key)));
  }

  // ---- the log, as a stream reads it

  /** Log entries above `position`, oldest first, each saying whether it is settled for the stream. */
  async entries(streamId: string, position: number, limit: number): Promise<StreamEntry[]> {
    const rows = await this.database.rows<{
      cursor: string | number;
      token_kind: string | null;
      event: string | null;
      reason: string | null;
      at: number;
      age: number;
      subject: string | null;
      client_id: string | null;
      family_id: string | null;
      has_grant: boolean;
      stream_id: string | null;
      detail: Record<string, unknown> | null;
      txn: string | null;
      settled: boolean;
      stream_updated_at: number | null;
    }>(sql`
      select e.cursor, e.token_kind, e.event, e.reason,
             floor(extract(epoch from e.revoked_at))::float8 as at,
             extract(epoch from now() - e.revoked_at)::float8 as age,
             coalesce(e.subject, s.subject) as subject, coalesce(e.client_id, s.client_id) as client_id,
             coalesce(e.family_id, s.grant_id, s.id, e.session_id) as family_id,
             (e.family_id is not null and e.family_id is distinct from e.session_id) or s.grant_id is not null as has_grant,
             e.stream_id, e.detail, e.txn,
             exists (select 1 from ${ssfAcks} a where a.stream_id = ${streamId}::uuid and a.cursor = e.cursor) as settled,
             (select ${UPDATED_MS} from ${ssfStreams} where ${ssfStreams.id} = ${streamId}::uuid) as stream_updated_at
        from ${revocationEvents} e
        left join sessions s on s.id = e.session_id
       where e.cursor > ${position}
       order by e.cursor
       limit ${limit}`);
    return rows.map((row) => ({
        cursor: Number(row.cursor),
        tokenKind: row.token_kind,
        event: row.event,
        reason: row.reason,
        at: Number(row.at),
        age: Number(row.age),
        subject: row.subject,
        clientId: row.client_id,
        familyId: row.family_id,
        hasGrant: row.has_grant,
        streamId: row.stream_id,
        detail: row.detail,
        txn: row.txn,
        settled: row.settled,
        streamUpdatedAt: row.stream_updated_at === null ? null : Number(row.stream_updated_at),
      }));
  }

  /**
   * Records entries settled for a stream and moves its position to `position` (never back),
   * forgetting what is at or below it. With `leaseOwner`, only while that instance holds the
   * lease (and the lease is extended). Answers when the stream's configuration last changed
   * (ms), or undefined when the stream is gone or the lease is not this instance's.
   */
  async settle(streamId: string, cursors: readonly number[], position: number, leaseOwner?: string, leaseSeconds = 30): Promise<number | undefined> {
    return this.database.db.transaction(async (tx) => {
      const [stream] = await tx
        .update(ssfStreams)
        .set({
          position: sql`greatest(${ssfStreams.position}, ${position})`,
          ...(leaseOwner ? { leaseUntil: sql`now() + make_interval(secs => ${leaseSeconds})`, failures: 0, lastError: null } : {}),
        })
        .where(and(eq(ssfStreams.id, streamId), leaseOwner ? eq(ssfStreams.leaseOwner, leaseOwner) : undefined))
        .returning({ position: ssfStreams.position, updatedAt: sql<number>`${UPDATED_MS}`.mapWith(Number) });
      if (!stream) return undefined;
      const above = cursors.filter((cursor) => cursor > stream.position);
      if (above.length > 0) await tx.insert(ssfAcks).values(above.map((cursor) => ({ streamId, cursor }))).onConflictDoNothing();
      await tx.delete(ssfAcks).where(and(eq(ssfAcks.streamId, streamId), lte(ssfAcks.cursor, stream.position)));
      return stream.updatedAt;
    });
  }

  // ---- push delivery leases (one instance delivers a stream at a time)

  /**
   * Takes up to `limit` push streams that are enabled (or hold an announcement of their own not
   * yet settled), due and leased by no other instance: this instance delivers them, and waits on
   * them idle.
   */
  async claim(owner: string, limit: number, leaseSeconds: number, exclude: readonly string[]): Promise<ClaimedStream[]> {
    const rows = await this.database.rows<Omit<ClaimedStream, "position" | "updatedAt"> & { position: number | string; updatedAt: number | string } & Record<string, unknown>>(sql`
      update ${ssfStreams} s set lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${leaseSeconds})
       where s.id in (
         select id from ${ssfStreams}
          where delivery_method = 'urn:ietf:rfc:8935' and next_attempt_at <= now()
            -- A stream not enabled still receives the stream-updated event that announced it (SSF 1.0 §8.1.5).
            and (status = 'enabled' or exists (
                   select 1 from ${revocationEvents} e
                    where e.stream_id = ${ssfStreams}.id and e.cursor > ${ssfStreams}.position
                      and not exists (select 1 from ${ssfAcks} a where a.stream_id = e.stream_id and a.cursor = e.cursor)))
            and (lease_until is null or lease_until < now() or lease_owner = ${owner})
            -- As one text: PGlite sends a one-element array parameter as a bare string.
            ${exclude.length > 0 ? sql`and not (id = any(string_to_array(${exclude.join(",")}, ',')::uuid[]))` : sql``}
          order by next_attempt_at
          limit ${limit}
          for update skip locked)
      returning s.id, s.client_id as "clientId", s.audience, s.status, s.events_delivered as "eventsDelivered", s.endpoint_url as "endpointUrl",
                s.authorization_header as "authorizationHeader", s.position, s.failures, floor(extract(epoch from s.updated_at) * 1000)::float8 as "updatedAt"`);
    return rows.map((row) => ({ ...row, position: Number(row.position), updatedAt: Number(row.updatedAt) }));
  }

  /** Gives a stream's lease back; after a failure, with when to try again. */
  async release(streamId: string, owner: string, failure?: { retryInSeconds: number; error: string }): Promise<void> {
    await this.database.db
      .update(ssfStreams)
      .set({
        leaseOwner: null,
        leaseUntil: null,
        ...(failure
          ? {
              failures: sql`${ssfStreams.failures} + 1`,
              lastError: failure.error.slice(0, 500),
              nextAttemptAt: sql`now() + make_interval(secs => ${failure.retryInSeconds})`,
            }
          : {}),
      })
      .where(and(eq(ssfStreams.id, streamId), eq(ssfStreams.leaseOwner, owner)));
  }

  /** Releases every lease (at the start of the only process that can use the database). */
  async releaseAllLeases(): Promise<void> {
    await this.database.db.update(ssfStreams).set({ leaseOwner: null, leaseUntil: null }).where(sql`${ssfStreams.leaseOwner} is not null`);
  }

  /** Per stream: log entries above its position, and the age of the oldest (seconds). */
  async backlog(): Promise<Array<{ streamId: string; status: StreamStatus; depth: number; lagSeconds: number }>> {
    const rows = await this.database.rows<{ id: string; status: StreamStatus; depth: number; lag: number | null }>(sql`
      select s.id, s.status,
             (select count(*) from ${revocationEvents} e where e.cursor > s.position)::int as depth,
             (select extract(epoch from now() - min(e.revoked_at))::float8 from ${revocationEvents} e where e.cursor > s.position) as lag
        from ${ssfStreams} s`);
    return rows.map((row) => ({ streamId: row.id, status: row.status, depth: Number(row.depth), lagSeconds: Number(row.lag ?? 0) }));
  }
}

/** A stream's updated_at in whole milliseconds, computed the same way wherever it is compared (claim writes it out for its alias). */
const UPDATED_MS = sql`floor(extract(epoch from ${ssfStreams.updatedAt}) * 1000)::float8`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
