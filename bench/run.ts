// `bun run bench`: builds the executable, runs it on the local PostgreSQL with a fresh
// database, and measures revocation, introspection, minting and refresh rotation side by
// side with pgbench's ceiling for the same single-row statement. Writes
// bench/results/latest.json and latest.md.
//
// Sessions for refresh tokens come from a documented fixture: authorization_grants rows
// (with the SHA-256 of a known code and a PKCE S256 challenge) inserted directly, then
// redeemed through POST /oauth/token like any client would — the same sessions the
// authorization-code flow produces, without driving login and consent pages N times.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { basic, closedLoop, form, peakRssMiB, rssMiB, type LoadResult } from "./lib.ts";

const ROOT = join(import.meta.dir, "..");
const BINARY = join(ROOT, "dist", "token-authority");
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const DB_NAME = "ta_bench";
const N = Number(process.env.BENCH_N ?? 6000); // distinct tokens per measured phase
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4); // rounds on one long-lived process
const POOL = process.env.TA_DB_POOL ?? "16";
const CONCURRENCIES = [8, 32];
const PGBENCH_SECONDS = Number(process.env.BENCH_PGBENCH_SECONDS ?? 8);

function dbUrl(name: string) {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function sh(cmd: string[], opts: { env?: Record<string, string>; stdin?: string; cwd?: string } = {}) {
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdin: opts.stdin ? new TextEncoder().encode(opts.stdin) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${err}`);
  return out;
}

async function freshDatabase() {
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`);
  await admin.unsafe(`create database ${DB_NAME}`);
  await admin.end();
  const sql = postgres(dbUrl(DB_NAME), { max: 4, onnotice: () => {} });
  await sql.unsafe(`alter database ${DB_NAME} set track_functions = 'pl'`);
  return sql;
}

interface Server {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

async function startServer(env: Record<string, string>, cwd: string): Promise<Server & { startupMs: number }> {
  const began = performance.now();
  const port = 20000 + Math.floor(Math.random() * 20000);
  const proc = Bun.spawn([BINARY, "serve", "--port", String(port)], {
    cwd,
    env: { PATH: process.env.PATH!, TA_LOG_LEVEL: "warn", TA_DB_POOL: POOL, ...env },
    stdout: "ignore",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (proc.exitCode !== null) throw new Error("server exited during start");
    await Bun.sleep(2);
  }
  const startupMs = Math.round(performance.now() - began);
  return {
    url,
    pid: proc.pid,
    startupMs,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

async function coldStart(env: Record<string, string>, cwd: string, runs = 5): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const server = await startServer(env, cwd);
    times.push(server.startupMs);
    await server.stop();
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

function pgbench(script: string, concurrency: number, setupSql: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "ta-pgbench-"));
  writeFileSync(join(dir, "script.sql"), script);
  return (async () => {
    const sql = postgres(dbUrl(DB_NAME), { max: 1, onnotice: () => {} });
    await sql.unsafe(setupSql);
    await sql.end();
    const out = await sh([
      "pgbench", "-n", "-c", String(concurrency), "-j", "2", "-T", String(PGBENCH_SECONDS), "-M", "prepared",
      "-f", join(dir, "script.sql"), "-h", "127.0.0.1", "-U", "postgres", DB_NAME,
    ]);
    return Math.round(Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0));
  })();
}

const CEILING_TABLE = `
  drop table if exists bench_ceiling;
  create table bench_ceiling (id bigserial primary key, jti text not null unique, status text not null default 'created', revoked_at timestamptz);
  insert into bench_ceiling (jti) select 'jti-' || g from generate_series(1, 200000) g;
  analyze bench_ceiling;`;
const UPDATE_SCRIPT = `\\set id random(1, 200000)
UPDATE bench_ceiling SET status = 'revoked', revoked_at = now() WHERE jti = 'jti-' || :id;
`;
const INSERT_SCRIPT = `INSERT INTO bench_ceiling (jti) VALUES (md5(random()::text || clock_timestamp()::text));
`;

async function main() {
  console.log("building the executable…");
  await sh(["bun", "run", "build"]);
  const sql = await freshDatabase();
  const env = { DATABASE_URL: dbUrl(DB_NAME) };
  const cwd = mkdtempSync(join(tmpdir(), "ta-bench-"));
  await sh([BINARY, "migrate"], { env, cwd });

  console.log("cold start…");
  const coldPostgres = await coldStart(env, cwd);
  const pgliteDir = mkdtempSync(join(tmpdir(), "ta-bench-pglite-"));
  await sh([BINARY, "migrate"], { env: { TA_DATA_DIR: join(pgliteDir, "data") }, cwd: pgliteDir });
  const coldPglite = await coldStart({ TA_DATA_DIR: join(pgliteDir, "data") }, pgliteDir);

  const clientJson = JSON.parse(
    await sh(
      [BINARY, "clients", "create", "--name", "bench", "--grant-type", "client_credentials", "--grant-type", "authorization_code",
        "--grant-type", "refresh_token", "--redirect-uri", "http://127.0.0.1/callback", "--scope", "read write"],
      { env, cwd },
    ),
  ) as { client_id: string; client_secret: string };
  const auth = basic(clientJson.client_id, clientJson.client_secret);
  const user = JSON.parse(await sh([BINARY, "users", "create", "bench-user", "--password-stdin"], { env, cwd, stdin: "bench-password\n" })) as { id: string };

  const server = await startServer(env, cwd);
  await Bun.sleep(500);
  const idleRss = rssMiB(server.pid);
  const results: Record<string, LoadResult> = {};
  const post = (path: string, fields: Record<string, string>) => fetch(`${server.url}${path}`, form(fields, auth));

  // Minting: client_credentials, one INSERT per token. The tokens feed the later phases.
  const accessTokens: string[] = [];
  const collect = (_: unknown, res: Response, body: string) => {
    if (res.status === 200) accessTokens.push((JSON.parse(body) as { access_token: string }).access_token);
  };
  for (const c of CONCURRENCIES) {
    results[`mint c=${c}`] = await closedLoop(
      Array.from({ length: N }, (_, i) => i),
      c,
      () => post("/oauth/token", { grant_type: "client_credentials", scope: "read" }),
      server.pid,
      collect,
    );
  }
  console.log(`minted ${accessTokens.length} access tokens`);

  // Refresh tokens through the authorization-code fixture.
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const codes = Array.from({ length: 2 * N }, () => randomBytes(32).toString("base64url"));
  for (let i = 0; i < codes.length; i += 1000) {
    const rows = codes.slice(i, i + 1000).map((code) => ({
      code_hash: createHash("sha256").update(code).digest("hex"),
      client_id: clientJson.client_id,
      user_id: user.id,
      code_challenge: challenge,
      code_challenge_method: "S256",
      redirect_uri: "http://127.0.0.1/callback",
      scope: "read",
      expires_at: new Date(Date.now() + 3600_000),
    }));
    await sql`insert into authorization_grants ${sql(rows)}`;
  }
  const refreshTokens: string[] = [];
  await closedLoop(
    codes,
    8,
    (code) =>
      post("/oauth/token", {
        grant_type: "authorization_code",
        code,
        code_verifier: verifier,
        redirect_uri: "http://127.0.0.1/callback",
      }),
    server.pid,
    (_, res, body) => {
      if (res.status === 200) refreshTokens.push((JSON.parse(body) as { refresh_token: string }).refresh_token);
    },
  );
  console.log(`redeemed ${refreshTokens.length} codes`);

  // Refresh rotation: each refresh token once.
  const rotated: string[] = [];
  for (const [i, c] of CONCURRENCIES.entries()) {
    results[`refresh c=${c}`] = await closedLoop(
      refreshTokens.slice(i * N, (i + 1) * N),
      c,
      (token) => post("/oauth/token", { grant_type: "refresh_token", refresh_token: token }),
      server.pid,
      (_, res, body) => {
        if (res.status === 200) rotated.push((JSON.parse(body) as { access_token: string }).access_token);
      },
    );
  }

  // Introspection of live tokens (the rotated sessions' access tokens are live).
  for (const c of CONCURRENCIES) {
    results[`introspect c=${c}`] = await closedLoop(
      rotated.slice(0, N),
      c,
      (token) => post("/oauth/introspect", { token, token_type_hint: "access_token" }),
      server.pid,
    );
  }

  // Revocation: every request a distinct, correctly hinted token; c=32 in rounds on this one
  // long-lived process, comparing the first and the last round.
  const [before] = await sql`select xact_commit::bigint as n from pg_stat_database where datname = ${DB_NAME}`;
  results["revoke c=8"] = await closedLoop(accessTokens.slice(0, N), 8, (token) => post("/oauth/revoke", { token, token_type_hint: "access_token" }), server.pid);
  const roundSize = Math.floor(N / ROUNDS);
  const rounds: LoadResult[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const slice = accessTokens.slice(N + r * roundSize, N + (r + 1) * roundSize);
    rounds.push(await closedLoop(slice, 32, (token) => post("/oauth/revoke", { token, token_type_hint: "access_token" }), server.pid));
  }
  results["revoke c=32"] = merge(rounds);
  await Bun.sleep(1500); // statistics are flushed at most once a second
  const [after] = await sql`select xact_commit::bigint as n from pg_stat_database where datname = ${DB_NAME}`;
  const [calls] = await sql`select coalesce(sum(calls), 0)::bigint as n from pg_stat_user_functions where funcname = 'ta_revoke_token'`;
  const revocations = N + roundSize * ROUNDS;
  const transactionsPerRevocation = Math.round(((Number(after!.n) - Number(before!.n)) / revocations) * 100) / 100;

  // Proof of effect: a sample of revoked tokens is dead.
  const sample = accessTokens.filter((_, i) => i % 97 === 0).slice(0, 200);
  let stillActive = 0;
  for (const token of sample) {
    const res = await post("/oauth/introspect", { token });
    if ((await res.json() as { active: boolean }).active) stillActive++;
  }
  const peakRss = peakRssMiB(server.pid);
  await server.stop();

  console.log("pgbench ceilings…");
  const ceilings: Record<string, number> = {};
  for (const c of CONCURRENCIES) {
    ceilings[`update c=${c}`] = await pgbench(UPDATE_SCRIPT, c, CEILING_TABLE);
    ceilings[`insert c=${c}`] = await pgbench(INSERT_SCRIPT, c, CEILING_TABLE);
  }
  await sql.end();

  const summary = {
    date: new Date().toISOString().slice(0, 10),
    machine: "2 cores shared by load generator, server and PostgreSQL",
    tokens_per_phase: N,
    pool: Number(POOL),
    cold_start_ms: { postgres: coldPostgres, pglite: coldPglite },
    rss_mib: { idle: idleRss, peak: peakRss },
    results,
    ceilings,
    ratios: Object.fromEntries(
      CONCURRENCIES.flatMap((c) => [
        [`revoke/update c=${c}`, round2(results[`revoke c=${c}`]!.rps / ceilings[`update c=${c}`]!)],
        [`mint/insert c=${c}`, round2(results[`mint c=${c}`]!.rps / ceilings[`insert c=${c}`]!)],
        [`introspect/revoke c=${c}`, round2(results[`introspect c=${c}`]!.rps / results[`revoke c=${c}`]!.rps)],
      ]),
    ),
    revoke_rounds_c32: rounds.map((r) => r.rps),
    round_drop_percent: round2((1 - rounds.at(-1)!.rps / rounds[0]!.rps) * 100),
    transactions_per_revocation: transactionsPerRevocation,
    ta_revoke_token_calls: Number(calls!.n),
    revoked_sample: { checked: sample.length, still_active: stillActive },
  };
  mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
  writeFileSync(join(ROOT, "bench", "results", "latest.json"), JSON.stringify(summary, null, 2) + "\n");
  const md = markdown(summary);
  writeFileSync(join(ROOT, "bench", "results", "latest.md"), md);
  console.log(md);
  if (stillActive > 0) throw new Error(`${stillActive} revoked tokens are still active`);
}

const round2 = (x: number) => Math.round(x * 100) / 100;

function merge(parts: LoadResult[]): LoadResult {
  const requests = parts.reduce((a, p) => a + p.requests, 0);
  const seconds = parts.reduce((a, p) => a + p.seconds, 0);
  const statuses: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  return {
    requests,
    seconds: round2(seconds),
    rps: Math.round(requests / seconds),
    // Percentiles of the merged run: the worst round's (conservative).
    p50: Math.max(...parts.map((p) => p.p50)),
    p90: Math.max(...parts.map((p) => p.p90)),
    p99: Math.max(...parts.map((p) => p.p99)),
    max: Math.max(...parts.map((p) => p.max)),
    statuses,
    cpu: {
      server: round2(parts.reduce((a, p) => a + p.cpu.server, 0)),
      database: round2(parts.reduce((a, p) => a + p.cpu.database, 0)),
      loadgen: round2(parts.reduce((a, p) => a + p.cpu.loadgen, 0)),
    },
  };
}

function markdown(s: any): string {
  const rows = Object.entries(s.results as Record<string, LoadResult>).map(([name, r]) => {
    const cpu = `${r.cpu.server} / ${r.cpu.database} / ${r.cpu.loadgen}`;
    return `| ${name} | ${r.rps} | ${r.p50} | ${r.p90} | ${r.p99} | ${r.max} | ${JSON.stringify(r.statuses).replace(/[{}"]/g, "")} | ${cpu} |`;
  });
  return [
    `Benchmark of ${s.date} (${s.machine}; ${s.tokens_per_phase} distinct tokens per phase, pool ${s.pool}):`,
    "",
    "| phase | req/s | p50 ms | p90 ms | p99 ms | max ms | statuses | CPU s server / db / loadgen |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    `pgbench ceilings (tps): ${Object.entries(s.ceilings).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `ratios: ${Object.entries(s.ratios).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `revocation rounds at c=32 on one process (req/s): ${s.revoke_rounds_c32.join(", ")} (drop ${s.round_drop_percent} %)`,
    `database transactions per revocation: ${s.transactions_per_revocation}; ta_revoke_token calls: ${s.ta_revoke_token_calls}`,
    `revoked sample introspected: ${s.revoked_sample.checked}, still active: ${s.revoked_sample.still_active}`,
    `cold start to first served request: PostgreSQL ${s.cold_start_ms.postgres} ms, PGlite ${s.cold_start_ms.pglite} ms; RSS idle ${s.rss_mib.idle} MiB, peak ${s.rss_mib.peak} MiB`,
    "",
  ].join("\n");
}

await main();
