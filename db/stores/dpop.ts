// The storage port of DPoP proof replay detection (RFC 9449 §11.1): a proof's key thumbprint and
// jti are recorded once; the second time is a replay. Proofs checked together share one INSERT.
import { sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import { Batcher } from "../batcher.ts";
import { SESSION_BATCHING } from "./sessions.ts";

interface SeenItem {
  id: string;
  /** Seconds from now until the proof could no longer pass the freshness check. */
  ttl: number;
}

export class DpopProofStore {
  private readonly inserts: Batcher<SeenItem, boolean>;

  constructor(private readonly database: Database) {
    // Batched as the session statements are (one at the database, the rest join the next).
    this.inserts = new Batcher((items) => this.insertAll(items), SESSION_BATCHING);
  }

  /** Records a proof; false when it was recorded before (a replay). */
  firstSeen(id: string, ttl: number): Promise<boolean> {
    return this.inserts.submit({ id, ttl });
  }

  private async insertAll(items: readonly SeenItem[]): Promise<boolean[]> {
    // One id twice in one batch: the second is the replay.
    const rows = await this.database.rows<{ id: string }>(sql`
      insert into dpop_proofs (id, expires_at)
      select distinct on (i.id) i.id, now() + make_interval(secs => i.ttl)
        from jsonb_to_recordset(${JSON.stringify(items)}::jsonb) as i(id text, ttl int)
      on conflict (id) do nothing
      returning id`);
    const inserted = new Set(rows.map((row) => row.id));
    const claimed = new Set<string>();
    return items.map((item) => {
      if (!inserted.has(item.id) || claimed.has(item.id)) return false;
      claimed.add(item.id);
      return true;
    });
  }
}
