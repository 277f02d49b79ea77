// Runs the compiled executable as a real process from an empty directory.
import { copyFileSync, existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "./db.ts";
import { createPostgresDatabase } from "./db.ts";
import type { PatroniCluster } from "./patroni.ts";
import { createClusterDatabase } from "./patroni.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "token-authority");

let built: Promise<void> | undefined;

/** Builds dist/token-authority once per test run (TA_SKIP_BUILD=1 reuses an existing one). */
export function buildBinary(): Promise<void> {
  built ??= (async () => {
    if (process.env.TA_SKIP_BUILD === "1" && existsSync(BINARY)) return;
    const proc = Bun.spawn(["bun", "run", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if ((await proc.exited) !== 0) throw new Error(`build failed: ${await new Response(proc.stderr).text()}`);
  })();
  return built;
}

/** A fresh empty directory holding nothing but a copy of the executable. */
export function emptyDirWithBinary(): { dir: string; binary: string } {
  const dir = mkdtempSync(join(tmpdir(), "ta-bin-"));
  const binary = join(dir, "token-authority");
  copyFileSync(BINARY, binary);
  return { dir, binary };
}

const cleanEnv = (env: Record<string, string>) => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env });

export async function runCli(
  dir: string,
  args: string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([join(dir, "token-authority"), ...args], {
    cwd: dir,
    env: cleanEnv(env),
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

export interface ServerProcess {
  url: string;
  proc: ReturnType<typeof Bun.spawn>;
  /** Every stdout line so far (JSON log lines). */
  lines: string[];
  stop(signal?: NodeJS.Signals): Promise<number>;
}

/**
 * For a failure's report (CI keeps only the output): the server's last `n` log lines at warn and
 * above, but for the requests answered 503 (`db.unavailable`), which are only counted.
 */
export function serverProblems(server: ServerProcess, n = 30): string {
  const problems = server.lines.filter((line) => /"level":"(warn|error|fatal)"/.test(line));
  const others = problems.filter((line) => !line.includes('"event":"db.unavailable"'));
  return `the server's warnings and errors: ${problems.length - others.length} db.unavailable, and the last ${Math.min(n, others.length)} of ${others.length} others:\n${others.slice(-n).join("\n")}`;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a server whose issuer names its port). */
export function freePort(): number {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const { port } = probe;
  probe.stop(true);
  return port!;
}

/** Starts `serve` (on `--port 0` unless args give one) and resolves once it logged server.started. */
export async function startServer(dir: string, env: Record<string, string> = {}, args: string[] = []): Promise<ServerProcess> {
  const portArgs = args.includes("--port") ? [] : ["--port", "0"];
  const proc = Bun.spawn([join(dir, "token-authority"), "serve", ...portArgs, ...args], {
    cwd: dir,
    env: cleanEnv({ TA_LOG_LEVEL: "info", ...env }),
    stdout: "pipe",
    stderr: "pipe",
  });
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${lines.join("\n")}`)), 60_000);
    (async () => {
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          lines.push(line);
          if (line.includes('"server.started"')) {
            clearTimeout(timer);
            resolve(JSON.parse(line).url);
          }
        }
      }
      clearTimeout(timer);
      reject(new Error(`server exited before starting: ${lines.join("\n")} ${await new Response(proc.stderr).text()}`));
    })().catch(reject);
  });
  return {
    url,
    proc,
    lines,
    async stop(signal = "SIGTERM") {
      proc.kill(signal);
      return proc.exited;
    },
  };
}

/** The executable serving from an empty directory, at an issuer naming its port, with its CLI. */
export interface Executable {
  server: ServerProcess;
  issuer: string;
  dir: string;
  env: Record<string, string>;
  /** Runs a CLI command against it; its stdout as JSON, or throws with its stderr. */
  cli(args: string[], stdin?: string): Promise<any>;
  /** Stops the server with `signal` (SIGKILL: a crash) and starts it again on the same data and port. */
  restart(signal: NodeJS.Signals): Promise<void>;
  /** Stops the server and drops its PostgreSQL database. */
  close(): Promise<void>;
}

/** Builds the executable (once), and serves on `backend` — a fresh PostgreSQL database, or embedded. */
export async function startExecutable(backend: Backend, extraEnv: Record<string, string> = {}): Promise<Executable> {
  await buildBinary();
  const { dir } = emptyDirWithBinary();
  const database = backend === "postgres" ? await createPostgresDatabase() : undefined;
  const port = freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env = { TA_ISSUER: issuer, TA_DATA_DIR: `${dir}/data`, ...(database ? { DATABASE_URL: database.url } : {}), ...extraEnv };
  const serve = () => startServer(dir, env, ["--port", String(port)]);
  const executable: Executable = {
    server: await serve(),
    issuer,
    dir,
    env,
    async cli(args, stdin) {
      const { code, stdout, stderr } = await runCli(dir, args, env, stdin);
      if (code !== 0) throw new Error(`${args.join(" ")}: ${stderr}`);
      return JSON.parse(stdout);
    },
    async restart(signal) {
      await executable.server.stop(signal);
      executable.server = await serve();
    },
    async close() {
      await executable.server.stop();
      await database?.drop();
    },
  };
  return executable;
}

/**
 * The executable on a Patroni cluster (test/helpers/patroni.ts): a database `ta` created there,
 * served through the multi-host URL, with a short connect timeout so that a connection attempt
 * to a dead primary fails fast and the next host is tried.
 */
export async function startExecutableOnCluster(cluster: Pick<PatroniCluster, "url" | "nodes">): Promise<Executable> {
  await createClusterDatabase(cluster, "ta");
  return startExecutable("pglite", { DATABASE_URL: cluster.url("ta"), TA_DB_CONNECT_TIMEOUT: "2" });
}
