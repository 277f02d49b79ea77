// `bun run bench:cluster` (issue 21): what the Patroni cluster costs revocation. One process of the
// compiled executable on the machine's single PostgreSQL server and one on a three-node Patroni
// cluster (test/helpers/patroni.ts: synchronous replication, `synchronous_commit = on`, every node
// on this machine), driven alternately by the same closed-loop load generator at c=32 with a
// distinct token in every request: minting (client_credentials), then revocation of the tokens
// just minted. Afterwards a sample of the revoked tokens must introspect inactive at each server.
// Target: revocation on the cluster within 30 % of the single server's rate in the same run.
// Between the two, the tokens just minted are introspected (c=32, each once): and a third process
// on the cluster reads session lookups from the synchronous standby (TA_DATABASE_READ_URL, so it
// commits with remote_apply), to measure what replica reads move off the primary — the CPU of
// the primary's PostgreSQL processes per introspection, with and without — and what
// remote_apply costs minting and revocation.
//
// Knobs (environment): BENCH_CLUSTER_N (10 000 tokens per run), BENCH_CLUSTER_ROUNDS (2),
// TA_DB_POOL (4), BENCH_DATABASE_URL. Writes bench/results/cluster.md and cluster.json.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { patroniUnavailableReason, postgresProcesses, startPatroniCluster } from "../test/helpers/patroni.ts";
import type { LoadResult } from "./lib.ts";
import { ADMIN_URL, basic, BINARY, closedLoop, cpuMeter, freePort, httpClient } from "./lib.ts";

const ROOT = join(import.meta.dir, "..");
const DB_NAME = "ta_bench_cluster";
const N = Number(process.env.BENCH_CLUSTER_N ?? 10_000);
const ROUNDS = Number(process.env.BENCH_CLUSTER_ROUNDS ?? 2);
const POOL = process.env.TA_DB_POOL ?? "4";
const CONCURRENCY = 32;
const SAMPLE = 200;

type Target = "single server" | "Patroni cluster" | "cluster, standby reads";
const TARGETS: Target[] = ["single server", "Patroni cluster", "cluster, standby reads"];

async function sh(cmd: string[], env: Record<string, string>): Promise<string> {
  const proc = Bun.spawn(cmd, { env: { PATH: process.env.PATH!, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${err}`);
  return out;
}

/** A fresh database on the server `adminUrl` names. */
async function freshDatabase(adminUrl: string) {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`);
  await admin.unsafe(`create database ${DB_NAME}`);
  await admin.end();
}

/** The executable serving `databaseUrl` (migrated), with the two clients the runs use; `pids` are the processes of the PostgreSQL nodes it reads and writes. */
async function serve(databaseUrl: string, pids: { primary: () => number[]; replica?: () => number[] }, extra: Record<string, string> = {}) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env = { DATABASE_URL: databaseUrl, TA_ISSUER: issuer, TA_ADMIN_SOCKET: "off", TA_LOG_LEVEL: "warn", TA_DB_POOL: POOL, TA_INTROSPECTION_CACHE_TTL: "0", ...extra };
  await sh([BINARY, "migrate"], env);
  const cli = async (...args: string[]) => JSON.parse(await sh([BINARY, ...args], env));
  const cc = await cli("clients", "create", "--name", "bench-cc", "--grant-type", "client_credentials", "--scope", "read");
  const rs = await cli("clients", "create", "--name", "bench-api", "--resource-server", `${issuer}/api`);
  const proc = Bun.spawn([BINARY, "serve", "--port", String(port)], { env: { PATH: process.env.PATH!, ...env }, stdout: "inherit", stderr: "inherit" });
  for (;;) {
    try {
      if ((await fetch(`${issuer}/readyz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (proc.exitCode !== null) throw new Error("server exited during start");
    await Bun.sleep(20);
  }
  return {
    pid: proc.pid,
    pids,
    http: httpClient(issuer),
    ccAuth: basic(cc.client_id, cc.client_secret),
    rsAuth: basic(rs.client_id, rs.client_secret),
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

type Served = Awaited<ReturnType<typeof serve>>;

const brief = (r: LoadResult) => ({
  rps: r.rps,
  p99_ms: r.p99,
  statuses: r.statuses,
  server_cpu_s: r.cpu.server,
  primary_cpu_s: r.cpu.database,
  primary_us_per_request: Math.round((r.cpu.database / r.requests) * 1e6),
  other_cpu_s: r.cpu.other,
});

/** Session lookups answered by the replica and by the primary so far (ta_session_lookups_total). */
async function lookups(target: Served): Promise<{ replica: number; primary: number }> {
  const text = (await target.http.get("/metrics")).body;
  const of = (source: string) => Number(new RegExp(`ta_session_lookups_total\\{source="${source}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { replica: of("replica"), primary: of("primary") };
}

/** One round at one target: N mints, the N introspections of those tokens, then their N revocations. */
async function round(target: Served) {
  // The database bucket is the primary's PostgreSQL (every process of the node).
  const meter = () => cpuMeter([target.pid], async () => target.pids.primary());
  const tokens: string[] = new Array(N);
  const mint = await closedLoop(Array.from({ length: N }, (_, i) => i), CONCURRENCY, (i) => target.http.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, target.ccAuth), {
    meter,
    check: (i, reply) => {
      if (reply.status !== 200) throw new Error(`mint answered ${reply.status}: ${reply.body}`);
      tokens[i] = JSON.parse(reply.body).access_token;
    },
  });
  const before = await lookups(target);
  const replicaMeter = target.pids.replica && (await cpuMeter([], async () => target.pids.replica!()));
  const introspect = await closedLoop(tokens, CONCURRENCY, (token) => target.http.post("/oauth/introspect", { token }, target.rsAuth), {
    meter,
    check: (_, reply) => {
      if (reply.status !== 200 || !reply.body.startsWith('{"active":true')) throw new Error(`a live token introspects ${reply.status} ${reply.body}`);
    },
  });
  const replicaCpu = replicaMeter ? (await replicaMeter()).database : 0;
  const after = await lookups(target);
  const answered = { replica: after.replica - before.replica, primary: after.primary - before.primary };
  const revoke = await closedLoop(tokens, CONCURRENCY, (token) => target.http.post("/oauth/revoke", { token }, target.ccAuth), {
    meter,
    check: (_, reply) => {
      if (reply.status !== 200) throw new Error(`revocation answered ${reply.status}: ${reply.body}`);
    },
  });
  // Every revocation answered 200 is in force: a sample introspects inactive.
  for (let i = 0; i < SAMPLE; i++) {
    const token = tokens[Math.floor(Math.random() * tokens.length)]!;
    const reply = await target.http.post("/oauth/introspect", { token }, target.rsAuth);
    if (reply.status !== 200 || JSON.parse(reply.body).active !== false) throw new Error(`a revoked token introspects ${reply.status} ${reply.body}`);
  }
  return { mint, introspect, revoke, answered, replicaUsPerIntrospection: Math.round((replicaCpu / introspect.requests) * 1e6) };
}

async function main() {
  const unavailable = patroniUnavailableReason();
  if (unavailable) throw new Error(`the cluster cannot start here: ${unavailable}`);
  const build = Bun.spawn(["bun", "run", "build"], { cwd: ROOT, stdout: "ignore", stderr: "inherit" });
  if ((await build.exited) !== 0) throw new Error("build failed");
  const cluster = await startPatroniCluster();
  const servers: Partial<Record<Target, Served>> = {};
  try {
    const single = new URL(ADMIN_URL);
    single.pathname = `/${DB_NAME}`;
    await freshDatabase(ADMIN_URL);
    // The single server's processes: every backend of its database.
    const local = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
    let localPids: number[] = [];
    const refreshLocal = async () => {
      localPids = (await local<{ pid: number }[]>`select pid from pg_stat_activity where datname = ${DB_NAME}`).map((r) => r.pid);
    };
    servers["single server"] = await serve(single.toString(), { primary: () => localPids });
    const primary = (await cluster.primary())!;
    const syncName = (await cluster.members()).find((m) => m.role === "sync_standby")?.name;
    const standby = cluster.nodes.find((n) => n !== primary && n.name === syncName)!;
    await freshDatabase(cluster.url("postgres"));
    const clusterPids = { primary: () => postgresProcesses(primary), replica: () => postgresProcesses(standby) };
    servers["Patroni cluster"] = await serve(cluster.url(DB_NAME), clusterPids);
    servers["cluster, standby reads"] = await serve(cluster.url(DB_NAME), clusterPids, { TA_DATABASE_READ_URL: standby.url(DB_NAME) });
    type Run = { round: number; target: Target; mint: ReturnType<typeof brief>; introspect: ReturnType<typeof brief> & { answered: { replica: number; primary: number }; replica_us_per_request: number }; revoke: ReturnType<typeof brief> };
    const runs: Run[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? TARGETS : [...TARGETS].reverse();
      for (const target of order) {
        await refreshLocal();
        const { mint, introspect, revoke, answered, replicaUsPerIntrospection } = await round(servers[target]!);
        runs.push({ round: r + 1, target, mint: brief(mint), introspect: { ...brief(introspect), answered, replica_us_per_request: replicaUsPerIntrospection }, revoke: brief(revoke) });
        console.log(JSON.stringify(runs.at(-1)));
      }
    }
    await local.end();
    const mean = (target: Target, pick: (run: Run) => number) => {
      const values = runs.filter((run) => run.target === target).map(pick);
      return Math.round(values.reduce((a, b) => a + b, 0) / values.length);
    };
    const summary = {
      date: new Date().toISOString(),
      tokens_per_run: N,
      rounds: ROUNDS,
      concurrency: CONCURRENCY,
      pool: Number(POOL),
      runs,
      mint_rps: { single: mean("single server", (r) => r.mint.rps), cluster: mean("Patroni cluster", (r) => r.mint.rps), standby_reads: mean("cluster, standby reads", (r) => r.mint.rps) },
      revoke_rps: { single: mean("single server", (r) => r.revoke.rps), cluster: mean("Patroni cluster", (r) => r.revoke.rps), standby_reads: mean("cluster, standby reads", (r) => r.revoke.rps) },
      introspect_rps: { single: mean("single server", (r) => r.introspect.rps), cluster: mean("Patroni cluster", (r) => r.introspect.rps), standby_reads: mean("cluster, standby reads", (r) => r.introspect.rps) },
      introspect_primary_us: { cluster: mean("Patroni cluster", (r) => r.introspect.primary_us_per_request), standby_reads: mean("cluster, standby reads", (r) => r.introspect.primary_us_per_request) },
      introspect_replica_us: { cluster: mean("Patroni cluster", (r) => r.introspect.replica_us_per_request), standby_reads: mean("cluster, standby reads", (r) => r.introspect.replica_us_per_request) },
    };
    const ratio = (phase: "mint_rps" | "revoke_rps" | "introspect_rps", of: "cluster" | "standby_reads" = "cluster", to: "single" | "cluster" = "single") =>
      Math.round((summary[phase][of] / summary[phase][to]) * 100) / 100;
    const revokeRatio = ratio("revoke_rps");
    const answered = runs.filter((run) => run.target === "cluster, standby reads").reduce((a, run) => ({ replica: a.replica + run.introspect.answered.replica, primary: a.primary + run.introspect.answered.primary }), { replica: 0, primary: 0 });
    const lines = [
      `# Revocation on a Patroni cluster against a single server, and reads from the standby (${summary.date.slice(0, 10)})`,
      "",
      `${N} distinct tokens per run, c=${CONCURRENCY}, TA_DB_POOL=${POOL}, ${ROUNDS} rounds alternating; the cluster's three nodes, etcd and the servers share this machine. "cluster, standby reads": TA_DATABASE_READ_URL names the synchronous standby (the server then commits with remote_apply). Primary CPU: every process of the primary's PostgreSQL (the single server: its backends), per request.`,
      "",
      "| round | target | mint req/s | introspect req/s | introspect primary µs/req | introspect standby µs/req | revoke req/s | revoke p99 ms |",
      "|---|---|---|---|---|---|---|---|",
      ...runs.map((run) => `| ${run.round} | ${run.target} | ${run.mint.rps} | ${run.introspect.rps} | ${run.introspect.primary_us_per_request} | ${run.target === "single server" ? "–" : run.introspect.replica_us_per_request} | ${run.revoke.rps} | ${run.revoke.p99_ms} |`),
      "",
      `- minting on the cluster: ${ratio("mint_rps")} of the single server (${summary.mint_rps.cluster} against ${summary.mint_rps.single} req/s)`,
      `- revocation on the cluster: ${revokeRatio} of the single server (${summary.revoke_rps.cluster} against ${summary.revoke_rps.single} req/s) — ${revokeRatio >= 0.7 ? "met" : "MISSED"} (within 30 %)`,
      `- reads from the standby: introspection costs the primary ${summary.introspect_primary_us.standby_reads} µs of CPU per request against ${summary.introspect_primary_us.cluster} without (the standby ${summary.introspect_replica_us.standby_reads} against ${summary.introspect_replica_us.cluster}); ${answered.replica} of ${answered.replica + answered.primary} lookups answered by the standby; introspection ${ratio("introspect_rps", "standby_reads", "cluster")} of the cluster's rate without (${summary.introspect_rps.standby_reads} against ${summary.introspect_rps.cluster} req/s)`,
      `- what remote_apply costs: minting ${ratio("mint_rps", "standby_reads", "cluster")}, revocation ${ratio("revoke_rps", "standby_reads", "cluster")} of the cluster's rate without it`,
      `- every run: all answers 200, every live token introspected active; ${SAMPLE} revoked tokens sampled per run introspect inactive`,
    ];
    writeFileSync(join(ROOT, "bench", "results", "cluster.json"), `${JSON.stringify({ ...summary, revoke_ratio: revokeRatio, mint_ratio: ratio("mint_rps"), standby_answered: answered }, null, 2)}\n`);
    writeFileSync(join(ROOT, "bench", "results", "cluster.md"), `${lines.join("\n")}\n`);
    console.log(lines.join("\n"));
  } finally {
    for (const served of Object.values(servers)) await served?.stop();
    await cluster.stop();
  }
}

await main();
