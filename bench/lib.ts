// Benchmark plumbing: a closed-loop load generator (fixed concurrency, keep-alive, one
// distinct item per request), latency statistics, and CPU accounting of the server process,
// the PostgreSQL processes and this process (the load generator).
import { readFileSync, readdirSync } from "node:fs";

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
}

const TICKS = 100; // USER_HZ on Linux

function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return 0;
  }
}

function postgresTicks(): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "postgres") total += processTicks(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

export function cpuMeter(serverPid: number) {
  const start = { server: processTicks(serverPid), database: postgresTicks(), loadgen: process.cpuUsage() };
  return (): CpuShare => {
    const loadgen = process.cpuUsage(start.loadgen);
    return {
      server: (processTicks(serverPid) - start.server) / TICKS,
      database: (postgresTicks() - start.database) / TICKS,
      loadgen: (loadgen.user + loadgen.system) / 1e6,
    };
  };
}

export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, index)]! * 100) / 100;
}

/**
 * Sends one request per item with `concurrency` requests in flight at all times (closed
 * loop: a worker sends its next request when the previous one answered).
 */
export async function closedLoop<T>(
  items: readonly T[],
  concurrency: number,
  send: (item: T) => Promise<Response>,
  serverPid: number,
  check?: (item: T, response: Response, body: string) => void,
): Promise<LoadResult> {
  const latencies: number[] = new Array(items.length);
  const statuses: Record<string, number> = {};
  let next = 0;
  const meter = cpuMeter(serverPid);
  const began = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < items.length; i = next++) {
        const t0 = performance.now();
        const response = await send(items[i]!);
        const body = await response.text();
        latencies[i] = performance.now() - t0;
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
        check?.(items[i]!, response, body);
      }
    }),
  );
  const seconds = (performance.now() - began) / 1000;
  const cpu = meter();
  const sorted = latencies.slice().sort((a, b) => a - b);
  return {
    requests: items.length,
    seconds: Math.round(seconds * 100) / 100,
    rps: Math.round(items.length / seconds),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: percentile(sorted, 100),
    statuses,
    cpu: {
      server: Math.round(cpu.server * 100) / 100,
      database: Math.round(cpu.database * 100) / 100,
      loadgen: Math.round(cpu.loadgen * 100) / 100,
    },
  };
}

export function form(fields: Record<string, string>, authorization?: string): RequestInit {
  return {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(authorization ? { authorization } : {}),
    },
    body: new URLSearchParams(fields).toString(),
  };
}

export function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;
}
