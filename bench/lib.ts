// Benchmark plumbing: a closed-loop load generator (fixed concurrency, keep-alive, one
// distinct item per request), latency statistics, and CPU accounting of the server process,
// the PostgreSQL processes serving it, this process (the load generator), and everything else
// running on the machine at the same time.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { JWK } from "jose";
import type postgres from "postgres";
import { hashAuthorizationCode, sealAuthorizationCode } from "../src/oauth/authorization-codes.ts";
import { deriveSealingKey } from "../src/oauth/keys.ts";

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  statuses: Record<string, number>;
  cpu: CpuShare;
  /** Every request's latency in ms, sorted (not written to the JSON result). */
  readonly latencies?: readonly number[];
}

export interface CpuShare {
  /** CPU seconds used during the run, per party. */
  server: number;
  database: number;
  loadgen: number;
  /** Every other process on the machine (other engineers' tests, pgbench's own client...). */
  other: number;
  /** 1-minute load average when the run started. */
  load: number;
}

const TICKS = 100; // USER_HZ on Linux
const round2 = (x: number) => Math.round(x * 100) / 100;

function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime of every thread
  } catch {
    return 0; // exited meanwhile
  }
}

/** Busy ticks of the whole machine (all cores): user, nice, system, irq, softirq, steal. */
function machineBusyTicks(): number {
  const [, user, nice, system, , , irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.split(/\s+/).map(Number);
  return user! + nice! + system! + irq! + softirq! + steal!;
}

export function loadAverage(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

/**
 * Starts measuring CPU: the server's pid, the database's pids (re-read at the end, since a
 * pool may open connections meanwhile) and this process. Returns the function that stops.
 */
export async function cpuMeter(serverPids: readonly number[], databasePids: () => Promise<number[]>) {
  const sum = (pids: Iterable<number>) => [...pids].reduce((a, pid) => a + processTicks(pid), 0);
  const startDb = new Map((await databasePids()).map((pid) => [pid, processTicks(pid)]));
  const start = { server: sum(serverPids), machine: machineBusyTicks(), loadgen: process.cpuUsage(), load: loadAverage() };
  return async (): Promise<CpuShare> => {
    const loadgen = process.cpuUsage(start.loadgen);
    const server = (sum(serverPids) - start.server) / TICKS;
    let dbTicks = 0;
    for (const pid of new Set([...startDb.keys(), ...(await databasePids())])) dbTicks += processTicks(pid) - (startDb.get(pid) ?? 0);
    const database = dbTicks / TICKS;
    const loadgenSeconds = (loadgen.user + loadgen.system) / 1e6;
    const machine = (machineBusyTicks() - start.machine) / TICKS;
    return {
      server: round2(server),
      database: round2(database),
      loadgen: round2(loadgenSeconds),
      other: round2(Math.max(0, machine - server - database - loadgenSeconds)),
      load: start.load,
    };
  };
}

function statusField(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

/** Resident set size now, MiB. */
export const rssMiB = (pid: number) => statusField(pid, "VmRSS");
/** Highest resident set size so far, MiB. */
export const peakRssMiB = (pid: number) => statusField(pid, "VmHWM");

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return round2(sorted[Math.max(0, index)]!);
}

export interface Reply {
  status: number;
  body: string;
  /** The Location header of a redirect. */
  location?: string;
}

export interface LoadOptions<T> {
  /** Starts CPU accounting; its result is the function that stops it. */
  meter: () => Promise<() => Promise<CpuShare>>;
  check?: (item: T, reply: Reply) => void;
}

/**
 * Sends one request per item with `concurrency` requests in flight at all times (closed
 * loop: a worker sends its next request when the previous one answered).
 */
export async function closedLoop<T>(
  items: readonly T[],
  concurrency: number,
  send: (item: T) => Promise<Reply>,
  { meter, check }: LoadOptions<T>,
): Promise<LoadResult> {
  const latencies: number[] = new Array(items.length);
  const statuses: Record<string, number> = {};
  let next = 0;
  const stop = await meter();
  const began = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < items.length; i = next++) {
        const t0 = performance.now();
        const reply = await send(items[i]!);
        latencies[i] = performance.now() - t0;
        statuses[reply.status] = (statuses[reply.status] ?? 0) + 1;
        check?.(items[i]!, reply);
      }
    }),
  );
  const seconds = (performance.now() - began) / 1000;
  const cpu = await stop();
  const sorted = latencies.slice().sort((a, b) => a - b);
  const result: LoadResult = { requests: items.length, seconds: round2(seconds), rps: Math.round(items.length / seconds), ...latencyStats(sorted), statuses, cpu };
  return Object.defineProperty(result, "latencies", { value: sorted, enumerable: false });
}

/** p50, p90, p99 and max of sorted latencies. */
export function latencyStats(sorted: readonly number[]) {
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: percentile(sorted, 100) };
}

/**
 * Form posts over plain keep-alive HTTP/1.1 connections (one per request in flight, reused):
 * the request is one pre-built write, the answer is read by its Content-Length. It costs the
 * shared cores a little over half of what fetch did (load generator CPU per revocation 33 →
 * 19 µs, per mint 29 → 16 µs), leaving more of them to the server and PostgreSQL, as pgbench's
 * small C client does.
 */
export function httpClient(base: string) {
  const { hostname, port, host } = new URL(base);
  const idle: Connection[] = [];
  const encoder = new TextEncoder();
  async function send(request: string): Promise<Reply> {
    let connection = idle.pop();
    // The server closes a connection idle for a while (between phases).
    while (connection && !connection.reusable) connection = idle.pop();
    connection ??= await Connection.open(hostname, Number(port));
    const reply = await connection.send(encoder.encode(request));
    if (connection.reusable) idle.push(connection);
    return reply;
  }
  return {
    post(path: string, fields: Record<string, string>, authorization?: string, headers: Record<string, string> = {}): Promise<Reply> {
      const body = new URLSearchParams(fields).toString();
      const head =
        `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        (authorization ? `Authorization: ${authorization}\r\n` : "") +
        Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
      return send(head + body);
    },
    get(path: string, headers: Record<string, string> = {}): Promise<Reply> {
      const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
      return send(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${lines}\r\n`);
    },
  };
}

const HEADERS_END = Buffer.from("\r\n\r\n");

/** One keep-alive connection: one request at a time, answered by status and body. */
class Connection {
  reusable = true;
  private buffered: Buffer = Buffer.alloc(0);
  private pending: { resolve: (reply: Reply) => void; reject: (error: Error) => void } | undefined;
  private unsent: Uint8Array | undefined;

  private constructor(private socket: import("bun").Socket<undefined>) {}

  static async open(hostname: string, port: number): Promise<Connection> {
    let connection: Connection | undefined;
    const socket = await Bun.connect({
      hostname,
      port,
      socket: {
        data: (_, chunk) => connection!.received(chunk),
        drain: () => connection!.flush(),
        close: () => connection?.fail(new Error("connection closed")),
        error: (_, error) => connection?.fail(error),
      },
    });
    socket.setNoDelay(true);
    return (connection = new Connection(socket));
  }

  send(request: Uint8Array): Promise<Reply> {
    if (this.pending) throw new Error("one request at a time on a connection");
    return new Promise<Reply>((resolve, reject) => {
      this.pending = { resolve, reject };
      this.unsent = request;
      this.flush();
    });
  }

  close(): void {
    this.reusable = false;
    this.socket.end();
  }

  private flush(): void {
    if (!this.unsent) return;
    const written = this.socket.write(this.unsent);
    this.unsent = written < this.unsent.length ? this.unsent.subarray(Math.max(0, written)) : undefined;
  }

  private received(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const end = this.buffered.indexOf(HEADERS_END);
    if (end < 0) return;
    const head = this.buffered.subarray(0, end).toString("latin1");
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) return this.fail(new Error(`answer without Content-Length: ${head.split("\r\n")[0]}`));
    const total = end + 4 + Number(length[1]);
    if (this.buffered.length < total) return;
    const body = this.buffered.subarray(end + 4, total).toString("utf8");
    if (this.buffered.length > total) return this.fail(new Error("bytes after the answer"));
    this.buffered = Buffer.alloc(0);
    if (/\r\nconnection: *close/i.test(head)) this.close();
    const pending = this.pending!;
    this.pending = undefined;
    pending.resolve({ status, body, location: /\r\nlocation: *([^\r]*)/i.exec(head)?.[1] });
  }

  private fail(error: Error): void {
    this.reusable = false;
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(error);
  }
}

export function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;
}

/** A TCP port that was free a moment ago (the kernel picked it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
    probe.on("error", reject);
  });
}

/**
 * The authorization-code fixture: `count` codes, each stored as src/oauth/authorization-codes.ts
 * stores one (SHA-256 hex, PKCE S256 challenge of one shared verifier), ready to be redeemed
 * through POST /oauth/token. Answers the codes and the verifier.
 */
/**
 * Authorization grants inserted directly, each with a code as the authorization endpoint seals
 * it (src/oauth/authorization-codes.ts: under a key derived from the active signing key), so the
 * exchange takes the server's own path: tokens signed before the one statement.
 */
export async function insertCodeGrants(
  sql: postgres.Sql,
  count: number,
  grant: { clientId: string; userId: string; redirectUri: string; scope?: string },
): Promise<{ codes: string[]; verifier: string }> {
  const scope = grant.scope ?? "read";
  // An OpenID grant's code carries its sign-in and nonce, as the authorization endpoint seals them.
  const oidc = scope.split(" ").includes("openid") ? { auth_time: Math.floor(Date.now() / 1000), amr: ["pwd"], nonce: "bench" } : undefined;
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const [key] = await sql`select private_jwk from signing_keys where status = 'active'`;
  const sealing = await deriveSealingKey(key!.private_jwk as JWK, "code");
  // Each code names its grant (the family's sid), as the authorization endpoint's do.
  const ids = Array.from({ length: count }, () => randomUUID());
  const codes = await Promise.all(ids.map((sid) => sealAuthorizationCode(sealing, { sub: grant.userId, scope, aud: [], sid, ...(oidc ? { oidc } : {}) })));
  for (let i = 0; i < codes.length; i += 1000) {
    const rows = codes.slice(i, i + 1000).map((code, j) => ({
      id: ids[i + j]!,
      code_hash: hashAuthorizationCode(code),
      client_id: grant.clientId,
      user_id: grant.userId,
      code_challenge: challenge,
      code_challenge_method: "S256",
      redirect_uri: grant.redirectUri,
      scope,
      expires_at: new Date(Date.now() + 3600_000),
    }));
    await sql`insert into authorization_grants ${sql(rows)}`;
  }
  return { codes, verifier };
}

/** Merges runs of a phase: requests, time, statuses and CPU added up, percentiles over every request of them together. */
export function merge(parts: LoadResult[]): LoadResult {
  const requests = parts.reduce((a, p) => a + p.requests, 0);
  const seconds = parts.reduce((a, p) => a + p.seconds, 0);
  const statuses: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const sum = (key: Exclude<keyof CpuShare, "load">) => round2(parts.reduce((a, p) => a + p.cpu[key], 0));
  return {
    requests,
    seconds: round2(seconds),
    rps: Math.round(requests / seconds),
    // Percentiles of every request of the parts together (each round's p99 is reported too).
    ...latencyStats(parts.flatMap((p) => p.latencies ?? []).sort((a, b) => a - b)),
    statuses,
    cpu: { server: sum("server"), database: sum("database"), loadgen: sum("loadgen"), other: sum("other"), load: parts[0]!.cpu.load },
  };
}

/** The executable `bun run build` makes, and the PostgreSQL the benchmarks make their databases on (BENCH_DATABASE_URL). */
export const BINARY = join(import.meta.dir, "..", "dist", "token-authority");
export const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** The URL of database `name` on ADMIN_URL's server. */
export function dbUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}
