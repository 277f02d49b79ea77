// The storage port of the revocation feed: the committed rows of revocation_events, read in
// cursor order (written by the revoking statements themselves, never by a second write).
import type { SQL } from "drizzle-orm";
import { asc, desc, gt, inArray, lt, or, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { TokenKind } from "../schema.ts";
import { revocationEvents } from "../schema.ts";

export interface RevocationEventRow {
  cursor: number;
  /** Null for an entry that names no token (an account or stream event). */
  jti: string | null;
  kind: TokenKind | null;
  /** NumericDates (seconds). */
  exp: number;
  revokedAt: number;
  /** Not yet expired, by the database clock. */
  live: boolean;
  /** Seconds since the row was written, by the database clock. */
  age: number;
  /** Why the token ended (user_disabled, key_revoked, …); null for entries written before migration 0009. */
  reason: string | null;
}

export class RevocationEventStore {
  constructor(private readonly database: Database) {}

  /** Rows after `cursor` (expired ones too), oldest first. */
  after(cursor: number, limit: number): Promise<RevocationEventRow[]> {
    return this.read(gt(revocationEvents.cursor, cursor), limit);
  }

  /** Rows after `cursor` or at one of `cursors` (holes below it), oldest first. */
  afterOrAt(cursor: number, cursors: readonly number[], limit: number): Promise<RevocationEventRow[]> {
    const above = gt(revocationEvents.cursor, cursor);
    return this.read(cursors.length > 0 ? or(above, inArray(revocationEvents.cursor, [...cursors]))! : above, limit);
  }

  /** The newest cursor written more than `seconds` ago (0 if none). */
  async newestOlderThan(seconds: number): Promise<number> {
    const [row] = await this.database.db
      .select({ cursor: revocationEvents.cursor })
      .from(revocationEvents)
      .where(lt(revocationEvents.revokedAt, sql`now() - make_interval(secs => ${seconds})`))
      .orderBy(desc(revocationEvents.cursor))
      .limit(1);
    return Number(row?.cursor ?? 0);
  }

  private async read(where: SQL, limit: number): Promise<RevocationEventRow[]> {
    const rows = await this.database.db
      .select({
        cursor: revocationEvents.cursor,
        jti: revocationEvents.jti,
        kind: revocationEvents.tokenKind,
        exp: sql<number>`floor(extract(epoch from ${revocationEvents.expiresAt}))::float8`.mapWith(Number),
        revokedAt: sql<number>`floor(extract(epoch from ${revocationEvents.revokedAt}))::float8`.mapWith(Number),
        live: sql<boolean>`${revocationEvents.expiresAt} > now()`,
        age: sql<number>`extract(epoch from now() - ${revocationEvents.revokedAt})::float8`.mapWith(Number),
        reason: revocationEvents.reason,
      })
      .from(revocationEvents)
      .where(where)
      .orderBy(asc(revocationEvents.cursor))
      .limit(limit);
    return rows.map((row) => ({ ...row, cursor: Number(row.cursor), kind: row.kind as TokenKind | null }));
  }
}
