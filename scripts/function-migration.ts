// Generates the migration that brings the database's PL/pgSQL functions to what db/functions/
// says: `bun run db:generate [--name NAME]` runs drizzle-kit for the schema (db/schema.ts), then
// appends to that migration every function whose file differs from what the migrations so far
// define (CREATE OR REPLACE; DROP first when its signature changed) and a DROP for every ta_*
// function that has no file any more, re-embeds the migrations, applies them all to a scratch
// database and rewrites each file's definition as PostgreSQL prints it (pg_get_functiondef), which
// is what test/functions.test.ts compares. Each file: `--` comment lines, then one
// CREATE OR REPLACE FUNCTION statement.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { parseArgs } from "node:util";

const ROOT = join(import.meta.dir, "..");
const FUNCTIONS = join(ROOT, "db", "functions");
const MIGRATIONS = join(ROOT, "db", "migrations");

export interface FunctionFile {
  name: string;
  path: string;
  comment: string;
  definition: string;
}

/** The files of db/functions: each named after its function. */
export function functionFiles(dir = FUNCTIONS): FunctionFile[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith(".sql"))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, file), "utf8");
      const lines = text.split("\n");
      const first = lines.findIndex((line) => !line.startsWith("--"));
      return {
        name: file.replace(/\.sql$/, ""),
        path: join(dir, file),
        comment: lines.slice(0, first).join("\n"),
        definition: lines.slice(first).join("\n").trim().replace(/;$/, ""),
      };
    });
}

export interface LiveFunction {
  name: string;
  args: string;
  definition: string;
}

/** The ta_* functions of the public schema, as PostgreSQL prints them. */
export async function liveFunctions(query: (sql: string) => Promise<Array<Record<string, unknown>>>): Promise<LiveFunction[]> {
  const rows = await query(`
    select p.proname as name, pg_get_function_identity_arguments(p.oid) as args, pg_get_functiondef(p.oid) as definition
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'public' and p.proname like 'ta\\_%'
     order by p.proname, args`);
  return rows.map((row) => ({ name: String(row.name), args: String(row.args), definition: String(row.definition).trim() }));
}

/** Every migration's SQL, in journal order, read from disk. */
function migrationsOnDisk(): string[] {
  const journal = JSON.parse(readFileSync(join(MIGRATIONS, "meta", "_journal.json"), "utf8")) as { entries: Array<{ tag: string }> };
  return journal.entries.map((entry) => readFileSync(join(MIGRATIONS, `${entry.tag}.sql`), "utf8"));
}

async function scratchDatabase(): Promise<PGlite> {
  const pglite = await PGlite.create();
  for (const migration of migrationsOnDisk()) {
    for (const statement of migration.split("--> statement-breakpoint")) if (statement.trim()) await pglite.exec(statement);
  }
  return pglite;
}

const query = (pglite: PGlite) => async (sql: string) => (await pglite.query<Record<string, string>>(sql)).rows;

async function run(command: string[]): Promise<string> {
  const proc = Bun.spawn(command, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${command.join(" ")} failed (${code}): ${err || out}`);
  return out + err;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { name: { type: "string" } } });
  const files = functionFiles();
  const before = await scratchDatabase();
  const live = await liveFunctions(query(before));
  const statements: string[] = [];
  for (const file of files) {
    const current = live.filter((fn) => fn.name === file.name);
    if (current.length === 1 && current[0]!.definition === file.definition) continue;
    // A changed result type cannot be replaced: drop the function of the same signature first.
    const same = current.find((fn) => fn.args === signatureOf(file));
    if (same && !(await replaces(before, file))) statements.push(`DROP FUNCTION public.${same.name}(${same.args});`);
    statements.push(`${file.definition};`);
  }
  // Functions without a file, and other signatures of a file's name: no released version calls them.
  for (const fn of live) {
    if (!files.some((file) => file.name === fn.name && signatureOf(file) === fn.args)) {
      statements.unshift(`DROP FUNCTION public.${fn.name}(${fn.args});`);
    }
  }
  await before.close();
  // The schema first (drizzle-kit writes a migration only if db/schema.ts changed) …
  const name = values.name ?? "functions";
  const schemaChanged = !/No schema changes/i.test(await run(["bunx", "drizzle-kit", "generate", "--name", name]));
  // … then the functions, in that migration or in one of their own.
  if (statements.length > 0) {
    if (!schemaChanged) await run(["bunx", "drizzle-kit", "generate", "--custom", "--name", name]);
    const journal = JSON.parse(readFileSync(join(MIGRATIONS, "meta", "_journal.json"), "utf8")) as { entries: Array<{ tag: string }> };
    const path = join(MIGRATIONS, `${journal.entries.at(-1)!.tag}.sql`);
    const existing = readFileSync(path, "utf8").trim();
    statements[0] = `-- Functions generated from db/functions/ by scripts/function-migration.ts.\n${statements[0]}`;
    writeFileSync(path, [existing, ...statements].filter((part) => part !== "").join("\n--> statement-breakpoint\n") + "\n");
    console.log(`wrote ${path}: ${statements.length} function statements`);
  } else {
    console.log(`db/functions/ matches the migrations${schemaChanged ? "" : ", and the schema too"}: no function statements to add`);
  }
  await run(["bun", join(ROOT, "scripts", "embed-migrations.ts")]);
  // Each file as PostgreSQL prints it.
  const after = await scratchDatabase();
  const applied = await liveFunctions(query(after));
  await after.close();
  for (const file of files) {
    const fn = applied.find((candidate) => candidate.name === file.name);
    if (!fn) throw new Error(`${file.name} is not defined after the migrations`);
    if (fn.definition !== file.definition) {
      writeFileSync(file.path, `${file.comment}\n${fn.definition};\n`);
      console.log(`rewrote ${file.path} as PostgreSQL prints it`);
    }
  }
}

/** The argument list of a file's definition, as pg_get_function_identity_arguments prints it. */
function signatureOf(file: FunctionFile): string {
  const match = /^CREATE OR REPLACE FUNCTION public\.(\w+)\((.*)\)\n RETURNS/.exec(file.definition);
  if (!match || match[1] !== file.name) throw new Error(`${file.path}: expected "CREATE OR REPLACE FUNCTION public.${file.name}(...)" and " RETURNS" on the next line`);
  return match[2]!;
}

/** Whether CREATE OR REPLACE of the file succeeds over what the database has (tried, then rolled back). */
async function replaces(pglite: PGlite, file: FunctionFile): Promise<boolean> {
  await pglite.exec("begin");
  try {
    await pglite.exec(file.definition);
    return true;
  } catch {
    return false;
  } finally {
    await pglite.exec("rollback");
  }
}

if (import.meta.main) await main();
