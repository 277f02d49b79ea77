// Test databases: one migrated PGlite per test run, cloned per test file (dumpDataDir /
// loadDataDir); and, when TEST_DATABASE_URL is set, one migrated PostgreSQL template
// database per run, copied per test file with CREATE DATABASE … TEMPLATE.
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import type { Database } from "../../db/client.ts";
import { openPglite, openPostgres } from "../../db/client.ts";
import { migrate } from "../../db/migrate.ts";

export type Backend = "pglite" | "postgres";

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;

/** PGlite always; PostgreSQL too when TEST_DATABASE_URL is set. */
export const backends: readonly Backend[] = TEST_DATABASE_URL ? ["pglite", "postgres"] : ["pglite"];

let pgliteTemplate: Promise<Blob> | undefined;

function migratedPgliteDump(): Promise<Blob> {
  pgliteTemplate ??= (async () => {
    const database = await openPglite();
    await migrate(database);
    const dump = await database.pglite.dumpDataDir("none");
    await database.close();
    return dump;
  })();
  return pgliteTemplate;
}

const runId = `${process.pid}_${randomBytes(3).toString("hex")}`;
export const templateDatabaseName = `ta_template_${runId}`;
let postgresTemplate: Promise<void> | undefined;

/** A postgres.js connection to the server's maintenance database (for CREATE/DROP DATABASE). */
export function adminConnection() {
  return postgres(TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
}

export function databaseUrl(name: string): string {
  const url = new URL(TEST_DATABASE_URL!);
  url.pathname = `/${name}`;
  return url.toString();
}

function migratedPostgresTemplate(): Promise<void> {
  postgresTemplate ??= (async () => {
    const admin = adminConnection();
    await admin.unsafe(`create database ${templateDatabaseName}`);
    await admin.end();
    const database = openPostgres(databaseUrl(templateDatabaseName), { poolSize: 1, connectTimeout: 5, statementTimeout: 30 });
    await migrate(database);
    await database.close();
  })();
  return postgresTemplate;
}

export async function dropTemplate(): Promise<void> {
  if (!postgresTemplate) return;
  const admin = adminConnection();
  await admin.unsafe(`drop database if exists ${templateDatabaseName} with (force)`);
  await admin.end();
}

/** A new migrated PostgreSQL database (a copy of the template): its URL and how to drop it. */
export async function createPostgresDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  await migratedPostgresTemplate();
  const name = `ta_test_${runId}_${randomBytes(4).toString("hex")}`;
  const admin = adminConnection();
  await admin.unsafe(`create database ${name} template ${templateDatabaseName}`);
  await admin.end();
  return {
    name,
    url: databaseUrl(name),
    async drop() {
      const dropper = adminConnection();
      await dropper.unsafe(`drop database if exists ${name} with (force)`);
      await dropper.end();
    },
  };
}

const urls = new WeakMap<Database, string>();

/** The URL of a PostgreSQL test database (to open a second handle: two instances, one database). */
export function testDatabaseUrl(database: Database): string | undefined {
  return urls.get(database);
}

/** An empty, migrated database of the given backend, private to the caller. */
export async function openTestDatabase(backend: Backend): Promise<Database> {
  if (backend === "pglite") return openPglite({ loadDataDir: await migratedPgliteDump() });
  const created = await createPostgresDatabase();
  const database = openPostgres(created.url, { poolSize: 10, connectTimeout: 5, statementTimeout: 10 });
  const handle: Database = {
    ...database,
    async close() {
      await database.close();
      await created.drop();
    },
  };
  urls.set(handle, created.url);
  return handle;
}
