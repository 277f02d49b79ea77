// The shape of a CLI command and the shared plumbing: flag parsing with one-line errors,
// opening the database and services for commands that need them.
import { parseArgs } from "node:util";
import type { Database } from "../../db/client.ts";
import { openDatabase } from "../../db/client.ts";
import { migrate } from "../../db/migrate.ts";
import type { Config } from "../config.ts";
import { loadConfig } from "../config.ts";
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

/** parseArgs with errors turned into UsageError and `--help` handled by the caller. */
export function parseFlags<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]!);
  }
}

export function positiveInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) <= 0) throw new UsageError(`--${name} must be a positive whole number of seconds`);
  return Number(value);
}

/** Opens the configured database, migrates it, and builds the services; closes it after `fn`. */
export async function withServices<T>(
  env: Record<string, string | undefined>,
  fn: (services: Services, database: Database, config: Config) => Promise<T>,
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
    const services = await createServices({ config, database, log });
    const result = await fn(services, database, config);
    // Wake other instances' revocation feeds before the connection closes.
    await services.notifier.flush();
    return result;
  } finally {
    await database.close();
  }
}
