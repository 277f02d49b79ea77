// `bun run bench:cluster` (issue 21): what the Patroni cluster costs revocation. One process of the
// compiled executable on the machine's single PostgreSQL server and one on a three-node Patroni
// cluster (test/helpers/patroni.ts: synchronous replication, `synchronous_commit = on`, every node
// on this machine), driven alternately by the same closed-loop load generator at c=32 with a
// distinct token in every request: minting (client_credentials), then revocation of the tokens
// just minted. Afterwards a sample of the revoked tokens must introspect inactive at each server.
// Target: revocation on the cluster within 30 % of the single server's rate in the same run.
//
// Knobs (environment): BENCH_CLUSTER_N (10 000 tokens per run), BENCH_CLUSTER_ROUNDS (2),
// TA_DB_POOL (4), BENCH_DATABASE_URL. Writes bench/results/cluster.md and cluster.json.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { patroniUnavailableReason, startPatroniCluster } from "../test/helpers/patroni.ts";
import type { LoadResult } from "./lib.ts";
import { ADMIN_URL, basic, BINARY, closedLoop, cpuMeter, freePort, httpClient } from "./lib.ts";

const ROOT = join(import.meta.dir, "..");
const DB_NAME = "ta_bench_cluster";
const N = Number(process.env.BENCH_CLUSTER_N ?? 10_000);
const ROUNDS = Number(process.env.BENCH_CLUSTER_ROUNDS ?? 2);
const POOL = process.env.TA_DB_POOL ?? "4";
const CONCURRENCY = 32;
const SAMPLE = 200;

type Target = "single server" | "Patroni cluster";

async function sh(cmd: string[], env: Record<string, string>): Promise<string> {
  const proc = Bun.spawn(cmd, { env: { PATH: process.env.PATH!, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${err}`);
  return out;
}

/** A fresh database on the server `adminUrl` names, migrated, with the two clients the runs use, and the executable serving it. */
async function serve(adminUrl: string, databaseUrl: string) {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`);
  await admin.unsafe(`create database ${DB_NAME}`);
  await admin.end();
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env = { DATABASE_URL: databaseUrl, TA_ISSUER: issuer, TA_ADMIN_SOCKET: "off", TA_LOG_LEVEL: "warn", TA_DB_POOL: POOL };
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

const brief = (r: LoadResult) => ({ rps: r.rps, p99_ms: r.p99, statuses: r.statuses, server_cpu_s: r.cpu.server, other_cpu_s: r.cpu.other });

/** One round at one target: N mints, then the N revocations of those tokens. */
async function round(target: Served) {
  const meter = () => cpuMeter([target.pid], async () => []);
  const tokens: string[] = new Array(N);
  const mint = await closedLoop(Array.from({ length: N }, (_, i) => i), CONCURRENCY, (i) => target.http.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, target.ccAuth), {
    meter,
    check: (i, reply) => {
      if (reply.status !== 200) throw new Error(`mint answered ${reply.status}: ${reply.body}`);
      tokens[i] = JSON.parse(reply.body).access_token;
    },
  });
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
  return { mint, revoke };
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
    servers["single server"] = await serve(ADMIN_URL, single.toString());
    servers["Patroni cluster"] = await serve(cluster.url("postgres"), cluster.url(DB_NAME));
    const runs: Array<{ round: number; target: Target; mint: ReturnType<typeof brief>; revoke: ReturnType<typeof brief> }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order: Target[] = r % 2 === 0 ? ["single server", "Patroni cluster"] : ["Patroni cluster", "single server"];
      for (const target of order) {
        const { mint, revoke } = await round(servers[target]!);
        runs.push({ round: r + 1, target, mint: brief(mint), revoke: brief(revoke) });
        console.log(JSON.stringify(runs.at(-1)));
      }
    }
    const mean = (target: Target, phase: "mint" | "revoke") => {
      const rates = runs.filter((run) => run.target === target).map((run) => run[phase].rps);
      return Math.round(rates.reduce((a, b) => a + b, 0) / rates.length);
    };
    const summary = {
      date: new Date().toISOString(),
      tokens_per_run: N,
      rounds: ROUNDS,
      concurrency: CONCURRENCY,
      pool: Number(POOL),
      runs,
      mint_rps: { single: mean("single server", "mint"), cluster: mean("Patroni cluster", "mint") },
      revoke_rps: { single: mean("single server", "revoke"), cluster: mean("Patroni cluster", "revoke") },
    };
    const ratio = (phase: "mint_rps" | "revoke_rps") => Math.round((summary[phase].cluster / summary[phase].single) * 100) / 100;
    const revokeRatio = ratio("revoke_rps");
    const lines = [
      `# Revocation on a Patroni cluster against a single server (${summary.date.slice(0, 10)})`,
      "",
      `${N} distinct tokens per run, c=${CONCURRENCY}, TA_DB_POOL=${POOL}, ${ROUNDS} rounds alternating; the cluster's three nodes, etcd and both servers share this machine.`,
      "",
      "| round | target | mint req/s | mint p99 ms | revoke req/s | revoke p99 ms | server CPU s (revoke) |",
      "|---|---|---|---|---|---|---|",
      ...runs.map((run) => `| ${run.round} | ${run.target} | ${run.mint.rps} | ${run.mint.p99_ms} | ${run.revoke.rps} | ${run.revoke.p99_ms} | ${run.revoke.server_cpu_s} |`),
      "",
      `- minting on the cluster: ${ratio("mint_rps")} of the single server (${summary.mint_rps.cluster} against ${summary.mint_rps.single} req/s)`,
      `- revocation on the cluster: ${revokeRatio} of the single server (${summary.revoke_rps.cluster} against ${summary.revoke_rps.single} req/s) — ${revokeRatio >= 0.7 ? "met" : "MISSED"} (within 30 %)`,
      `- every run: all answers 200; ${SAMPLE} revoked tokens sampled per run introspect inactive`,
    ];
    writeFileSync(join(ROOT, "bench", "results", "cluster.json"), `${JSON.stringify({ ...summary, revoke_ratio: revokeRatio, mint_ratio: ratio("mint_rps") }, null, 2)}\n`);
    writeFileSync(join(ROOT, "bench", "results", "cluster.md"), `${lines.join("\n")}\n`);
    console.log(lines.join("\n"));
  } finally {
    for (const served of Object.values(servers)) await served?.stop();
    await cluster.stop();
  }
}

await main();
