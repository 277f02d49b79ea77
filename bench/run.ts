// `bun run bench`: builds the executable, runs it on the local PostgreSQL with a fresh
// database, and measures revocation, introspection, minting, code exchange, refresh rotation and
// authorization requests (a registered client against a metadata-document client) side by side with pgbench's ceiling for the same single-row statements on the same
// table; then cold start (PostgreSQL and PGlite), idle and peak RSS, and the
// revocation-to-rejection delay (bench/revocation-delay.ts against the executable), and the
// Shared Signals phases (bench/ssf.ts: revocation with push streams attached, with dead and slow
// receivers, and the revocation → SET latency at push and long-poll receivers), and code exchange
// with an ID token against without (bench/oidc.ts: codes from the authorization endpoint).
// Writes bench/results/latest.json and latest.md.
//
// Sessions for refresh tokens come from a documented fixture: authorization_grants rows
// (with the SHA-256 hex of a known code and a PKCE S256 challenge, as
// src/oauth/authorization-codes.ts stores them) inserted directly, then redeemed through
// POST /oauth/token like any client would — the sessions the authorization-code flow
// produces, without driving the login and consent pages thousands of times.
//
// Knobs (environment): BENCH_N tokens per phase (default 10000), BENCH_ROUNDS revocation
// rounds at c=32 on one process (4), TA_DB_POOL (4, the server's default), BENCH_PGBENCH_SECONDS (5),
// BENCH_DELAY_COUNT revocations timed by the delay benchmark (200), BENCH_DATABASE_URL
// (postgres://postgres@127.0.0.1:5432/postgres), BENCH_PROFILE=DIR runs the load server from
// source under `bun --cpu-prof` and writes its profile (.cpuprofile and .md) into DIR.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import postgres from "postgres";
import type { LoadResult, Reply } from "./lib.ts";
import { ADMIN_URL, basic, BINARY, closedLoop, cpuMeter, dbUrl, freePort, httpClient, insertCodeGrants, loadAverage, merge, peakRssMiB, rssMiB } from "./lib.ts";
import { wireCounter } from "./wire-counter.ts";
import type { SsfBenchResult } from "./ssf.ts";
import { ssfBench } from "./ssf.ts";
import { dpopMintRuns, proofCheckMicros } from "./dpop.ts";
import { oidcCodeExchangeRuns } from "./oidc.ts";
import { peersBench } from "./peers.ts";

const ROOT = join(import.meta.dir, "..");
const DB_NAME = "ta_bench";
const N = Number(process.env.BENCH_N ?? 10000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const POOL = process.env.TA_DB_POOL ?? "4"; // the server's default
const CONCURRENCIES = [8, 32] as const;
const PGBENCH_SECONDS = Number(process.env.BENCH_PGBENCH_SECONDS ?? 5);
const DELAY_COUNT = Number(process.env.BENCH_DELAY_COUNT ?? 200);
const PROFILE_DIR = process.env.BENCH_PROFILE ? resolve(process.env.BENCH_PROFILE) : undefined;
const REDIRECT_URI = "http://127.0.0.1/callback";
/** Live token families of the user the operator phase disables. */
const DISABLE_FAMILIES = 10_000;
/** Revocations per Shared Signals run (three kinds of run, SSF_ROUNDS rounds), and revocations timed one at a time per delivery method. */
const SSF_ROUNDS = 3;
const SSF_PER_RUN = Math.floor(N / SSF_ROUNDS);
const SSF_LATENCY_SAMPLES = Number(process.env.BENCH_SSF_LATENCY_COUNT ?? 500);

const round2 = (x: number) => Math.round(x * 100) / 100;
const mb = (mib: number) => Math.round(mib * 1.048576 * 10) / 10;


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
  await admin.unsafe(`alter database ${DB_NAME} set track_functions = 'pl'`);
  await admin.end();
  return postgres(dbUrl(DB_NAME), { max: 1, onnotice: () => {} });
}

interface Server {
  url: string;
  pid: number;
  /** Spawn to the first 200 from GET /readyz (which pings the database). */
  startupMs: number;
  /** The server's own figure: opening the database to listening (its `server.started` log line). */
  inProcessMs: number | undefined;
  stop(): Promise<void>;
}

async function startServer(env: Record<string, string>, cwd: string, profileDir?: string): Promise<Server> {
  const port = await freePort();
  const command = profileDir
    ? ["bun", "--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${profileDir}`, join(ROOT, "src", "main.ts")]
    : [BINARY];
  const began = performance.now();
  const proc = Bun.spawn([...command, "serve", "--port", String(port)], {
    cwd,
    env: { PATH: process.env.PATH!, TA_LOG_LEVEL: "info", TA_DB_POOL: POOL, ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (proc.exitCode !== null) throw new Error("server exited during start");
    await Bun.sleep(1);
  }
  const startupMs = Math.round(performance.now() - began);
  // At TA_LOG_LEVEL=info the first line is server.started; the rest is drained unread.
  const reader = proc.stdout.getReader();
  let head = "";
  while ((env.TA_LOG_LEVEL ?? "info") === "info" && !head.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    head += new TextDecoder().decode(value);
  }
  void (async () => {
    while (!(await reader.read()).done);
  })();
  const started = head.split("\n").map((line) => JSON.parse(line || "{}")).find((line) => line.event === "server.started");
  return {
    url,
    pid: proc.pid,
    startupMs,
    inProcessMs: started?.startup_ms,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

async function coldStart(env: Record<string, string>, cwd: string, runs: number) {
  const spawnToServed: number[] = [];
  const inProcess: number[] = [];
  for (let i = 0; i < runs; i++) {
    const server = await startServer({ ...env, TA_LOG_LEVEL: "info" }, cwd);
    spawnToServed.push(server.startupMs);
    if (server.inProcessMs !== undefined) inProcess.push(server.inProcessMs);
    await server.stop();
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  return { median_ms: median(spawnToServed), min_ms: Math.min(...spawnToServed), runs: spawnToServed, in_process_median_ms: median(inProcess) };
}

// ---- pgbench ceilings: the same statements, on the same table, with the same indexes ----

interface Ceiling {
  tps: number;
  transactions: number;
  /** CPU of the PostgreSQL backends serving pgbench, µs per transaction. */
  database_cpu_us_per_tx: number;
  load: number;
}

const CEILING_SCRIPTS = {
  // What revocation must do at the least: one UPDATE of the session found by its jti.
  update: `\\set id :base + :client_id + :n * :clients
\\set n :n + 1
UPDATE sessions SET status = 'revoked', revoked_at = now(), updated_at = now(), revocation_reason = 'bench'
 WHERE access_token_jti = 'ceil-' || :id;
`,
  // What POST /oauth/revoke runs: the whole revocation function (family, feed entry).
  ta_revoke_token: `\\set id :base + :client_id + :n * :clients
\\set n :n + 1
SELECT outcome, session_id, revoked_count FROM ta_revoke_token('access_token', 'ceil-' || :id, :client, 'bench');
`,
  // What minting must do at the least: one INSERT of a session row.
  // (The row carries a token digest, as the server's do: a constant, the cheapest to make.)
  insert: `INSERT INTO sessions (client_id, subject, scope, audience, access_token_jti, access_token_sha256, access_expires_at)
VALUES (:client, 'bench', 'read', ARRAY['http://127.0.0.1/api'], gen_random_uuid()::text,
        'ceilingceilingceilingceilingceilingceiling0', now() + interval '1 hour') RETURNING id;
`,
} as const;

async function pgbench(
  monitor: postgres.Sql,
  name: keyof typeof CEILING_SCRIPTS,
  concurrency: number,
  vars: Record<string, string | number>,
): Promise<Ceiling> {
  const dir = mkdtempSync(join(tmpdir(), "ta-pgbench-"));
  writeFileSync(join(dir, "script.sql"), CEILING_SCRIPTS[name]);
  const load = loadAverage();
  const proc = Bun.spawn(
    [
      "pgbench", "-n", "-c", String(concurrency), "-j", "2", "-T", String(PGBENCH_SECONDS), "-M", "prepared",
      ...Object.entries({ ...vars, clients: concurrency, n: 0 }).flatMap(([k, v]) => ["-D", `${k}=${v}`]),
      "-f", join(dir, "script.sql"), "-h", new URL(ADMIN_URL).hostname, "-p", new URL(ADMIN_URL).port || "5432",
      "-U", decodeURIComponent(new URL(ADMIN_URL).username || "postgres"), DB_NAME,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  // The backends' CPU, sampled while they live (they exit with pgbench).
  await Bun.sleep(500);
  const pids = (await monitor`select pid from pg_stat_activity where datname = ${DB_NAME} and application_name = 'pgbench'`).map((r) => r.pid as number);
  const ticks = (pid: number) => {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
      return Number(fields[11]) + Number(fields[12]);
    } catch {
      return undefined;
    }
  };
  const first = new Map(pids.map((pid) => [pid, ticks(pid) ?? 0]));
  const last = new Map(first);
  const firstAt = performance.now();
  let lastAt = firstAt;
  while (proc.exitCode === null) {
    await Bun.sleep(200);
    let alive = 0;
    for (const pid of pids) {
      const t = ticks(pid);
      if (t !== undefined) {
        last.set(pid, t);
        alive++;
      }
    }
    if (alive === pids.length) lastAt = performance.now();
  }
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  rmSync(dir, { recursive: true, force: true });
  if (code !== 0) throw new Error(`pgbench ${name} failed: ${err}`);
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0);
  const transactions = Number(/actually processed: (\d+)/.exec(out)?.[1] ?? 0);
  const cpuSeconds = pids.reduce((a, pid) => a + (last.get(pid)! - first.get(pid)!), 0) / 100;
  const txInWindow = (tps * (lastAt - firstAt)) / 1000;
  return { tps: Math.round(tps), transactions, database_cpu_us_per_tx: txInWindow > 0 ? Math.round((cpuSeconds / txInWindow) * 1e6) : 0, load };
}

/** A checkpoint, then a moment for the machine to go quiet (the load average is printed per phase). */
async function settle(sql: postgres.Sql) {
  await sql`checkpoint`;
  await Bun.sleep(2000);
}

/** Inserts `count` live client_credentials-shaped sessions (jti 'ceil-<n>', a token digest, as the server's) for the ceilings. */
async function ceilingRows(sql: postgres.Sql, clientId: string, count: number) {
  await sql`
    insert into sessions (client_id, subject, scope, audience, access_token_jti, access_token_sha256, access_expires_at)
    select ${clientId}, 'bench', 'read', array['http://127.0.0.1/api'], 'ceil-' || g,
           rtrim(encode(sha256(('ceil-' || g)::bytea), 'base64'), '='), now() + interval '1 hour'
      from generate_series(1, ${count}) g`;
  await sql`analyze sessions`;
}

// ---- the counters behind "one round trip per revocation" ----
// Transactions are read from the `postgres` database (pg_stat_database is cluster-wide), so
// this script's monitoring adds none to ta_bench; ta_revoke_token calls can only be read in
// ta_bench itself (a handful of reads, noise against thousands of revocations).

async function revocationCounters(monitor: postgres.Sql, sql: postgres.Sql) {
  const calls = async (name: string) =>
    Number((await sql`select coalesce(sum(calls), 0)::bigint as n from pg_stat_user_functions where funcname = ${name}`)[0]!.n);
  const [xacts] = await monitor`select (xact_commit + xact_rollback)::bigint as n from pg_stat_database where datname = ${DB_NAME}`;
  // ta_revoke_tokens is the statement (one per batch); in it, ta_revoke_token runs for each
  // revocation its set-based fast path did not settle (refresh tokens, families, the rest).
  return { xacts: Number(xacts!.n), calls: await calls("ta_revoke_token"), statements: await calls("ta_revoke_tokens") };
}

/**
 * A busy backend flushes its statistics at most once a second, an idle one within 10 s
 * (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): read once every backend has been idle that long.
 */
async function settledCounters(monitor: postgres.Sql, sql: postgres.Sql) {
  await Bun.sleep(10_500);
  let counters = await revocationCounters(monitor, sql);
  // Until two reads half a second apart agree on the statements run.
  for (let i = 0; i < 20; i++) {
    await Bun.sleep(500);
    const again = await revocationCounters(monitor, sql);
    if (again.statements === counters.statements && again.calls === counters.calls) break;
    counters = again;
  }
  return counters;
}

/** Round trips per request by statement, for a few hundred requests through a second server. */
async function roundTrips(env: Record<string, string>, cwd: string, auth: string, count: number, codes: { codes: string[]; verifier: string }) {
  const target = new URL(dbUrl(DB_NAME));
  const wire = await wireCounter({ hostname: target.hostname, port: Number(target.port || 5432) });
  target.port = String(wire.port);
  const server = await startServer({ ...env, DATABASE_URL: target.toString(), TA_LOG_LEVEL: "warn" }, cwd);
  const http = httpClient(server.url);
  const post = (path: string, fields: Record<string, string>) => http.post(path, fields, auth);
  const tokens: string[] = [];
  const phases: Record<string, { requests: number; per_request: number; by_statement: Record<string, number> }> = {};
  // Each phase runs twice, counted the second time: every pooled connection has prepared its
  // statements by then (the first use of a statement on a connection costs one more).
  const measure = async (name: string, send: (i: number) => Promise<Reply>) => {
    const pass = async (from: number) => {
      for (let i = from; i < from + count; i += 8) {
        await Promise.all(Array.from({ length: Math.min(8, from + count - i) }, (_, j) => send(i + j)));
      }
      await Bun.sleep(50); // the coalesced NOTIFY
    };
    await pass(0);
    wire.reset();
    await pass(count);
    const counts = wire.counts();
    const notify = (statement: string) => statement.includes("pg_notify");
    const total = Object.entries(counts).filter(([k]) => !notify(k)).reduce((a, [, v]) => a + v, 0);
    phases[name] = {
      requests: count,
      per_request: round2(total / count),
      by_statement: Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, round2(v / count)])),
    };
  };
  await measure("mint", () =>
    post("/oauth/token", { grant_type: "client_credentials", scope: "read" }).then((reply) => {
      tokens.push((JSON.parse(reply.body) as { access_token: string }).access_token);
      return reply;
    }),
  );
  await measure("introspect", (i) => post("/oauth/introspect", { token: tokens[i]!, token_type_hint: "access_token" }));
  await measure("revoke", (i) => post("/oauth/revoke", { token: tokens[i]!, token_type_hint: "access_token" }));
  await measure("code exchange", (i) =>
    post("/oauth/token", { grant_type: "authorization_code", code: codes.codes[i]!, code_verifier: codes.verifier, redirect_uri: REDIRECT_URI }),
  );
  await server.stop();
  wire.stop();
  return phases;
}

/**
 * Operating the running server through its admin socket: disabling a user who holds
 * DISABLE_FAMILIES live token families (one transaction: every session it revoked carries the
 * same revoked_at, the transaction's now()), and what an admin call through the socket adds to a
 * CLI command's wall time (`clients list --limit 1` against `version`, which calls nothing).
 */
async function operatorPhase(sql: postgres.Sql, cwd: string, env: Record<string, string>, clientId: string) {
  const socket = join(cwd, "data", "admin.sock");
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://localhost/admin/v1${path}`, {
      method,
      unix: socket,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return response.json() as Promise<Record<string, unknown>>;
  };
  const user = await call("POST", "/users", { username: "bench-disabled", password: "bench-password" });
  await sql`
    with g as (
      insert into authorization_grants (code_hash, client_id, user_id, scope, expires_at, redeemed_at)
      select 'bench-disable-' || i, ${clientId}, ${user.id as string}, 'read', now() + interval '1 hour', now()
        from generate_series(1, ${DISABLE_FAMILIES}) i
      returning id)
    insert into sessions (grant_id, client_id, subject, scope, audience, access_token_jti, refresh_token_jti, access_expires_at, refresh_expires_at)
    select g.id, ${clientId}, ${user.id as string}, 'read', '{}', 'bench-disable-a-' || g.id, 'bench-disable-r-' || g.id,
           now() + interval '1 hour', now() + interval '1 day'
      from g`;
  await sql`analyze sessions`;
  const began = performance.now();
  const disabled = await call("POST", `/users/${user.id as string}/disable`);
  const disableMs = round2(performance.now() - began);
  const [after] = await sql`
    select count(*) filter (where status = 'created')::int as live, count(distinct revoked_at)::int as commits,
           count(*) filter (where status = 'revoked')::int as revoked
      from sessions where subject = ${user.id as string}`;
  const [events] = await sql`select count(*)::int as n from revocation_events e join sessions s on s.id = e.session_id where s.subject = ${user.id as string}`;
  if (after!.live !== 0 || after!.revoked !== DISABLE_FAMILIES) throw new Error(`disable left ${after!.live} live sessions, revoked ${after!.revoked}`);

  const wall = async (args: string[]) => {
    const times: number[] = [];
    for (let i = 0; i < 15; i++) {
      const started = performance.now();
      await sh([BINARY, ...args], { env, cwd });
      times.push(performance.now() - started);
    }
    return round2(times.sort((a, b) => a - b)[7]!);
  };
  const version = await wall(["version"]);
  const listed = await wall(["clients", "list", "--limit", "1"]);
  return {
    disable: {
      families: DISABLE_FAMILIES,
      ms: disableMs,
      sessions_revoked: disabled.sessions_revoked,
      revoked_at_values: after!.commits,
      feed_entries: events!.n,
    },
    cli_ms: { version_median: version, clients_list_median: listed, admin_call_adds: round2(listed - version) },
  };
}

/** The hidden fields of the form posting to `action` (the sign-in and consent pages). */
function formFields(html: string, action: string): [string, string][] {
  const form = html.slice(html.indexOf(`action="${action}"`));
  const decode = (v: string) => v.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  return [...form.slice(0, form.indexOf("</form>")).matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)].map((m) => [decode(m[1]!), decode(m[2]!)]);
}

/** A browser signed in as `username` (its cookies), through the sign-in page. */
async function signedInBrowser(base: string, username: string, password: string) {
  const cookies = new Map<string, string>();
  const send = async (path: string, form?: [string, string][]) => {
    const response = await fetch(path.startsWith("http") ? path : `${base}${path}`, {
      method: form ? "POST" : "GET",
      redirect: "manual",
      headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join("; "), ...(form ? { "content-type": "application/x-www-form-urlencoded" } : {}) },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      cookies.set(pair!.slice(0, pair!.indexOf("=")), pair!.slice(pair!.indexOf("=") + 1));
    }
    return { status: response.status, location: response.headers.get("location"), text: await response.text() };
  };
  const login = await send("/oauth/login?return_to=%2Faccount%2Fsessions");
  const signedIn = await send("/oauth/login", [...formFields(login.text, "/oauth/login"), ["username", username], ["password", password]]);
  if (signedIn.status !== 303) throw new Error(`sign-in failed: ${signedIn.status}`);
  return { send, cookie: () => [...cookies].map(([k, v]) => `${k}=${v}`).join("; ") };
}

/** Approves the authorization request at `path` on the consent page: from then on such requests answer with a code. */
async function rememberConsent(browser: Awaited<ReturnType<typeof signedInBrowser>>, path: string) {
  const consent = await browser.send(path);
  if (consent.status !== 200) throw new Error(`no consent page for ${path}: ${consent.status} ${consent.text.slice(0, 300)}`);
  const approved = await browser.send("/oauth/consent", [...formFields(consent.text, "/oauth/consent"), ["decision", "approve"]]);
  if (approved.status !== 303 || !approved.location?.includes("code=")) throw new Error(`consent failed for ${path}`);
}

/**
 * Authorization requests by a signed-in user whose consent is remembered — a client registered
 * by an operator against one known by its client ID metadata document (cached after the first
 * request) — interleaved, twice each. Answers each kind's runs and the document fetches made
 * during them (there must be none).
 */
async function authorizationPhase(
  base: string,
  browser: Awaited<ReturnType<typeof signedInBrowser>>,
  clients: { registered: string; document: string },
  documentHits: () => number,
  meter: () => ReturnType<typeof cpuMeter>,
) {
  const challenge = new Bun.CryptoHasher("sha256").update("bench-verifier-bench-verifier-bench-verifier").digest("base64url");
  const pathFor = (clientId: string) =>
    `/oauth/authorize?${new URLSearchParams({ response_type: "code", client_id: clientId, redirect_uri: REDIRECT_URI, scope: "read", state: "bench", code_challenge: challenge, code_challenge_method: "S256" })}`;
  // Consent once per client; remembered from then on, so each request below answers with a code.
  for (const clientId of Object.values(clients)) await rememberConsent(browser, pathFor(clientId));
  const http = httpClient(base);
  const headers = { cookie: browser.cookie() };
  const outboundBefore = documentHits();
  const runs: Record<"registered" | "document", LoadResult[]> = { registered: [], document: [] };
  for (let round = 0; round < 2; round++) {
    for (const kind of ["registered", "document"] as const) {
      const path = pathFor(clients[kind]);
      runs[kind].push(
        await closedLoop(Array.from({ length: N / 2 }, (_, i) => i), 32, () => http.get(path, headers), {
          meter,
          check: (_, r) => r.status === 302 && r.location?.startsWith(`${REDIRECT_URI}?code=`),
        }),
      );
    }
  }
  return { runs, documentFetches: documentHits() - outboundBefore };
}

async function main() {
  const began = performance.now();
  console.log(`load average ${loadAverage()}; building the executable…`);
  await sh(["bun", "run", "build"]);
  const sql = await freshDatabase();
  const monitor = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  const env = { DATABASE_URL: dbUrl(DB_NAME) };
  const cwd = mkdtempSync(join(tmpdir(), "ta-bench-"));
  await sh([BINARY, "migrate"], { env, cwd });

  console.log("cold start…");
  const coldPostgres = await coldStart(env, cwd, 7);
  const pgliteDir = mkdtempSync(join(tmpdir(), "ta-bench-pglite-"));
  const pgliteEnv = { TA_DATA_DIR: join(pgliteDir, "data") };
  await sh([BINARY, "migrate"], { env: pgliteEnv, cwd: pgliteDir });
  const coldPglite = await coldStart(pgliteEnv, pgliteDir, 5);
  rmSync(pgliteDir, { recursive: true, force: true });

  const client = JSON.parse(
    await sh(
      [BINARY, "clients", "create", "--name", "bench", "--grant-type", "client_credentials", "--grant-type", "authorization_code",
        "--grant-type", "refresh_token", "--redirect-uri", REDIRECT_URI, "--scope", "read write"],
      { env, cwd },
    ),
  ) as { client_id: string; client_secret: string };
  const auth = basic(client.client_id, client.client_secret);
  const user = JSON.parse(await sh([BINARY, "users", "create", "bench-user", "--password-stdin"], { env, cwd, stdin: "bench-password\n" })) as { id: string };
  const publicClient = JSON.parse(
    await sh([BINARY, "clients", "create", "--name", "bench public", "--public", "--redirect-uri", REDIRECT_URI, "--scope", "read"], { env, cwd }),
  ) as { client_id: string };
  // A client known by its metadata document, served here over loopback (TA_OUTBOUND_ALLOW_HOSTS).
  let documentHits = 0;
  const documentHost = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      documentHits++;
      return Response.json(
        { client_id: request.url, client_name: "bench document client", redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: "none", scope: "read" },
        { headers: { "cache-control": "max-age=3600" } },
      );
    },
  });
  const documentClientId = `http://127.0.0.1:${documentHost.port}/bench-client.json`;
  // The OpenID Connect phases' client: the bench client's grants, with openid among its scopes.
  const oidcClient = JSON.parse(
    await sh(
      [BINARY, "clients", "create", "--name", "bench oidc", "--grant-type", "authorization_code", "--grant-type", "refresh_token",
        "--redirect-uri", REDIRECT_URI, "--scope", "openid read"],
      { env, cwd },
    ),
  ) as { client_id: string; client_secret: string };
  // A Shared Signals receiver, and the loopback ports its streams push to.
  const ssfReceiver = JSON.parse(
    await sh([BINARY, "clients", "create", "--name", "bench receiver", "--grant-type", "client_credentials", "--scope", "ssf"], { env, cwd }),
  ) as { client_id: string; client_secret: string };
  const ssfPorts = { push: [await freePort(), await freePort(), await freePort()] as [number, number, number], dead: await freePort(), slow: await freePort() };
  const outboundHosts = [documentHost.port, ...ssfPorts.push, ssfPorts.dead, ssfPorts.slow].map((port) => `127.0.0.1:${port}`).join(",");

  // What the previous run and the set-up left to write (a dropped database, fresh rows) is
  // flushed now, not by a checkpoint in the middle of the first phase.
  await settle(sql);
  // The load server logs at warn: at info it writes three JSON lines per request to stdout.
  const server = await startServer({ ...env, TA_LOG_LEVEL: "warn", TA_OUTBOUND_ALLOW_HOSTS: outboundHosts }, cwd, PROFILE_DIR);
  await Bun.sleep(1000);
  const idleRss = rssMiB(server.pid);
  // The backends serving the server's connections; autovacuum (cleaning up after the
  // revocations and rotations) lands in "other processes".
  const databasePids = async () =>
    (await monitor`select pid from pg_stat_activity where datname = ${DB_NAME} and backend_type = 'client backend'`).map((r) => r.pid as number);
  const meter = () => cpuMeter([server.pid], databasePids);
  const results: Record<string, LoadResult> = {};
  const http = httpClient(server.url);
  const post = (path: string, fields: Record<string, string>) => http.post(path, fields, auth);
  const tokenOf = (body: string, field: "access_token" | "refresh_token") => (JSON.parse(body) as Record<string, string>)[field]!;

  // Minting: client_credentials, one INSERT per token. These tokens are revoked later.
  console.log("minting…");
  const accessTokens: string[] = [];
  for (const c of CONCURRENCIES) {
    results[`mint c=${c}`] = await closedLoop(
      // c=32 mints three times as many: its tokens feed the revocation rounds at c=32.
      Array.from({ length: c === 32 ? 3 * N : N }, (_, i) => i),
      c,
      () => post("/oauth/token", { grant_type: "client_credentials", scope: "read" }),
      { meter, check: (_, r) => r.status === 200 && accessTokens.push(tokenOf(r.body, "access_token")) },
    );
  }

  // DPoP (RFC 9449): client_credentials with a proof against the same grant without, interleaved.
  console.log("dpop…");
  const tokenEndpoint = (JSON.parse((await http.get("/.well-known/oauth-authorization-server")).body) as { token_endpoint: string }).token_endpoint;
  const dpopRuns = await dpopMintRuns({
    tokenEndpoint,
    perRun: Math.floor(N / 2),
    rounds: 2,
    mint: (headers) => http.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, auth, headers),
    meter,
  });
  results["mint c=32, bearer (DPoP runs)"] = merge(dpopRuns.bearer);
  results["mint c=32, DPoP"] = merge(dpopRuns.dpop);
  const proofCheck = await proofCheckMicros(2000);

  // Tokens for the Shared Signals runs (not a measured phase).
  const ssfTokens: string[] = [];
  await closedLoop(
    Array.from({ length: 3 * SSF_ROUNDS * SSF_PER_RUN + 2 * SSF_LATENCY_SAMPLES }, (_, i) => i),
    32,
    () => post("/oauth/token", { grant_type: "client_credentials", scope: "read" }),
    { meter, check: (_, r) => r.status === 200 && ssfTokens.push(tokenOf(r.body, "access_token")) },
  );

  // Refresh tokens through the authorization-code fixture (see the top of this file).
  console.log("code exchange…");
  const { codes, verifier } = await insertCodeGrants(sql, 2 * N, { clientId: client.client_id, userId: user.id, redirectUri: REDIRECT_URI });
  const refreshTokens: string[] = [];
  results["code exchange c=32"] = await closedLoop(
    codes,
    32,
    (code) => post("/oauth/token", { grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: REDIRECT_URI }),
    { meter, check: (_, r) => r.status === 200 && refreshTokens.push(tokenOf(r.body, "refresh_token")) },
  );

  // Refresh rotation: each refresh token once. The new access tokens are live.
  console.log("refresh rotation…");
  const liveTokens: string[] = [];
  const liveRefreshTokens: string[] = [];
  for (const [i, c] of CONCURRENCIES.entries()) {
    results[`refresh c=${c}`] = await closedLoop(
      refreshTokens.slice(i * N, (i + 1) * N),
      c,
      (token) => post("/oauth/token", { grant_type: "refresh_token", refresh_token: token }),
      {
        meter,
        check: (_, r) => {
          if (r.status !== 200) return;
          liveTokens.push(tokenOf(r.body, "access_token"));
          liveRefreshTokens.push(tokenOf(r.body, "refresh_token"));
        },
      },
    );
  }

  // Introspection of live tokens, each once per phase; every answer must say active.
  console.log("introspection…");
  let introspectedInactive = 0;
  for (const [i, c] of CONCURRENCIES.entries()) {
    results[`introspect c=${c}`] = await closedLoop(
      liveTokens.slice(i * N, (i + 1) * N),
      c,
      (token) => post("/oauth/introspect", { token, token_type_hint: "access_token" }),
      { meter, check: (_, r) => r.status === 200 && !(JSON.parse(r.body) as { active: boolean }).active && introspectedInactive++ },
    );
  }

  // Introspection as resource servers do it: the same tokens again and again (a hundred
  // tokens, each introspected N/100 times in turn), answered from the cache of verified live
  // tokens. No revocation happens meanwhile; each one would empty the cache.
  const repeated = Array.from({ length: N }, (_, i) => liveTokens[i % 100]!);
  results["introspect repeated c=32"] = await closedLoop(
    repeated,
    32,
    (token) => post("/oauth/introspect", { token, token_type_hint: "access_token" }),
    { meter, check: (_, r) => r.status === 200 && !(JSON.parse(r.body) as { active: boolean }).active && introspectedInactive++ },
  );

  // Revocation: every request a distinct, correctly hinted token; c=32 in rounds on this one
  // long-lived process, comparing the first and the last round. The counters prove how many
  // transactions each revocation cost: ta_revoke_token calls and commits in this database,
  // less the NOTIFY transactions (coalesced revocation notices sent after commit, and the
  // introspection cache's heartbeats), counted by LISTENing.
  console.log("revocation…");
  let notifications = 0;
  const listener = await sql.listen("ta_revocations", () => notifications++);
  const before = await settledCounters(monitor, sql);
  const notificationsBefore = notifications;
  results["revoke c=8"] = await closedLoop(accessTokens.slice(0, N), 8, (token) => post("/oauth/revoke", { token, token_type_hint: "access_token" }), { meter });
  const roundSize = Math.floor((3 * N) / ROUNDS);
  const rounds: LoadResult[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const slice = accessTokens.slice(N + r * roundSize, N + (r + 1) * roundSize);
    rounds.push(await closedLoop(slice, 32, (token) => post("/oauth/revoke", { token, token_type_hint: "access_token" }), { meter }));
  }
  results["revoke c=32"] = merge(rounds);
  // Refresh tokens of authorization-code sessions: the family path (grant row locked first).
  results["revoke family c=32"] = await closedLoop(
    liveRefreshTokens.slice(0, N),
    32,
    (token) => post("/oauth/revoke", { token, token_type_hint: "refresh_token" }),
    { meter },
  );
  const revocations = 2 * N + roundSize * ROUNDS;
  const after = await settledCounters(monitor, sql);
  const notifyTransactions = notifications - notificationsBefore;
  await listener.unlisten();
  const calls = after.calls - before.calls;
  const statements = after.statements - before.statements;
  const xacts = after.xacts - before.xacts;

  // Proof of effect: every 20th revoked token is introspected, and must be dead.
  const sample = [...accessTokens.slice(0, N + roundSize * ROUNDS), ...liveRefreshTokens.slice(0, N)].filter((_, i) => i % 20 === 0);
  let stillActive = 0;
  for (const token of sample) {
    const reply = await post("/oauth/introspect", { token });
    if ((JSON.parse(reply.body) as { active: boolean }).active) stillActive++;
  }
  const [dbRevoked] = await sql`select count(*)::int as n from sessions where status = 'revoked'`;

  console.log("shared signals…");
  const ssf: SsfBenchResult = await ssfBench({
    base: server.url,
    receiver: { clientId: ssfReceiver.client_id, secret: ssfReceiver.client_secret, auth: basic(ssfReceiver.client_id, ssfReceiver.client_secret) },
    ports: ssfPorts,
    tokens: ssfTokens,
    perRun: SSF_PER_RUN,
    rounds: SSF_ROUNDS,
    latencySamples: SSF_LATENCY_SAMPLES,
    revoke: (token) => post("/oauth/revoke", { token, token_type_hint: "access_token" }),
    meter,
  });
  results["revoke c=32, no SSF stream"] = merge(ssf.runs.none);
  results["revoke c=32, 3 SSF push streams"] = merge(ssf.runs.push);
  results["revoke c=32, a dead and a slow SSF receiver"] = merge(ssf.runs.dead);
  const peakRss = peakRssMiB(server.pid);
  const afterLoadRss = rssMiB(server.pid);

  console.log("authorization requests…");
  const browser = await signedInBrowser(server.url, "bench-user", "bench-password");
  const authorization = await authorizationPhase(
    server.url,
    browser,
    { registered: publicClient.client_id, document: documentClientId },
    () => documentHits,
    meter,
  );
  documentHost.stop(true);
  results["authorize registered c=32"] = merge(authorization.runs.registered);
  results["authorize document c=32"] = merge(authorization.runs.document);

  // OpenID Connect: code exchange with an ID token against without, codes from the authorization endpoint.
  console.log("code exchange with ID tokens…");
  // Not while the SSF phase's last long poll still waits: meanwhile the server keeps re-reading the
  // revocation log, which slowed every request (and PostgreSQL's share of it) two- to threefold.
  await ssf.lastLongPoll;
  const oidcAuth = basic(oidcClient.client_id, oidcClient.client_secret);
  const oidc = await oidcCodeExchangeRuns({
    clientId: oidcClient.client_id,
    redirectUri: REDIRECT_URI,
    perRun: Math.floor(N / 2),
    rounds: 2,
    consent: (path) => rememberConsent(browser, path),
    authorize: (path) => http.get(path, { cookie: browser.cookie() }),
    token: (fields) => http.post("/oauth/token", fields, oidcAuth),
    meter,
  });
  results["code exchange c=32, no ID token (OIDC runs)"] = merge(oidc.runs.plain);
  results["code exchange c=32, ID token"] = merge(oidc.runs.openid);

  console.log("operating the running server…");
  const operating = await operatorPhase(sql, cwd, env, client.client_id);
  await server.stop();

  console.log("round trips on the wire…");
  const wire = await roundTrips(env, cwd, auth, 400, await insertCodeGrants(sql, 800, { clientId: client.client_id, userId: user.id, redirectUri: REDIRECT_URI }));

  console.log("revocation-to-rejection delay…");
  const delayFile = join(mkdtempSync(join(tmpdir(), "ta-bench-delay-")), "delay.json");
  await sh(["bun", join(ROOT, "bench", "revocation-delay.ts"), "--server", BINARY, "--database-url", ADMIN_URL, "--count", String(DELAY_COUNT), "--out", delayFile]);
  const delay = JSON.parse(readFileSync(delayFile, "utf8")) as { delay_ms: Record<string, number>; revoke_latency_ms: Record<string, number> };

  console.log("pgbench ceilings…");
  // Each run updates fresh rows (a per-client counter): base offsets keep the runs apart.
  const perRun = 20_000 * PGBENCH_SECONDS;
  await ceilingRows(sql, client.client_id, perRun * 4);
  await settle(sql);
  const ceilings: Record<string, Ceiling> = {};
  let base = 1;
  for (const c of CONCURRENCIES) {
    for (const name of ["update", "ta_revoke_token", "insert"] as const) {
      ceilings[`${name} c=${c}`] = await pgbench(monitor, name, c, { base, client: client.client_id });
      if (name !== "insert") {
        if (ceilings[`${name} c=${c}`]!.transactions > perRun) throw new Error("pgbench ran out of ceiling rows: raise perRun");
        base += perRun;
      }
    }
  }
  await sql.end();
  await monitor.end();

  const revoke32 = results["revoke c=32"]!;
  const ratios = Object.fromEntries(
    CONCURRENCIES.flatMap((c) => [
      [`revoke/update c=${c}`, round2(results[`revoke c=${c}`]!.rps / ceilings[`update c=${c}`]!.tps)],
      [`revoke/ta_revoke_token c=${c}`, round2(results[`revoke c=${c}`]!.rps / ceilings[`ta_revoke_token c=${c}`]!.tps)],
      [`mint/insert c=${c}`, round2(results[`mint c=${c}`]!.rps / ceilings[`insert c=${c}`]!.tps)],
      [`introspect/revoke c=${c}`, round2(results[`introspect c=${c}`]!.rps / results[`revoke c=${c}`]!.rps)],
    ]),
  );
  ratios["mint DPoP/bearer c=32"] = round2(results["mint c=32, DPoP"]!.rps / results["mint c=32, bearer (DPoP runs)"]!.rps);
  ratios["revoke with 3 push streams/without c=32"] = round2(results["revoke c=32, 3 SSF push streams"]!.rps / results["revoke c=32, no SSF stream"]!.rps);
  ratios["revoke with dead receivers/without c=32"] = round2(results["revoke c=32, a dead and a slow SSF receiver"]!.rps / results["revoke c=32, no SSF stream"]!.rps);
  ratios["authorize document/registered c=32"] = round2(results["authorize document c=32"]!.rps / results["authorize registered c=32"]!.rps);
  ratios["code exchange ID token/without c=32"] = round2(results["code exchange c=32, ID token"]!.rps / results["code exchange c=32, no ID token (OIDC runs)"]!.rps);
  const roundDrop = round2((1 - rounds.at(-1)!.rps / rounds[0]!.rps) * 100);
  const requestPathTransactions = round2((xacts - notifyTransactions) / revocations);
  const targets = [
    target("revocation c=32 ≥ 60 % of the pgbench UPDATE ceiling", `${ratios["revoke/update c=32"]} (${revoke32.rps} req/s vs ${ceilings["update c=32"]!.tps} tps)`, ratios["revoke/update c=32"]! >= 0.6),
    target("revocation c=32 p99 < 10 ms", `${revoke32.p99} ms`, revoke32.p99 < 10),
    target(
      "one database round trip per revocation (at most)",
      `${wire.revoke!.per_request} round trips on the wire, ${round2(statements / revocations)} statements, ${requestPathTransactions} transactions per revocation`,
      wire.revoke!.per_request <= 1.01 && statements <= revocations && requestPathTransactions <= 1.01,
    ),
    target("introspection ≥ 2× the revocation rate (c=32)", `${ratios["introspect/revoke c=32"]}× (${results["introspect c=32"]!.rps} vs ${revoke32.rps} req/s)`, ratios["introspect/revoke c=32"]! >= 2),
    target("minting ≥ 60 % of the INSERT ceiling (c=32)", `${ratios["mint/insert c=32"]} (${results["mint c=32"]!.rps} req/s vs ${ceilings["insert c=32"]!.tps} tps)`, ratios["mint/insert c=32"]! >= 0.6),
    target(
      "code exchange c=32 ≥ 3 200/s or ≥ 80 % of refresh rotation (c=32), at most one round trip each",
      `${results["code exchange c=32"]!.rps} req/s = ${round2(results["code exchange c=32"]!.rps / results["refresh c=32"]!.rps)}× refresh (${results["refresh c=32"]!.rps} req/s); ${wire["code exchange"]!.per_request} round trips on the wire`,
      (results["code exchange c=32"]!.rps >= 3200 || results["code exchange c=32"]!.rps >= 0.8 * results["refresh c=32"]!.rps) && wire["code exchange"]!.per_request <= 1.01,
    ),
    target(
      `disabling a user with ${DISABLE_FAMILIES} live families: one transaction, < 1 s, every family dead`,
      `${operating.disable.ms} ms, ${operating.disable.sessions_revoked} sessions revoked at ${operating.disable.revoked_at_values} instant(s), ${operating.disable.feed_entries} feed entries`,
      operating.disable.ms < 1000 && operating.disable.revoked_at_values === 1 && operating.disable.sessions_revoked === DISABLE_FAMILIES,
    ),
    target(
      "an admin call through the socket adds < 5 ms to a CLI command",
      `${operating.cli_ms.admin_call_adds} ms (clients list ${operating.cli_ms.clients_list_median} ms against version ${operating.cli_ms.version_median} ms, medians of 15)`,
      operating.cli_ms.admin_call_adds < 5,
    ),
    target(
      "an authorization request by a client with a cached metadata document: no outbound fetch, within 10 % of a registered client's",
      `${ratios["authorize document/registered c=32"]}× (${results["authorize document c=32"]!.rps} vs ${results["authorize registered c=32"]!.rps} req/s, runs ${authorization.runs.document.map((r) => r.rps).join(", ")} vs ${authorization.runs.registered.map((r) => r.rps).join(", ")}); ${authorization.documentFetches} document fetches during ${results["authorize document c=32"]!.requests} requests`,
      ratios["authorize document/registered c=32"]! >= 0.9 && authorization.documentFetches === 0,
    ),
    target(
      "a DPoP client_credentials phase ≥ 70 % of the bearer phase (same run), every answer token_type DPoP",
      `${ratios["mint DPoP/bearer c=32"]} (${results["mint c=32, DPoP"]!.rps} vs ${results["mint c=32, bearer (DPoP runs)"]!.rps} req/s; runs ${dpopRuns.dpop.map((r) => r.rps).join(", ")} vs ${dpopRuns.bearer.map((r) => r.rps).join(", ")}); ${dpopRuns.notDpop} answers not DPoP; the library checks a proof in ${proofCheck.us_per_check} µs`,
      ratios["mint DPoP/bearer c=32"]! >= 0.7 && dpopRuns.notDpop === 0,
    ),
    target(
      "a code exchange that also signs an ID token ≥ 85 % of one without (same run), every ID token with its request's nonce",
      `${ratios["code exchange ID token/without c=32"]} (${results["code exchange c=32, ID token"]!.rps} vs ${results["code exchange c=32, no ID token (OIDC runs)"]!.rps} req/s; runs ${oidc.runs.openid.map((r) => r.rps).join(", ")} vs ${oidc.runs.plain.map((r) => r.rps).join(", ")}); ${oidc.wrong} answers wrong`,
      ratios["code exchange ID token/without c=32"]! >= 0.85 && oidc.wrong === 0,
    ),
    target(
      "revocation c=32 with three SSF push streams ≥ 90 % of the rate without (same run), every SET delivered",
      `${ratios["revoke with 3 push streams/without c=32"]} (${results["revoke c=32, 3 SSF push streams"]!.rps} vs ${results["revoke c=32, no SSF stream"]!.rps} req/s; runs ${ssf.runs.push.map((r) => r.rps).join(", ")} vs ${ssf.runs.none.map((r) => r.rps).join(", ")}); ${ssf.delivered.join(", ")} SETs of ${3 * SSF_PER_RUN} per run, ${ssf.duplicates} twice, the backlog drained ${ssf.drain_seconds.join(", ")} s after the load`,
      ratios["revoke with 3 push streams/without c=32"]! >= 0.9 && ssf.delivered.every((n) => n === 3 * SSF_PER_RUN),
    ),
    target("revocation → SET at a push receiver p99 < 50 ms", `p50 ${ssf.push_latency_ms.p50} ms, p99 ${ssf.push_latency_ms.p99} ms, max ${ssf.push_latency_ms.max} ms (${SSF_LATENCY_SAMPLES} revocations, one at a time)`, ssf.push_latency_ms.p99 < 50),
    target("revocation → SET at a long-polling receiver p99 < 100 ms", `p50 ${ssf.poll_latency_ms.p50} ms, p99 ${ssf.poll_latency_ms.p99} ms, max ${ssf.poll_latency_ms.max} ms (${SSF_LATENCY_SAMPLES} revocations, one at a time)`, ssf.poll_latency_ms.p99 < 100),
    target(
      "a dead and a slow SSF receiver do not slow revocation (within noise of none: ≥ 95 %)",
      `${ratios["revoke with dead receivers/without c=32"]} (${results["revoke c=32, a dead and a slow SSF receiver"]!.rps} vs ${results["revoke c=32, no SSF stream"]!.rps} req/s; runs ${ssf.runs.dead.map((r) => r.rps).join(", ")} vs ${ssf.runs.none.map((r) => r.rps).join(", ")})`,
      ratios["revoke with dead receivers/without c=32"]! >= 0.95,
    ),
    target("cold start < 150 ms on PostgreSQL", `${coldPostgres.median_ms} ms (median of ${coldPostgres.runs.length})`, coldPostgres.median_ms < 150),
    target("idle RSS < 100 MB on PostgreSQL", `${mb(idleRss)} MB`, mb(idleRss) < 100),
    target("no drop > 10 % from round 1 to the last on one process", `${roundDrop} %`, roundDrop <= 10),
    target("revocation-to-rejection delay p99 < 100 ms (feed)", `${delay.delay_ms.p99} ms`, delay.delay_ms.p99! < 100),
  ];

  const summary = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${navigator.hardwareConcurrency} cores shared by load generator, server and PostgreSQL (and other processes: see cpu.other and load)`,
    total_seconds: Math.round((performance.now() - began) / 1000),
    tokens_per_phase: N,
    pool: Number(POOL),
    server_log_level: "warn",
    cold_start: { postgres: coldPostgres, pglite: coldPglite },
    rss_mb: { idle: mb(idleRss), after_load: mb(afterLoadRss), peak: mb(peakRss) },
    results,
    ceilings,
    ratios,
    revoke_rounds_c32: rounds.map((r) => r.rps),
    revoke_rounds_c32_p99_ms: rounds.map((r) => r.p99),
    // Who slowed down, if anything did: the server process, or PostgreSQL (autovacuum and
    // checkpoints land in "other").
    revoke_rounds_c32_cpu_us: rounds.map((r) => ({
      server: Math.round((r.cpu.server / r.requests) * 1e6),
      database: Math.round((r.cpu.database / r.requests) * 1e6),
      other: Math.round((r.cpu.other / r.requests) * 1e6),
      load: r.cpu.load,
    })),
    round_drop_percent: roundDrop,
    revocation_round_trips: {
      revocations,
      ta_revoke_token_calls: calls,
      ta_revoke_tokens_statements: statements,
      mean_batch: round2(revocations / statements),
      transactions: xacts,
      notify_transactions: notifyTransactions,
      request_path_transactions_per_revocation: requestPathTransactions,
    },
    wire_round_trips: wire,
    proof: { revoked_sample_checked: sample.length, revoked_sample_still_active: stillActive, revoked_sessions_in_db: dbRevoked!.n, live_introspected_inactive: introspectedInactive },
    revocation_delay_ms: delay.delay_ms,
    dpop: {
      runs_rps: { bearer: dpopRuns.bearer.map((r) => r.rps), dpop: dpopRuns.dpop.map((r) => r.rps) },
      not_dpop: dpopRuns.notDpop,
      library_proof_check_us: proofCheck.us_per_check,
    },
    oidc: {
      per_run: Math.floor(N / 2),
      runs_rps: { without_id_token: oidc.runs.plain.map((r) => r.rps), id_token: oidc.runs.openid.map((r) => r.rps) },
      wrong_answers: oidc.wrong,
    },
    shared_signals: {
      per_run: SSF_PER_RUN,
      runs_rps: Object.fromEntries(Object.entries(ssf.runs).map(([k, v]) => [k, v.map((r) => r.rps)])),
      drain_seconds: ssf.drain_seconds,
      delivered: ssf.delivered,
      duplicates: ssf.duplicates,
      push_latency_ms: ssf.push_latency_ms,
      poll_latency_ms: ssf.poll_latency_ms,
    },
    operating,
    targets,
  };
  mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
  writeFileSync(join(ROOT, "bench", "results", "latest.json"), JSON.stringify(summary, null, 2) + "\n");
  const md = markdown(summary);
  writeFileSync(join(ROOT, "bench", "results", "latest.md"), md);
  console.log(md);
  if (stillActive > 0) throw new Error(`${stillActive} revoked tokens are still active`);
  // Every revocation killed a live session of its own (the access tokens' sessions, and one live
  // session per family): batching must not have dropped one.
  if (dbRevoked!.n !== revocations) throw new Error(`${dbRevoked!.n} revoked sessions for ${revocations} revocations`);
  if (introspectedInactive > 0) throw new Error(`${introspectedInactive} live tokens were introspected inactive`);
}

function target(name: string, measured: string, met: boolean) {
  return { name, measured, met };
}


function markdown(s: any): string {
  const perRequest = (seconds: number, r: LoadResult) => Math.round((seconds / r.requests) * 1e6);
  const rows = Object.entries(s.results as Record<string, LoadResult>).map(([name, r]) => {
    const statuses = Object.entries(r.statuses).map(([k, v]) => `${k}×${v}`).join(" ");
    const cpu = `${perRequest(r.cpu.server, r)} / ${perRequest(r.cpu.database, r)} / ${perRequest(r.cpu.loadgen, r)} / ${perRequest(r.cpu.other, r)}`;
    return `| ${name} | ${r.rps} | ${r.p50} | ${r.p90} | ${r.p99} | ${r.max} | ${statuses} | ${cpu} | ${r.cpu.load} |`;
  });
  const ceilingRows = Object.entries(s.ceilings as Record<string, Ceiling>).map(
    ([name, c]) => `| ${name} | ${c.tps} | ${c.database_cpu_us_per_tx} | ${c.load} |`,
  );
  const rt = s.revocation_round_trips;
  return [
    `Benchmark of ${s.date}: ${s.machine}. ${s.tokens_per_phase} distinct tokens per phase, pool ${s.pool}, server log level ${s.server_log_level}, whole run ${s.total_seconds} s.`,
    "",
    "| phase | req/s | p50 ms | p90 ms | p99 ms | max ms | statuses | CPU µs/request: server / PostgreSQL / load generator / other processes (incl. autovacuum) | load avg |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    "| pgbench ceiling (same table and indexes) | tps | PostgreSQL CPU µs/tx | load avg |",
    "| --- | --- | --- | --- |",
    ...ceilingRows,
    "",
    `Ratios: ${Object.entries(s.ratios).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
    "",
    `Revocation rounds at c=32 on one process (req/s): ${s.revoke_rounds_c32.join(", ")} (drop ${s.round_drop_percent} %), p99 ms by round: ${s.revoke_rounds_c32_p99_ms.join(", ")} (the table: all rounds' requests together); CPU µs per request server / PostgreSQL / other by round: ${s.revoke_rounds_c32_cpu_us.map((r: { server: number; database: number; other: number }) => `${r.server} / ${r.database} / ${r.other}`).join(", ")}.`,
    `Round trips: ${rt.revocations} revocations in ${rt.ta_revoke_tokens_statements} ta_revoke_tokens statements (batches of ${rt.mean_batch} on average; ${rt.ta_revoke_token_calls} revocations past its set-based fast path, through ta_revoke_token), ${rt.transactions} transactions in the database of which ${rt.notify_transactions} NOTIFYs (coalesced after commit, and cache heartbeats): ${rt.request_path_transactions_per_revocation} transactions per revocation on the request path.`,
    `Round trips counted on the wire (Sync, Flush or Query messages from a second server instance, ${s.wire_round_trips.revoke.requests} requests each after as many to warm up, c=8): ${Object.entries(
      s.wire_round_trips as Record<string, { per_request: number; by_statement: Record<string, number> }>,
    )
      .map(([name, w]) => `${name} ${w.per_request} per request (${Object.entries(w.by_statement).map(([q, n]) => `\`${q}\` ${n}`).join("; ")})`)
      .join("; ")}.`,
    `Proof of effect: ${s.proof.revoked_sample_checked} revoked tokens introspected, ${s.proof.revoked_sample_still_active} still active; ${s.proof.revoked_sessions_in_db} revoked sessions in the database; live tokens introspected inactive: ${s.proof.live_introspected_inactive}.`,
    `Cold start to the first served request: PostgreSQL ${s.cold_start.postgres.median_ms} ms (median; ${s.cold_start.postgres.in_process_median_ms} ms of it inside the server), PGlite ${s.cold_start.pglite.median_ms} ms (${s.cold_start.pglite.in_process_median_ms} ms inside).`,
    `RSS on PostgreSQL: idle ${s.rss_mb.idle} MB, after the load ${s.rss_mb.after_load} MB, peak ${s.rss_mb.peak} MB.`,
    `Revocation-to-rejection delay (feed mode, example API, PostgreSQL): p50 ${s.revocation_delay_ms.p50} ms, p99 ${s.revocation_delay_ms.p99} ms, max ${s.revocation_delay_ms.max} ms.`,
    `DPoP client_credentials (runs interleaved with bearer ones, N/2 each, twice): req/s bearer ${s.dpop.runs_rps.bearer.join(", ")}, DPoP ${s.dpop.runs_rps.dpop.join(", ")}; the resource-server library checks a proof in ${s.dpop.library_proof_check_us} µs (ES256, one after another).`,
    `Code exchange with an ID token (codes from GET /oauth/authorize, scope "openid read" against "read", each run's minted just before it; runs of ${s.oidc.per_run} interleaved, twice each): req/s without ${s.oidc.runs_rps.without_id_token.join(", ")}, with an ID token ${s.oidc.runs_rps.id_token.join(", ")}; ${s.oidc.wrong_answers} answers wrong (not 200, or an ID token missing, unasked for or without its request's nonce).`,
    `Shared Signals (${s.shared_signals.per_run} revocations per run, runs interleaved none / 3 push streams / a dead and a slow receiver, ${s.shared_signals.runs_rps.none.length} rounds): req/s none ${s.shared_signals.runs_rps.none.join(", ")}, push ${s.shared_signals.runs_rps.push.join(", ")}, dead and slow ${s.shared_signals.runs_rps.dead.join(", ")}; the push backlog drained ${s.shared_signals.drain_seconds.join(", ")} s after the load (${s.shared_signals.delivered.join(", ")} SETs, ${s.shared_signals.duplicates} twice); revocation → SET one at a time: push p50 ${s.shared_signals.push_latency_ms.p50} / p99 ${s.shared_signals.push_latency_ms.p99} ms, long poll p50 ${s.shared_signals.poll_latency_ms.p50} / p99 ${s.shared_signals.poll_latency_ms.p99} ms.`,
    `Operating the running server (admin socket): disabling a user with ${s.operating.disable.families} live families took ${s.operating.disable.ms} ms (${s.operating.disable.sessions_revoked} sessions revoked in one transaction, ${s.operating.disable.feed_entries} feed entries); a CLI command's wall time ${s.operating.cli_ms.clients_list_median} ms for \`clients list\` against ${s.operating.cli_ms.version_median} ms for \`version\` (medians of 15).`,
    "",
    "| target | measured | met |",
    "| --- | --- | --- |",
    ...s.targets.map((t: { name: string; measured: string; met: boolean }) => `| ${t.name} | ${t.measured} | ${t.met ? "met" : "**missed**"} |`),
    "",
  ].join("\n");
}

// `bun run bench --peers`: only the side-by-side with node-oidc-provider (bench/peers.ts).
if (process.argv.includes("--peers")) {
  await peersBench({ root: ROOT, binary: BINARY, adminUrl: ADMIN_URL, n: N, pool: POOL, sh, freshDatabase, databaseName: DB_NAME, dbUrl, startServer });
} else {
  await main();
}
