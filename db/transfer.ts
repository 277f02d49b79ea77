// Export and import of every table as NDJSON, so data written on the embedded PGlite can move
// to PostgreSQL (or back, or to a new host). PostgreSQL itself converts each row to JSON
// (row_to_json) and back (json_populate_recordset), so every type — timestamps, arrays, jsonb,
// uuids — round-trips exactly, keys and signing keys included.
//
// Format: a header line {"format","version","migrations"}, then one {"table","row"} line per
// row, parents before children, then {"end":true,"counts"}; an import without the end line
// (a truncated file) is refused and changes nothing.
import { getTableConfig, PgTable } from "drizzle-orm/pg-core";
import type { SQL } from "drizzle-orm";
import { is, sql } from "drizzle-orm";
import type { Database } from "./client.ts";
import * as schema from "./schema.ts";

export const EXPORT_FORMAT = "token-authority/export";
export const EXPORT_VERSION = 1;
const PAGE = 1000;
const INSERT_BATCH = 500;

export class TransferError extends Error {
  override name = "TransferError";
}

interface TableInfo {
  name: string;
  /** The single-column primary key, used to page through the table in order. */
  key: string;
  parents: string[];
}

/** Every table of the schema, parents (referenced tables) before children. */
export function tablesInDependencyOrder(): TableInfo[] {
  const tables = (Object.values(schema) as unknown[])
    .filter((value): value is PgTable => is(value, PgTable))
    .map((table) => {
      const config = getTableConfig(table);
      const key = config.columns.find((column) => column.primary)?.name ?? config.primaryKeys[0]?.columns[0]?.name;
      if (!key) throw new Error(`table ${config.name} has no primary key`);
      const parents = config.foreignKeys.map((fk) => getTableConfig(fk.reference().foreignTable).name);
      return { name: config.name, key, parents: parents.filter((p) => p !== config.name) };
    });
  const ordered: TableInfo[] = [];
  const placed = new Set<string>();
  while (ordered.length < tables.length) {
    const ready = tables.filter((t) => !placed.has(t.name) && t.parents.every((p) => placed.has(p)));
    if (ready.length === 0) throw new Error("foreign keys form a cycle");
    for (const table of ready.sort((a, b) => a.name.localeCompare(b.name))) {
      ordered.push(table);
      placed.add(table.name);
    }
  }
  return ordered;
}

type Executor = { execute(query: SQL): Promise<unknown> };

async function rowsOf<T>(executor: Executor, query: SQL): Promise<T[]> {
  const result = await executor.execute(query);
  // postgres.js returns an Array subclass; PGlite returns { rows }.
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

/** Journal timestamps of the applied migrations: both sides must be at the same schema. */
async function appliedMigrations(executor: Executor): Promise<number[]> {
  const rows = await rowsOf<{ created_at: string | number }>(
    executor,
    sql`select created_at from drizzle.__drizzle_migrations order by created_at`,
  );
  return rows.map((r) => Number(r.created_at));
}

export type TransferCounts = Record<string, number>;

/**
 * Writes the whole database as NDJSON lines (without newlines) to `write`, from one consistent
 * snapshot (a repeatable-read, read-only transaction), so it is safe while the server runs.
 */
export async function exportData(database: Database, write: (line: string) => void | Promise<void>): Promise<TransferCounts> {
  return database.db.transaction(
    async (tx) => {
      const counts: TransferCounts = {};
      await write(JSON.stringify({ format: EXPORT_FORMAT, version: EXPORT_VERSION, migrations: await appliedMigrations(tx) }));
      for (const table of tablesInDependencyOrder()) {
        counts[table.name] = 0;
        const name = sql.identifier(table.name);
        const key = sql.identifier(table.key);
        let last: unknown;
        for (;;) {
          const after = last === undefined ? sql`true` : sql`t.${key} > ${last}`;
          const page = await rowsOf<{ row: string; key: unknown }>(
            tx,
            sql`select row_to_json(t)::text as row, t.${key} as key from ${name} t where ${after} order by t.${key} limit ${PAGE}`,
          );
          for (const { row } of page) await write(`{"table":${JSON.stringify(table.name)},"row":${row}}`);
          counts[table.name]! += page.length;
          if (page.length < PAGE) break;
          last = page.at(-1)!.key;
        }
      }
      await write(JSON.stringify({ end: true, counts }));
      return counts;
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
}

/** The export as one NDJSON string. */
export async function exportToString(database: Database): Promise<string> {
  const lines: string[] = [];
  await exportData(database, (line) => {
    lines.push(line);
  });
  return lines.join("\n") + "\n";
}

/** Splits a byte stream into lines. */
export async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
  buffered += decoder.decode();
  if (buffered !== "") yield buffered;
}

function parseLine(line: string, number: number): Record<string, unknown> {
  try {
    const value = JSON.parse(line) as unknown;
    if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new TransferError(`line ${number} is not a JSON object`);
}

/**
 * Loads an export into an empty, migrated database in one transaction: all of it, or nothing.
 * The target must be at the same schema version (same migrations) as the source.
 */
export async function importData(database: Database, input: Iterable<string> | AsyncIterable<string>): Promise<TransferCounts> {
  const tables = tablesInDependencyOrder();
  const known = new Set(tables.map((t) => t.name));
  return database.db.transaction(async (tx) => {
    const nonEmpty: string[] = [];
    for (const table of tables) {
      const [row] = await rowsOf<{ found: boolean }>(tx, sql`select exists (select 1 from ${sql.identifier(table.name)}) as found`);
      if (row?.found) nonEmpty.push(table.name);
    }
    if (nonEmpty.length > 0) {
      throw new TransferError(`the target database is not empty (${nonEmpty.join(", ")}); import into a new, migrated database`);
    }
    const counts: TransferCounts = Object.fromEntries(tables.map((t) => [t.name, 0]));
    let header: Record<string, unknown> | undefined;
    let end: Record<string, unknown> | undefined;
    let pending: { table: string; rows: string[] } | undefined;
    const flush = async () => {
      if (!pending || pending.rows.length === 0) return;
      const name = sql.identifier(pending.table);
      await tx.execute(sql`insert into ${name} select * from json_populate_recordset(null::${name}, ${`[${pending.rows.join(",")}]`}::json)`);
      pending.rows = [];
    };
    let number = 0;
    for await (const line of input) {
      number++;
      if (line.trim() === "") continue;
      if (end) throw new TransferError(`line ${number}: data after the end of the export`);
      const entry = parseLine(line, number);
      if (!header) {
        if (entry.format !== EXPORT_FORMAT || entry.version !== EXPORT_VERSION) {
          throw new TransferError(`not a ${EXPORT_FORMAT} version ${EXPORT_VERSION} file`);
        }
        const ours = await appliedMigrations(tx);
        if (JSON.stringify(entry.migrations) !== JSON.stringify(ours)) {
          throw new TransferError(
            `the export was made at schema version ${(entry.migrations as unknown[])?.length ?? "?"} and this database is at ${ours.length}: ` +
              "import with the executable that exported, then upgrade",
          );
        }
        header = entry;
        continue;
      }
      if (entry.end === true) {
        end = entry;
        continue;
      }
      const table = entry.table;
      if (typeof table !== "string" || !known.has(table) || !entry.row || typeof entry.row !== "object") {
        throw new TransferError(`line ${number}: not a row of a known table`);
      }
      if (pending?.table !== table) {
        await flush();
        pending = { table, rows: [] };
      }
      pending.rows.push(JSON.stringify(entry.row));
      counts[table]!++;
      if (pending.rows.length >= INSERT_BATCH) await flush();
    }
    await flush();
    if (!header) throw new TransferError("the input is empty");
    if (!end) throw new TransferError("the export is truncated (no end line); nothing was imported");
    if (JSON.stringify(end.counts) !== JSON.stringify(counts)) {
      throw new TransferError("the row counts differ from the export's own; nothing was imported");
    }
    // Serial columns (the revocation feed's cursor) continue after the imported values.
    const serials = await rowsOf<{ table_name: string; column_name: string }>(
      tx,
      sql`select table_name, column_name from information_schema.columns
           where table_schema = 'public' and column_default like 'nextval(%'`,
    );
    for (const { table_name, column_name } of serials) {
      const name = sql.identifier(table_name);
      const column = sql.identifier(column_name);
      await tx.execute(sql`select setval(pg_get_serial_sequence(${table_name}, ${column_name}), max(${column})) from ${name} having max(${column}) is not null`);
    }
    return counts;
  });
}
