// The storage port of registered clients, with a short read-through cache in process: client
// authentication must not cost a round trip on the hot path.
import { desc, eq, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { PageAfter } from "./paging.ts";
import { olderThan } from "./paging.ts";
import type { Client } from "../schema.ts";
import { clients } from "../schema.ts";

export type NewClientRow = typeof clients.$inferInsert;

export class ClientStore {
  private readonly cache = new Map<string, { client: Client | undefined; until: number }>();

  constructor(
    private readonly database: Database,
    /** Seconds a looked-up client is remembered; 0 disables the cache. */
    private readonly cacheTtl: number,
  ) {}

  async insert(row: NewClientRow): Promise<Client> {
    const [client] = await this.database.db.insert(clients).values(row).returning();
    this.cache.delete(client!.clientId);
    return client!;
  }

  /**
   * Stores the registration read from a client ID metadata document (its client_id is the URL),
   * new or refreshed; never overwrites a client registered another way.
   */
  async saveDocument(row: NewClientRow & { documentExpiresAt: Date }): Promise<Client | undefined> {
    const { clientId, ...changes } = row;
    const [client] = await this.database.db
      .insert(clients)
      .values({ ...row, registration: "document" })
      .onConflictDoUpdate({
        target: clients.clientId,
        set: { ...changes, updatedAt: sql`now()` },
        setWhere: sql`${clients.registration} = 'document'`,
      })
      .returning();
    this.forget(clientId);
    return client;
  }

  async find(clientId: string): Promise<Client | undefined> {
    // PostgreSQL text cannot hold NUL: such an id names no client (and would fail the query).
    if (clientId.includes("\0")) return undefined;
    const now = Date.now();
    const cached = this.cache.get(clientId);
    if (cached && cached.until > now) return cached.client;
    const [client] = await this.database.db.select().from(clients).where(eq(clients.clientId, clientId)).limit(1);
    if (this.cacheTtl > 0) {
      if (this.cache.size > 10_000) this.cache.clear();
      // Unknown ids are remembered briefly too, so random ids cannot hammer the database.
      this.cache.set(clientId, { client, until: now + (client ? this.cacheTtl : Math.min(this.cacheTtl, 5)) * 1000 });
    }
    return client;
  }

  /** Clients, the newest first; paged with `limit` and the cursor of the previous page. */
  list(page: { limit?: number; after?: PageAfter } = {}): Promise<Client[]> {
    const after = page.after && olderThan(clients, sql`select c.created_at from clients c where c.id = ${page.after.id}::uuid`, page.after);
    const query = this.database.db.select().from(clients).where(after).orderBy(desc(clients.createdAt), desc(clients.id));
    return page.limit === undefined ? query : query.limit(page.limit);
  }

  /** Changes a client's registration; answers it, or undefined for no such client. */
  async update(clientId: string, values: Partial<NewClientRow>): Promise<Client | undefined> {
    const [client] = await this.database.db
      .update(clients)
      .set({ ...values, updatedAt: sql`now()` })
      .where(eq(clients.clientId, clientId))
      .returning();
    this.forget(clientId);
    return client;
  }

  /** How many clients hold `scope` among their registered scopes. */
  async countWithScope(scope: string): Promise<number> {
    const [row] = await this.database.db
      .select({ n: sql<number>`count(*)::int` })
      .from(clients)
      .where(sql`${scope} = any(string_to_array(${clients.scope}, ' '))`);
    return Number(row?.n ?? 0);
  }

  /** Drops a client from the cache (it changed here, or another instance said it did). */
  forget(clientId?: string): void {
    if (clientId === undefined) this.cache.clear();
    else this.cache.delete(clientId);
  }

  /** The longest token lifetime any client overrides the defaults with, in seconds (0 if none). */
  async longestTokenTtl(): Promise<number> {
    const [row] = await this.database.db
      .select({ longest: sql<number | null>`max(greatest(coalesce(${clients.accessTokenTtl}, 0), coalesce(${clients.refreshTokenTtl}, 0)))` })
      .from(clients);
    return Number(row?.longest ?? 0);
  }
}
