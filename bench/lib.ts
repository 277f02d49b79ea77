// Benchmark plumbing: a closed-loop load generator (fixed concurrency, keep-alive, one
// distinct item per request), latency statistics, and CPU accounting of the server process,
// the PostgreSQL processes serving it, this process (the load generator), and everything else
// running on the machine at the same time.
import { readFileSync } from "node:fs";
import { createServer } from "node:net";

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
  return {
    requests: items.length,
    seconds: round2(seconds),
    rps: Math.round(items.length / seconds),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: percentile(sorted, 100),
    statuses,
    cpu,
  };
}

/** Form posts over fetch (keep-alive), answering status and body. */
export function httpClient(base: string) {
  return {
    async post(path: string, fields: Record<string, string>, authorization?: string): Promise<Reply> {
      const response = await fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...(authorization ? { authorization } : {}) },
        body: new URLSearchParams(fields).toString(),
      });
      return { status: response.status, body: await response.text() };
    },
  };
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
