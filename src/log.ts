// Structured JSON logs: one line per event on stdout. Callers pass only identifiers and
// outcomes — never a token, secret, password or Authorization header.
import { AsyncLocalStorage } from "node:async_hooks";
import { loggableDatabaseError } from "../db/failures.ts";
import type { LogLevel } from "./config.ts";

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogSink = (line: string) => void;

/**
 * Fields of the request being handled (its request id), added to every line logged while it
 * runs — so a domain event such as `token.revocation.completed` names the request behind it.
 */
export const logContext = new AsyncLocalStorage<LogFields>();

const stdoutSink: LogSink = (line) => process.stdout.write(line + "\n");

export function createLogger(level: LogLevel, sink: LogSink = stdoutSink, base: LogFields = {}): Logger {
  const threshold = ORDER[level];
  const write = (lvl: Exclude<LogLevel, "silent">) => (event: string, fields: LogFields = {}) => {
    if (ORDER[lvl] < threshold) return;
    sink(JSON.stringify({ time: new Date().toISOString(), level: lvl, event, ...logContext.getStore(), ...base, ...fields }));
  };
  return {
    debug: write("debug"),
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
    child: (fields) => createLogger(level, sink, { ...base, ...fields }),
  };
}

/** Describes an unexpected error for a log line without its stack or any request data. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`.slice(0, 300);
  return String(error).slice(0, 300);
}

/** Reduces an error to something loggable: no stack, no SQL parameters. */
export function errorForLog(error: unknown): string {
  return describeError(loggableDatabaseError(error));
}
