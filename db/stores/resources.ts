// The storage port of registered resources (RFC 8707): the APIs and MCP servers tokens are for.
import { asc, eq } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { ResourceRow } from "../schema.ts";
import { resources } from "../schema.ts";

export type { ResourceRow };

export class ResourceStore {
  constructor(private readonly database: Database) {}

  list(): Promise<ResourceRow[]> {
    return this.database.db.select().from(resources).orderBy(asc(resources.uri));
  }

  /** Adds a resource, or changes the scopes of the one registered with that URI. */
  async put(uri: string, scope: string): Promise<ResourceRow> {
    const [row] = await this.database.db
      .insert(resources)
      .values({ uri, scope })
      .onConflictDoUpdate({ target: resources.uri, set: { scope } })
      .returning();
    return row!;
  }

  /** Removes a resource; answers whether there was one. */
  async remove(uri: string): Promise<boolean> {
    return (await this.database.db.delete(resources).where(eq(resources.uri, uri)).returning({ id: resources.id })).length > 0;
  }
}
