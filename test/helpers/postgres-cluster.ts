// A private, throw-away PostgreSQL cluster (initdb + pg_ctl into a temporary directory, on a
// free port) for the fault tests that must stop and restart the database under a server.
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { freePort } from "./binary.ts";

export const PG_BIN = process.env.TA_PG_BIN || "/usr/lib/postgresql/15/bin";

/** PostgreSQL refuses to run as root: as root, its commands run as the `postgres` OS user. */
export const asRoot = process.getuid?.() === 0;

export function postgresUid(): { uid: number; gid: number } | undefined {
  const proc = Bun.spawnSync(["id", "-u", "postgres"]);
  const gidProc = Bun.spawnSync(["id", "-g", "postgres"]);
  if (proc.exitCode !== 0 || gidProc.exitCode !== 0) return undefined;
  return { uid: Number(proc.stdout.toString().trim()), gid: Number(gidProc.stdout.toString().trim()) };
}

/** Why a private cluster cannot be started here, or undefined when it can. */
export function clusterUnavailableReason(): string | undefined {
  if (!existsSync(join(PG_BIN, "initdb")) || !existsSync(join(PG_BIN, "pg_ctl"))) return `no initdb/pg_ctl in ${PG_BIN} (set TA_PG_BIN)`;
  if (asRoot && !postgresUid()) return "running as root without a `postgres` OS user to run PostgreSQL as";
  return undefined;
}

async function run(args: string[]): Promise<void> {
  const command = asRoot ? ["runuser", "-u", "postgres", "--", ...args] : args;
  const proc = Bun.spawn(command, { stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${args.join(" ")} exited ${code}: ${stdout}${stderr}`);
}

export interface Cluster {
  readonly port: number;
  readonly running: boolean;
  /** postgres://postgres@127.0.0.1:PORT/NAME */
  url(database?: string): string;
  createDatabase(name: string): Promise<string>;
  /** pg_ctl stop: `immediate` is a crash (recovery at the next start), `fast` a clean shutdown. */
  stop(mode?: "immediate" | "fast"): Promise<void>;
  start(): Promise<void>;
  /** Stops the cluster if it runs and deletes its directory. */
  destroy(): Promise<void>;
}

/** initdb into a temporary directory and start it on a free port; resolves once it accepts connections. */
export async function startCluster(): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), "ta-pg-"));
  const data = join(dir, "data");
  if (asRoot) {
    const { uid, gid } = postgresUid()!;
    chownSync(dir, uid, gid);
  }
  const port = freePort();
  const url = (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`;
  await run([join(PG_BIN, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]).catch((error) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  // fsync off: only the PostgreSQL processes are ever killed here, never the machine, so every
  // write they made is still in the page cache for crash recovery.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60`;
  let running = false;
  const cluster: Cluster = {
    port,
    url,
    get running() {
      return running;
    },
    async createDatabase(name) {
      const admin = postgres(url(), { max: 1, onnotice: () => {} });
      await admin.unsafe(`create database ${name}`);
      await admin.end();
      return url(name);
    },
    async start() {
      await run([join(PG_BIN, "pg_ctl"), "-D", data, "-l", join(dir, "log"), "-o", options, "-w", "-t", "60", "start"]);
      running = true;
    },
    async stop(mode = "immediate") {
      await run([join(PG_BIN, "pg_ctl"), "-D", data, "-m", mode, "-w", "-t", "60", "stop"]);
      running = false;
    },
    async destroy() {
      if (running) await cluster.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.start();
  } catch (error) {
    await cluster.destroy();
    throw error;
  }
  return cluster;
}
