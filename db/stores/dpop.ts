// The storage port of DPoP proof replay detection (RFC 9449 §11.1): a proof's key thumbprint and
// jti are recorded once; the second time is a replay. Proofs checked together share one INSERT.
import type { SQL } from "drizzle-orm";
import { sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { BatcherOptions } from "../batcher.ts";
import { Batcher } from "../batcher.ts";

/**
 * The one INSERT of dpop_proofs: the proofs of `source` (`p`, distinct ids, with `id` and `ttl`
 * in seconds) not recorded before; answers the ids it recorded. Also a CTE of the session INSERT
 * (db/stores/sessions.ts), which records a mint's proof in its own statement.
 */
export function recordProofs(source: SQL): SQL {
  return sql`insert into dpop_proofs (id, expires_at)
      select p.id, now() + make_interval(secs => p.ttl) from ${source}
      on conflict (id) do nothing
      returning id`;
}

interface SeenItem {
  id: string;
  /** Seconds from now until the proof could no longer pass the freshness check. */
  ttl: number;
}

export class DpopProofStore {
  private readonly inserts: Batcher<SeenItem, boolean>;

  /** `batching`: the session statements' (one at the database, the rest join the next). */
  constructor(
    private readonly database: Database,
    batching: BatcherOptions,
  ) {
    this.inserts = new Batcher((items) => this.insertAll(items), batching);
  }

  /** Records a proof; false when it was recorded before (a replay). */
  firstSeen(id: string, ttl: number): Promise<boolean> {
    return this.inserts.submit({ id, ttl });
  }

  private async insertAll(items: readonly SeenItem[]): Promise<boolean[]> {
    // One id twice in one batch: the second is the replay.
    const rows = await this.database.rows<{ id: string }>(
      recordProofs(sql`(select distinct on (i.id) i.id, i.ttl from jsonb_to_recordset(${JSON.stringify(items)}::jsonb) as i(id text, ttl int)) p`),
    );
    const inserted = new Set(rows.map((row) => row.id));
    const claimed = new Set<string>();
    return items.map((item) => {
      if (!inserted.has(item.id) || claimed.has(item.id)) return false;
      claimed.add(item.id);
      return true;
    });
  }
}
