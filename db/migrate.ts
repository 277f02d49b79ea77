// Applies the embedded migrations with Drizzle's own bookkeeping (drizzle.__drizzle_migrations:
// sha256 of each file and its journal timestamp), so drizzle-kit and the executable agree on
// what has run. An advisory lock lets several instances start on one database at once.
import { createHash } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Database } from "./client.ts";
import { migrations } from "./migrations/index.ts";

const MIGRATION_LOCK = 7_009_2026; // arbitrary, constant: pg_advisory_xact_lock key

export interface MigrationResult {
  applied: string[];
  total: number;
}

/** The newest migration recorded in the database, or undefined (none, or no table yet). */
async function lastApplied(database: Database): Promise<number | undefined> {
  try {
    const [row] = await database.rows<{ created_at: string | number }>(
      sql`select created_at from drizzle.__drizzle_migrations order by created_at desc limit 1`,
    );
    return row ? Number(row.created_at) : undefined;
  } catch {
    return undefined;
  }
}

export async function migrate(database: Database): Promise<MigrationResult> {
  // Every start runs this: when the newest migration is already there, one read suffices
  // (a migration still being applied by another instance is not visible yet, so this
  // instance then takes the locked path below and waits for it).
  if ((await lastApplied(database)) === migrations.at(-1)?.when) return { applied: [], total: migrations.length };
  const applied: string[] = [];
  await database.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await tx.execute(sql`create schema if not exists drizzle`);
    await tx.execute(sql`
      create table if not exists drizzle.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)
    `);
    const last = await tx.execute(
      sql`select created_at from drizzle.__drizzle_migrations order by created_at desc limit 1`,
    );
    const lastRows = (Array.isArray(last) ? last : (last as { rows: unknown[] }).rows) as Array<{ created_at: string | number }>;
    const lastApplied = lastRows[0] ? Number(lastRows[0].created_at) : -1;
    for (const migration of migrations) {
      if (migration.when <= lastApplied) continue;
      for (const statement of migration.sql.split("--> statement-breakpoint")) {
        if (statement.trim()) await tx.execute(sql.raw(statement));
      }
      const hash = createHash("sha256").update(migration.sql).digest("hex");
      await tx.execute(
        sql`insert into drizzle.__drizzle_migrations (hash, created_at) values (${hash}, ${migration.when})`,
      );
      applied.push(migration.tag);
    }
  });
  return { applied, total: migrations.length };
}
