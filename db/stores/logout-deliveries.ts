// The storage port of Back-Channel Logout delivery: the `browser-session-ended` entries of the
// event log turned into one delivery per client (idempotent, so instances may race), claimed
// with SKIP LOCKED and a lease (its next attempt's time), and settled.
import { sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import { clients, logoutDeliveries, revocationEvents } from "../schema.ts";

export interface ClaimedLogout {
  cursor: number;
  clientId: string;
  /** Attempts so far, this one included. */
  attempts: number;
  /** The user (the logout token's sub) and the ended sign-in (its sid). */
  subject: string;
  sid: string;
  /** Where to post it, as the client's registration says now. */
  uri: string | null;
}

export type LogoutOutcome = { status: "delivered" | "failed"; httpStatus: number | null } | { status: "retry"; httpStatus: number | null; afterSeconds: number };

export class LogoutDeliveryStore {
  constructor(private readonly database: Database) {}

  /** Makes the deliveries of entries logged since the last look (one per client still registered). */
  async expand(): Promise<void> {
    await this.database.db.execute(sql`
      insert into ${logoutDeliveries} (cursor, client_id)
      select e.cursor, c.client_id
        from ${revocationEvents} e
        cross join lateral jsonb_array_elements_text(e.detail -> 'clients') as c(client_id)
       where e.event = 'browser-session-ended' and e.expires_at > now()
         and not exists (select 1 from ${logoutDeliveries} d where d.cursor = e.cursor)
         and exists (select 1 from ${clients} k where k.client_id = c.client_id)
      on conflict do nothing`);
  }

  /** Takes up to `limit` due deliveries for `leaseSeconds` (another instance takes them after, if this one dies). */
  async claim(limit: number, leaseSeconds: number): Promise<ClaimedLogout[]> {
    const rows = await this.database.rows<{ cursor: string | number; client_id: string; attempts: number; subject: string; sid: string; uri: string | null }>(sql`
      with due as (
        select d.cursor, d.client_id from ${logoutDeliveries} d
         where d.status = 'pending' and d.next_attempt_at <= now()
         order by d.next_attempt_at
         limit ${limit}
         for update skip locked)
      update ${logoutDeliveries} d
         set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => ${leaseSeconds}), updated_at = now()
        from due, ${revocationEvents} e, ${clients} c
       where d.cursor = due.cursor and d.client_id = due.client_id and e.cursor = d.cursor and c.client_id = d.client_id
      returning d.cursor, d.client_id, d.attempts, e.subject, e.detail ->> 'sid' as sid, c.metadata ->> 'backchannel_logout_uri' as uri`);
    return rows.map((row) => ({ cursor: Number(row.cursor), clientId: row.client_id, attempts: Number(row.attempts), subject: row.subject, sid: row.sid, uri: row.uri }));
  }

  /** Records an attempt's outcome: delivered, failed for good, or retried after a while. */
  async settle(delivery: Pick<ClaimedLogout, "cursor" | "clientId">, outcome: LogoutOutcome): Promise<void> {
    const next = outcome.status === "retry" ? sql`now() + make_interval(secs => ${outcome.afterSeconds})` : sql`next_attempt_at`;
    const status = outcome.status === "retry" ? "pending" : outcome.status;
    await this.database.db.execute(sql`
      update ${logoutDeliveries}
         set status = ${status}, last_status = ${outcome.httpStatus}, next_attempt_at = ${next}, updated_at = now()
       where cursor = ${delivery.cursor} and client_id = ${delivery.clientId}`);
  }

  /** Every delivery of the entries about a sign-in (tests, the admin API). */
  forSignIn(sid: string): Promise<Array<{ client_id: string; status: string; attempts: number; last_status: number | null }>> {
    return this.database.rows(sql`
      select d.client_id, d.status, d.attempts, d.last_status
        from ${logoutDeliveries} d join ${revocationEvents} e on e.cursor = d.cursor
       where e.event = 'browser-session-ended' and e.detail ->> 'sid' = ${sid}
       order by d.client_id`);
  }
}
