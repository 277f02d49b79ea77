// The shape of a CLI command and the shared plumbing: flag parsing with one-line errors,
// opening the database and services for commands that need them.
import { parseArgs } from "node:util";
import type { Database } from "../../db/client.ts";
import { openDatabase } from "../../db/client.ts";
import { migrate } from "../../db/migrate.ts";
import type { Config } from "../config.ts";
import { loadConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import { createLogger } from "../log.ts";
import type { Services } from "../services.ts";
import { createServices } from "../services.ts";

/** A user error: printed as one line, exit code 2, no stack trace. */
export class UsageError extends Error {
  override name = "UsageError";
}

export interface Command {
  /** Words that select the command, e.g. ["clients", "create"]. */
  readonly path: readonly string[];
  readonly summary: string;
  readonly usage: string;
  run(argv: string[], io: CommandIo): Promise<number>;
}

export interface CommandIo {
  env: Record<string, string | undefined>;
  stdout: (text: string) => void;
  readStdin: () => Promise<string>;
}

type Options = NonNullable<Parameters<typeof parseArgs>[0]>["options"];

/**
 * `--flag VALUE` as `--flag=VALUE` for every flag that takes a value, so that a value may begin
 * with "-" (a client id, say): parseArgs refuses such a value as "ambiguous" otherwise.
 */
function joinValues(argv: readonly string[], options: Options): string[] {
  const takesValue = new Set<string>();
  for (const [name, option] of Object.entries(options ?? {})) {
    if (option.type !== "string") continue;
    takesValue.add(`--${name}`);
    if (option.short) takesValue.add(`-${option.short}`);
  }
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      joined.push(...argv.slice(i));
      break;
    }
    if (takesValue.has(arg) && i + 1 < argv.length) joined.push(`${arg.startsWith("--") ? arg : `--${shortToLong(arg, options)}`}=${argv[++i]}`);
    else joined.push(arg);
  }
  return joined;
}

function shortToLong(short: string, options: Options): string {
  return Object.entries(options ?? {}).find(([, option]) => option.short === short.slice(1))![0];
}

/** parseArgs with errors turned into UsageError and `--help` handled by the caller. */
export function parseFlags<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    const args = joinValues(argv, options);
    return parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]!);
  }
}

export function positiveInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) <= 0) throw new UsageError(`--${name} must be a positive whole number of seconds`);
  return Number(value);
}

/** Opens the configured database and migrates it, without building services (which would create a signing key); closes it after `fn`. */
export async function withDatabase<T>(
  env: Record<string, string | undefined>,
  fn: (database: Database, config: Config, log: Logger) => Promise<T>,
): Promise<T> {
  const config = loadConfig(env);
  // Commands print their result on stdout; logs would mix into it.
  const log = createLogger(config.logLevel === "debug" ? "debug" : "warn", (line) => process.stderr.write(line + "\n"));
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: 2,
    connectTimeout: config.dbConnectTimeout,
    statementTimeout: config.dbStatementTimeout,
  });
  try {
    await migrate(database);
    return await fn(database, config, log);
  } finally {
    await database.close();
  }
}

/** Opens the configured database, migrates it, and builds the services; closes it after `fn`. */
export function withServices<T>(
  env: Record<string, string | undefined>,
  fn: (services: Services, database: Database, config: Config) => Promise<T>,
): Promise<T> {
  return withDatabase(env, async (database, config, log) => {
    const services = await createServices({ config, database, log });
    const result = await fn(services, database, config);
    // Wake other instances' revocation feeds before the connection closes.
    await services.notifier.flush();
    return result;
  });
}
