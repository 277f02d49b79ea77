// The storage port of registered clients, with a short read-through cache in process: client
// authentication must not cost a round trip on the hot path.
import { desc, eq, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
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

  list(): Promise<Client[]> {
    return this.database.db.select().from(clients).orderBy(desc(clients.createdAt));
  }

  /** The longest token lifetime any client overrides the defaults with, in seconds (0 if none). */
  async longestTokenTtl(): Promise<number> {
    const [row] = await this.database.db
      .select({ longest: sql<number | null>`max(greatest(coalesce(${clients.accessTokenTtl}, 0), coalesce(${clients.refreshTokenTtl}, 0)))` })
      .from(clients);
    return Number(row?.longest ?? 0);
  }
}
