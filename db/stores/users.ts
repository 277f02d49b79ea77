// The storage port of the people who sign in (built-in accounts and users named by a trusted
// upstream header).
import { desc, eq, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { PageAfter } from "./paging.ts";
import { olderThan } from "./paging.ts";
import type { User } from "../schema.ts";
import { users } from "../schema.ts";

export type { User };

export class UserStore {
  constructor(private readonly database: Database) {}

  async findById(id: string): Promise<User | undefined> {
    const [user] = await this.database.db.select().from(users).where(eq(users.id, id)).limit(1);
    return user;
  }

  async findByUsername(username: string): Promise<User | undefined> {
    const [user] = await this.database.db.select().from(users).where(eq(users.username, username)).limit(1);
    return user;
  }

  /** Users, the newest first, `limit` at most, after the cursor of the previous page. */
  list(page: { limit: number; after?: PageAfter }): Promise<User[]> {
    const after = page.after && olderThan(users, sql`select u.created_at from users u where u.id = ${page.after.id}::uuid`, page.after);
    return this.database.db.select().from(users).where(after).orderBy(desc(users.createdAt), desc(users.id)).limit(page.limit);
  }

  async setDisabled(id: string, disabled: boolean): Promise<User | undefined> {
    const [user] = await this.database.db
      .update(users)
      .set({ disabledAt: disabled ? new Date() : null, updatedAt: new Date() })
      .where(eq(users.id, id))
      .returning();
    return user;
  }

  /**
   * Changes a user's profile: `change` gets the stored one, under a row lock (two operators'
   * patches do not lose each other), and answers the new one. Undefined when there is no user.
   */
  updateProfile(id: string, change: (current: Record<string, string | boolean>) => Record<string, string | boolean>): Promise<User | undefined> {
    return this.database.db.transaction(async (tx) => {
      const [current] = await tx.select({ profile: users.profile }).from(users).where(eq(users.id, id)).for("update");
      if (!current) return undefined;
      const [user] = await tx.update(users).set({ profile: change(current.profile), updatedAt: new Date() }).where(eq(users.id, id)).returning();
      return user;
    });
  }

  /** Inserts a user unless the username is taken; answers the new id, or undefined when taken. */
  async insert(username: string, passwordHash: string): Promise<string | undefined> {
    const [row] = await this.database.db.insert(users).values({ username, passwordHash }).onConflictDoNothing().returning({ id: users.id });
    return row?.id;
  }
}
