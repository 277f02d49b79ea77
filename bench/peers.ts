// `bun run bench --peers` (issue 20): TokenAuthority side by side with node-oidc-provider
// (bench/peers/oidc-provider-server.mjs, its PostgreSQL adapter on the same cluster), driven by
// the same load generator (bench/lib.ts) at c=32 with a distinct token in every request, the two
// servers' runs alternating: minting (client_credentials), introspection of live tokens,
// revocation of tokens minted beforehand. Each run reports req/s, latency and CPU per request of
// the server process and of the PostgreSQL backends serving it. Afterwards a sample of the revoked
// tokens must introspect inactive at each server, and each database must hold what the revocations
// left. Writes bench/results/peers.json and peers.md; bench/README.md describes the configuration.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import type { CpuShare, LoadResult, Reply } from "./lib.ts";
import { basic, closedLoop, cpuMeter, freePort, httpClient, loadAverage, merge } from "./lib.ts";

export interface PeersBenchInput {
  root: string;
  binary: string;
  adminUrl: string;
  /** Distinct tokens per phase and server. */
  n: number;
  /** TokenAuthority's pool (TA_DB_POOL). */
  pool: string;
  sh(cmd: string[], opts?: { env?: Record<string, string>; stdin?: string; cwd?: string }): Promise<string>;
  /** A fresh TokenAuthority database (run.ts's), and its URL. */
  freshDatabase(): Promise<postgres.Sql>;
  databaseName: string;
  dbUrl(name: string): string;
  /** Starts the executable (run.ts's startServer), ready when it answers /readyz. */
  startServer(env: Record<string, string>, cwd: string): Promise<{ url: string; pid: number; stop(): Promise<void> }>;
}

const CONCURRENCY = 32;
const ROUNDS = Number(process.env.BENCH_PEER_ROUNDS ?? 2);
const PEER_DB = "ta_bench_peer";
const PEER_DIR = "bench/peers";
const PEER_SECRET = "bench-peer-secret-0123456789abcdef";
/** The peer's resource indicators (its default when the request names none is the opaque one). */
const JWT_RESOURCE = "http://127.0.0.1/api-jwt";
/** Tokens each server mints, introspects and revokes before the measured runs. */
const WARM_UP = 2000;

type Server = "TokenAuthority" | "node-oidc-provider";

interface Target {
  server: Server;
  url: string;
  auth: string;
  paths: { token: string; introspect: string; revoke: string };
  meter: () => Promise<() => Promise<CpuShare>>;
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const perRequest = (seconds: number, r: LoadResult) => Math.round((seconds / r.requests) * 1e6);

/** Starts the peer with the Node.js its package pins, and waits for its discovery document. */
async function startPeer(root: string, env: Record<string, string>) {
  const port = await freePort();
  const proc = Bun.spawn([join(root, PEER_DIR, "node_modules", ".bin", "node"), join(root, PEER_DIR, "oidc-provider-server.mjs")], {
    cwd: join(root, PEER_DIR),
    env: { PATH: process.env.PATH!, NODE_ENV: "production", PORT: String(port), ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    try {
      if ((await fetch(`${url}/.well-known/openid-configuration`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (proc.exitCode !== null) throw new Error("the peer exited during start");
    await Bun.sleep(20);
  }
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  const started = JSON.parse(new TextDecoder().decode(value).split("\n")[0]!) as { node: string; oidc_provider: string; pool: number };
  void (async () => {
    while (!(await reader.read()).done);
  })();
  return {
    url,
    pid: proc.pid,
    started,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}


export async function peersBench(input: PeersBenchInput): Promise<void> {
  const began = performance.now();
  const { root, binary } = input;
  const perRun = Math.floor(input.n / ROUNDS);
  const count = perRun * ROUNDS;
  console.log(`load average ${loadAverage()}; installing the peer (${PEER_DIR}) and building the executable…`);
  await input.sh(["npm", "install", "--prefix", join(root, PEER_DIR), "--no-audit", "--no-fund", "--loglevel", "error"]);
  await input.sh(["bun", "run", "build"]);

  // TokenAuthority: the executable on a fresh database, one client_credentials client.
  const taSql = await input.freshDatabase();
  const env = { DATABASE_URL: input.dbUrl(input.databaseName) };
  const cwd = mkdtempSync(join(tmpdir(), "ta-bench-peers-"));
  await input.sh([binary, "migrate"], { env, cwd });
  const client = JSON.parse(
    await input.sh([binary, "clients", "create", "--name", "bench", "--grant-type", "client_credentials", "--scope", "read write"], { env, cwd }),
  ) as { client_id: string; client_secret: string };
  const taVersion = (await input.sh([binary, "version"], { env, cwd })).trim();

  // The peer: its own fresh database on the same cluster (the adapter creates its table).
  const admin = postgres(input.adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${PEER_DB} with (force)`);
  await admin.unsafe(`create database ${PEER_DB}`);
  const peerSql = postgres(input.dbUrl(PEER_DB), { max: 1, onnotice: () => {} });
  // node-postgres's default, and the peer's fastest of 4, 10 and 16 on this machine.
  const peerPool = process.env.BENCH_PEER_POOL ?? "10";
  const backends = (database: string) => async () =>
    (await admin`select pid from pg_stat_activity where datname = ${database} and backend_type = 'client backend'`).map((r) => r.pid as number);

  await admin`checkpoint`;
  // Both servers are stopped however the run ends.
  const running: { stop(): Promise<void> }[] = [];
  let measured: Awaited<ReturnType<typeof measure>>;
  let peerStarted: Awaited<ReturnType<typeof startPeer>>["started"];
  try {
    const ta = await input.startServer({ ...env, TA_LOG_LEVEL: "warn" }, cwd);
    running.push(ta);
    const peer = await startPeer(root, { DATABASE_URL: input.dbUrl(PEER_DB), PEER_CLIENT_ID: "bench", PEER_CLIENT_SECRET: PEER_SECRET, PEER_DB_POOL: peerPool });
    running.push(peer);
    peerStarted = peer.started;
    measured = await measure(
      {
        TokenAuthority: {
          server: "TokenAuthority",
          url: ta.url,
          auth: basic(client.client_id, client.client_secret),
          paths: { token: "/oauth/token", introspect: "/oauth/introspect", revoke: "/oauth/revoke" },
          meter: () => cpuMeter([ta.pid], backends(input.databaseName)),
        },
        "node-oidc-provider": {
          server: "node-oidc-provider",
          url: peer.url,
          auth: basic("bench", PEER_SECRET),
          paths: { token: "/token", introspect: "/token/introspection", revoke: "/token/revocation" },
          meter: () => cpuMeter([peer.pid], backends(PEER_DB)),
        },
      },
      perRun,
      admin,
    );
  } finally {
    for (const server of running) await server.stop();
  }
  const { runs, wrong, proof } = measured;
  const [taRevoked] = await taSql`select count(*)::int as n from sessions where status = 'revoked'`;
  const [peerRows] = await peerSql`select count(*)::int as n from oidc_payloads where model = 'ClientCredentials'`;
  await taSql.end();
  await peerSql.end();
  await admin.end();
  rmSync(cwd, { recursive: true, force: true });

  const results = Object.fromEntries(Object.entries(runs).map(([label, parts]) => [label, merge(parts)]));
  const ratio = (phase: string) => {
    const a = results[`${phase} TokenAuthority`]!;
    const b = results[`${phase} node-oidc-provider`]!;
    return {
      rps: round2(a.rps / b.rps),
      p99: round2(b.p99 / a.p99),
      server_cpu: round2(perRequest(b.cpu.server, b) / perRequest(a.cpu.server, a)),
      database_cpu: round2(perRequest(b.cpu.database, b) / perRequest(a.cpu.database, a)),
    };
  };
  const ratios = { mint: ratio("mint"), introspect: ratio("introspect"), revoke: ratio("revoke") };
  const expected = { ta_revoked_sessions: count + WARM_UP, peer_client_credentials_rows: count };
  const summary = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${navigator.hardwareConcurrency} cores shared by the load generator, both servers and PostgreSQL`,
    total_seconds: Math.round((performance.now() - began) / 1000),
    concurrency: CONCURRENCY,
    tokens_per_phase_and_server: count,
    rounds: ROUNDS,
    warm_up_tokens: WARM_UP,
    token_authority: { version: taVersion, pool: Number(input.pool), log_level: "warn" },
    peer: { node: peerStarted.node, oidc_provider: peerStarted.oidc_provider, pool: peerStarted.pool, pg: (JSON.parse(readFileSync(join(root, PEER_DIR, "node_modules", "pg", "package.json"), "utf8")) as { version: string }).version },
    results,
    runs_rps: Object.fromEntries(Object.entries(runs).map(([label, parts]) => [label, parts.map((p) => p.rps)])),
    ratios,
    mint_jwt_ratio: round2(results["mint TokenAuthority"]!.rps / results["mint node-oidc-provider JWT"]!.rps),
    wrong_answers: wrong,
    proof: { ...proof, ta_revoked_sessions: taRevoked!.n, peer_client_credentials_rows: peerRows!.n, expected },
    targets: [
      { name: "revocation ≥ 4× the peer's req/s (c=32)", measured: ratios.revoke.rps, met: ratios.revoke.rps >= 4 },
      { name: "introspection ≥ 4× the peer's req/s (c=32)", measured: ratios.introspect.rps, met: ratios.introspect.rps >= 4 },
      { name: "minting ≥ 2.5× the peer's req/s (c=32, the peer's stored opaque tokens)", measured: ratios.mint.rps, met: ratios.mint.rps >= 2.5 },
    ],
  };
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "peers.json"), JSON.stringify(summary, null, 2) + "\n");
  const md = markdown(summary);
  writeFileSync(join(root, "bench", "results", "peers.md"), md);
  console.log(md);
  if (wrong > 0) throw new Error(`${wrong} answers were wrong (not 200, no token, or an introspected live token inactive)`);
  for (const [server, p] of Object.entries(proof)) if (p.still_active > 0) throw new Error(`${server}: ${p.still_active} revoked tokens still active`);
  if (taRevoked!.n !== expected.ta_revoked_sessions) throw new Error(`TokenAuthority: ${taRevoked!.n} revoked sessions for ${expected.ta_revoked_sessions} revocations`);
  if (peerRows!.n !== expected.peer_client_credentials_rows) throw new Error(`node-oidc-provider: ${peerRows!.n} token rows, expected the ${count} live ones`);
}

/** The phases against both servers: warm-up, minting, introspection, revocation, then the proof of effect. */
async function measure(targets: Record<Server, Target>, perRun: number, admin: postgres.Sql) {
  const count = perRun * ROUNDS;
  const runs: Record<string, LoadResult[]> = {};
  let wrong = 0;
  /** One measured run: a checkpoint and a second to settle first, and a fresh client's connections (for every server alike). */
  const run = async <T>(label: string, target: Target, items: readonly T[], send: (http: ReturnType<typeof httpClient>, item: T) => Promise<Reply>, ok: (reply: Reply) => boolean) => {
    await admin`checkpoint`;
    await Bun.sleep(1000);
    const http = httpClient(target.url);
    const result = await closedLoop(items, CONCURRENCY, (item) => send(http, item), { meter: target.meter, check: (_, reply) => !ok(reply) && wrong++ });
    (runs[label] ??= []).push(result);
    console.log(`  ${label}: ${result.rps} req/s, p99 ${result.p99} ms`);
  };
  /** Both servers' runs of a phase, in rounds; the order flips every round. */
  const alternate = async (phase: (target: Target, round: number) => Promise<void>) => {
    for (let round = 0; round < ROUNDS; round++) {
      const order: Server[] = round % 2 === 0 ? ["TokenAuthority", "node-oidc-provider"] : ["node-oidc-provider", "TokenAuthority"];
      for (const server of order) await phase(targets[server], round);
    }
  };
  const tokenOf = (reply: Reply) => (JSON.parse(reply.body) as { access_token: string }).access_token;
  const indexes = Array.from({ length: perRun }, (_, i) => i);
  const mint = { grant_type: "client_credentials", scope: "read" };

  // Not measured: the tokens to revoke, minted now and never introspected; and a warm-up of every
  // endpoint at each server (its own tokens minted, introspected and revoked), so that no measured
  // run is a process's first (the JIT, prepared statements, the pool's connections).
  console.log("tokens to revoke, and a warm-up…");
  const toRevoke: Record<Server, string[]> = { TokenAuthority: [], "node-oidc-provider": [] };
  for (const target of Object.values(targets)) {
    const http = httpClient(target.url);
    const fill = (into: string[], length: number) =>
      closedLoop(Array.from({ length }, (_, i) => i), CONCURRENCY, () => http.post(target.paths.token, mint, target.auth), {
        meter: target.meter,
        check: (_, reply) => (reply.status === 200 ? into.push(tokenOf(reply)) : wrong++),
      });
    const warm: string[] = [];
    await fill(warm, WARM_UP);
    await fill(toRevoke[target.server], count);
    for (const path of [target.paths.introspect, target.paths.revoke]) {
      await closedLoop(warm, CONCURRENCY, (token) => http.post(path, { token, token_type_hint: "access_token" }, target.auth), {
        meter: target.meter,
        check: (_, reply) => reply.status !== 200 && wrong++,
      });
    }
  }

  // Minting: the same form at both (grant_type, scope; no resource: at the peer its default
  // resource, opaque tokens). The peer's JWT access tokens are minted in a run of their own.
  console.log(`minting (c=${CONCURRENCY}, ${ROUNDS} rounds of ${perRun} per server)…`);
  const live: Record<Server, string[]> = { TokenAuthority: [], "node-oidc-provider": [] };
  await alternate(async (target) => {
    await run(`mint ${target.server}`, target, indexes, (http) => http.post(target.paths.token, mint, target.auth), (reply) => reply.status === 200 && live[target.server].push(tokenOf(reply)) > 0);
    if (target.server === "node-oidc-provider") {
      await run("mint node-oidc-provider JWT", target, indexes, (http) => http.post(target.paths.token, { ...mint, resource: JWT_RESOURCE }, target.auth), (reply) => reply.status === 200 && tokenOf(reply).startsWith("eyJ"));
    }
  });

  // Introspection: each live token once; every answer must say active.
  console.log("introspection…");
  await alternate(async (target, round) => {
    const tokens = live[target.server].slice(round * perRun, (round + 1) * perRun);
    await run(`introspect ${target.server}`, target, tokens, (http, token) => http.post(target.paths.introspect, { token, token_type_hint: "access_token" }, target.auth), (reply) => reply.status === 200 && (JSON.parse(reply.body) as { active: boolean }).active);
  });

  // Revocation: each token once, correctly hinted.
  console.log("revocation…");
  await alternate(async (target, round) => {
    const tokens = toRevoke[target.server].slice(round * perRun, (round + 1) * perRun);
    await run(`revoke ${target.server}`, target, tokens, (http, token) => http.post(target.paths.revoke, { token, token_type_hint: "access_token" }, target.auth), (reply) => reply.status === 200);
  });

  // Proof of effect: every 20th revoked token introspected at its server, unhinted, must be dead
  // (the caller then counts what each database holds).
  const proof = {} as Record<Server, { sample: number; still_active: number }>;
  for (const target of Object.values(targets)) {
    const http = httpClient(target.url);
    const sample = toRevoke[target.server].filter((_, i) => i % 20 === 0);
    let stillActive = 0;
    for (const token of sample) {
      const reply = await http.post(target.paths.introspect, { token }, target.auth);
      if (reply.status !== 200 || (JSON.parse(reply.body) as { active: boolean }).active) stillActive++;
    }
    proof[target.server] = { sample: sample.length, still_active: stillActive };
  }
  return { runs, wrong, proof };
}

function markdown(s: any): string {
  const rows = Object.entries(s.results as Record<string, LoadResult>).map(([label, r]) => {
    const statuses = Object.entries(r.statuses).map(([k, v]) => `${k}×${v}`).join(" ");
    const cpu = `${perRequest(r.cpu.server, r)} / ${perRequest(r.cpu.database, r)} / ${perRequest(r.cpu.loadgen, r)} / ${perRequest(r.cpu.other, r)}`;
    return `| ${label} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.max} | ${statuses} | ${cpu} | ${r.cpu.load} |`;
  });
  const ratioRows = Object.entries(s.ratios as Record<string, { rps: number; p99: number; server_cpu: number; database_cpu: number }>).map(
    ([phase, r]) => `| ${phase} | ${r.rps}× | ${r.p99}× | ${r.server_cpu}× | ${r.database_cpu}× |`,
  );
  const p = s.proof;
  return [
    `Side by side with node-oidc-provider, ${s.date}: ${s.machine}. c=${s.concurrency}, ${s.tokens_per_phase_and_server} distinct tokens per phase and server in ${s.rounds} rounds, the servers' runs alternating (the order flips every round); whole run ${s.total_seconds} s.`,
    `TokenAuthority ${s.token_authority.version} (the executable, pool ${s.token_authority.pool}, log level ${s.token_authority.log_level}); node-oidc-provider ${s.peer.oidc_provider} on Node.js ${s.peer.node} with node-postgres ${s.peer.pg} (pool ${s.peer.pool}); both on the same PostgreSQL.`,
    "",
    "| phase, server | req/s | p50 ms | p99 ms | max ms | statuses | CPU µs/request: server / PostgreSQL / load generator / other | load avg |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    "| phase (c=32) | req/s TokenAuthority ÷ peer | p99 peer ÷ TokenAuthority | server CPU per request peer ÷ TokenAuthority | PostgreSQL CPU per request peer ÷ TokenAuthority |",
    "| --- | --- | --- | --- | --- |",
    ...ratioRows,
    "",
    `Minting against the peer's JWT access tokens (signed, not stored): ${s.mint_jwt_ratio}×.`,
    `Runs (req/s): ${Object.entries(s.runs_rps).map(([label, rps]) => `${label} ${(rps as number[]).join(", ")}`).join("; ")}.`,
    `Proof of effect: ${s.wrong_answers} wrong answers; revoked tokens introspected inactive: TokenAuthority ${p.TokenAuthority.sample - p.TokenAuthority.still_active} of ${p.TokenAuthority.sample}, node-oidc-provider ${p["node-oidc-provider"].sample - p["node-oidc-provider"].still_active} of ${p["node-oidc-provider"].sample}; TokenAuthority's database holds ${p.ta_revoked_sessions} revoked sessions (${p.expected.ta_revoked_sessions} expected, the warm-up's included), the peer's table ${p.peer_client_credentials_rows} ClientCredentials rows (${p.expected.peer_client_credentials_rows} expected: the live tokens; its revocation deletes the row).`,
    "",
    "| target | measured | met |",
    "| --- | --- | --- |",
    ...s.targets.map((t: { name: string; measured: number; met: boolean }) => `| ${t.name} | ${t.measured}× | ${t.met ? "met" : "**missed**"} |`),
    "",
  ].join("\n");
}
