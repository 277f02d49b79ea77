// The storage port of signed-in browsers: a row per sign-in, found by the SHA-256 of the cookie's
// random token, live while not ended, not expired and its user not disabled.
import { and, desc, eq, gt, isNull, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { BrowserSessionRow, User } from "../schema.ts";
import { browserSessions, users } from "../schema.ts";

export type { BrowserSessionRow };

export class BrowserSessionStore {
  constructor(private readonly database: Database) {}

  async insert(row: { tokenHash: string; userId: string; userAgent: string | null; ttlSeconds: number }): Promise<BrowserSessionRow> {
    const [created] = await this.database.db
      .insert(browserSessions)
      .values({ tokenHash: row.tokenHash, userId: row.userId, userAgent: row.userAgent, expiresAt: sql`now() + make_interval(secs => ${row.ttlSeconds})` })
      .returning();
    return created!;
  }

  /**
   * The live session a cookie's token hash names, with its user — not ended, not expired, the
   * user not disabled — and its last sight moved on (at most once a minute, to spare writes).
   */
  async findLive(tokenHash: string): Promise<{ session: BrowserSessionRow; user: User } | undefined> {
    const [row] = await this.database.db
      .select({ session: browserSessions, user: users })
      .from(browserSessions)
      .innerJoin(users, eq(users.id, browserSessions.userId))
      .where(and(eq(browserSessions.tokenHash, tokenHash), isNull(browserSessions.endedAt), gt(browserSessions.expiresAt, sql`now()`), isNull(users.disabledAt)))
      .limit(1);
    if (!row) return undefined;
    if (Date.now() - row.session.lastSeenAt.getTime() > 60_000) {
      await this.database.db.update(browserSessions).set({ lastSeenAt: sql`now()` }).where(eq(browserSessions.id, row.session.id));
    }
    return row;
  }

  /** A user's live sessions, the newest first. */
  live(userId: string): Promise<BrowserSessionRow[]> {
    return this.database.db
      .select()
      .from(browserSessions)
      .where(and(eq(browserSessions.userId, userId), isNull(browserSessions.endedAt), gt(browserSessions.expiresAt, sql`now()`)))
      .orderBy(desc(browserSessions.createdAt));
  }

  /** The user proved who they are again in a live session of theirs: its auth_time moves on. */
  async reauthenticated(id: string, userId: string): Promise<boolean> {
    const moved = await this.database.db
      .update(browserSessions)
      .set({ authenticatedAt: sql`now()`, lastSeenAt: sql`now()` })
      .where(and(eq(browserSessions.id, id), eq(browserSessions.userId, userId), isNull(browserSessions.endedAt)))
      .returning({ id: browserSessions.id });
    return moved.length > 0;
  }

  /** Ends one session (of `userId`, when given); answers whether it was live. */
  async end(id: string, reason: string, userId?: string): Promise<boolean> {
    const ended = await this.database.db
      .update(browserSessions)
      .set({ endedAt: sql`now()`, endReason: reason })
      .where(and(eq(browserSessions.id, id), isNull(browserSessions.endedAt), userId === undefined ? undefined : eq(browserSessions.userId, userId)))
      .returning({ id: browserSessions.id });
    return ended.length > 0;
  }
}
