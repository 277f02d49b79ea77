// How a CLI command reaches the admin API (src/http/admin.ts): through the admin socket when a
// server runs on it — the embedded database then needs no downtime to be administered — or, with
// no server running, in this process over the database directly, through the same API. Either
// way the command prints what the API answered, so its output is the same.
import { existsSync } from "node:fs";
import { createApp } from "../app.ts";
import { loadConfig } from "../config.ts";
import type { CommandIo } from "./command.ts";
import { UsageError, withServices } from "./command.ts";

export interface AdminAnswer {
  status: number;
  body: unknown;
}

function requestOf(method: string, path: string, body: unknown): Request {
  return new Request(`http://localhost${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function answerOf(response: Response): Promise<AdminAnswer> {
  const text = await response.text();
  return { status: response.status, body: text === "" ? null : JSON.parse(text) };
}

/** The socket is there but nobody listens (a server that died): the request reached no server. */
const NOBODY_LISTENS = new Set(["ECONNREFUSED", "ENOENT", "FailedToOpenSocket"]);

/**
 * Calls the admin API once: through the running server's socket when one listens there (no
 * probe first: that would cost a round trip on every command), else in this process.
 */
export async function callAdmin(env: CommandIo["env"], method: string, path: string, body?: unknown): Promise<AdminAnswer> {
  const config = loadConfig(env);
  if (config.adminSocket && existsSync(config.adminSocket)) {
    try {
      return await answerOf(await fetch(requestOf(method, path, body), { unix: config.adminSocket }));
    } catch (error) {
      if (!NOBODY_LISTENS.has((error as { code?: string }).code ?? "")) throw error;
    }
  }
  return withServices(env, async (services) => {
    const app = createApp(services);
    const request = requestOf(method, path, body);
    // In process, as on the socket: the operator of this machine.
    services.localAdmin.add(request);
    return answerOf(await app.handle(request));
  });
}

/**
 * Calls the admin API and prints its answer as JSON (exit 0); an answer the request got wrong is
 * one line on stderr (exit 2), a server's failure too (exit 1).
 */
export async function runAdmin(io: CommandIo, method: string, path: string, body?: unknown): Promise<number> {
  const answer = await callAdmin(io.env, method, path, body);
  if (answer.status < 300) {
    io.stdout(JSON.stringify(answer.body, null, 2));
    return 0;
  }
  const error = answer.body as { error?: string; error_description?: string } | null;
  const message = error?.error_description ?? error?.error ?? `the admin API answered ${answer.status}`;
  if (answer.status < 500) throw new UsageError(message);
  process.stderr.write(`token-authority: ${message}\n`);
  return 1;
}

/** A path segment (an id, a username) as it goes into an admin URL. */
export const segment = (value: string) => encodeURIComponent(value);
