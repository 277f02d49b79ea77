// Keyset paging, the newest first, over (created_at, id). A cursor's time is a JavaScript Date
// (milliseconds) while PostgreSQL keeps microseconds: compared with the cursor's time alone, a row
// created in the same millisecond as the cursor's row but a few microseconds earlier would be
// skipped. So the comparison reads the cursor row's own creation time back; the time in the cursor
// stands in only when that row has gone since.
import type { AnyColumn, SQL } from "drizzle-orm";
import { sql } from "drizzle-orm";

/** Where the previous page ended: its last row's creation time and id. */
export interface PageAfter {
  createdAt: Date;
  id: string;
}

/**
 * Rows strictly older than the cursor's row in (created_at, id) order. `exact` selects the
 * cursor row's created_at from the database.
 */
export function olderThan(key: { createdAt: AnyColumn | SQL; id: AnyColumn | SQL }, exact: SQL, after: PageAfter): SQL {
  return sql`(${key.createdAt}, ${key.id}) < (coalesce((${exact}), ${after.createdAt.toISOString()}::timestamptz), ${after.id}::uuid)`;
}
