// The storage port of the people who sign in (built-in accounts and users named by a trusted
// upstream header).
import { eq } from "drizzle-orm";
import type { Database } from "../client.ts";
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

  /** Inserts a user unless the username is taken; answers the new id, or undefined when taken. */
  async insert(username: string, passwordHash: string): Promise<string | undefined> {
    const [row] = await this.database.db.insert(users).values({ username, passwordHash }).onConflictDoNothing().returning({ id: users.id });
    return row?.id;
  }
}
