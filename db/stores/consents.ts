// The storage port of remembered consent: the scopes a user granted a client, and the clients a
// user has authorized (consent given, or sessions still live).
import { and, eq, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import { consents } from "../schema.ts";

export interface AuthorizedClientRow {
  clientId: string;
  name: string;
  clientUri: string | undefined;
  /** The scope granted, empty for a client with live sessions but no consent. */
  scope: string;
  /** When consent was last given; null for a client with live sessions but no consent. */
  authorizedAt: Date | null;
  liveSessions: number;
}

export class ConsentStore {
  constructor(private readonly database: Database) {}

  /** The scope a user granted a client, if any. */
  async scopeOf(userId: string, clientId: string): Promise<string | undefined> {
    const [row] = await this.database.db
      .select({ scope: consents.scope })
      .from(consents)
      .where(and(eq(consents.userId, userId), eq(consents.clientId, clientId)))
      .limit(1);
    return row?.scope;
  }

  /** Adds the scopes to what the user has granted the client (one upsert, the union kept sorted). */
  async remember(userId: string, clientId: string, scope: string): Promise<void> {
    await this.database.db
      .insert(consents)
      .values({ userId, clientId, scope })
      .onConflictDoUpdate({
        target: [consents.userId, consents.clientId],
        set: {
          scope: sql`array_to_string(array(select distinct s from unnest(string_to_array(${consents.scope} || ' ' || ${scope}, ' ')) s where s <> '' order by s), ' ')`,
          updatedAt: sql`now()`,
        },
      });
  }

  async forget(userId: string, clientId: string): Promise<void> {
    await this.database.db.delete(consents).where(and(eq(consents.userId, userId), eq(consents.clientId, clientId)));
  }

  /** The clients a user has authorized (consent given, or sessions still live), the latest consent first. */
  async authorizedClients(userId: string): Promise<AuthorizedClientRow[]> {
    const rows = await this.database.rows<{
      client_id: string;
      name: string;
      client_uri: string | null;
      scope: string | null;
      authorized_at: Date | string | null;
      live: number | string;
    }>(sql`
      select c.client_id, c.name, c.metadata->>'client_uri' as client_uri, co.scope,
             co.updated_at as authorized_at,
             (select count(*) from sessions s
               where s.client_id = c.client_id and s.subject = ${userId} and s.status = 'created') as live
        from clients c
        left join consents co on co.client_id = c.client_id and co.user_id = ${userId}
       where co.id is not null
          or exists (select 1 from sessions s
                      where s.client_id = c.client_id and s.subject = ${userId} and s.status = 'created')
       order by co.updated_at desc nulls last, c.name`);
    return rows.map((row) => ({
      clientId: row.client_id,
      name: row.name,
      clientUri: row.client_uri ?? undefined,
      scope: row.scope ?? "",
      authorizedAt: row.authorized_at === null ? null : new Date(row.authorized_at),
      liveSessions: Number(row.live),
    }));
  }
}
