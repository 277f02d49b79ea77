// Revocation-to-rejection delay: the time from `POST /oauth/revoke` answering 200 to the
// example protected API refusing that token. Three processes on loopback HTTP: the server
// (`bun src/main.ts`, or the compiled executable with --server), the example API
// (examples/protected-api.ts, feed mode unless --mode introspection), and this one, which
// mints a token, checks the API accepts it, revokes it and polls the API until it answers 401.
//
//   bun bench/revocation-delay.ts [--count 200] [--mode feed|introspection] [--server dist/token-authority]
//                                 [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--out FILE]
//
// Without --database-url the server runs on embedded PGlite in a temporary directory; with
// it, on a fresh database created (and dropped) on that PostgreSQL server.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { basic, freePort, percentile } from "./lib.ts";

const ROOT = join(import.meta.dir, "..");
const { values: args } = parseArgs({
  options: {
    count: { type: "string", default: "200" },
    mode: { type: "string", default: "feed" },
    server: { type: "string" },
    "database-url": { type: "string" },
    out: { type: "string" },
  },
});
const count = Number(args.count);
const mode = args.mode === "introspection" ? "introspection" : "feed";
const serverCommand = args.server ? [args.server] : ["bun", join(ROOT, "src/main.ts")];

async function untilUp(url: string, process: { exitCode: number | null }): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (process.exitCode !== null) throw new Error(`${url}: the process exited with ${process.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await Bun.sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1)!),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
}

// The database: a temporary PGlite directory, or a fresh PostgreSQL database.
const dataDir = mkdtempSync(join(tmpdir(), "ta-bench-"));
const databaseName = `ta_bench_${process.pid}`;
let databaseUrl: string | undefined;
const admin = args["database-url"] ? postgres(args["database-url"], { max: 1, onnotice: () => {} }) : undefined;
if (admin) {
  await admin.unsafe(`create database ${databaseName}`);
  const url = new URL(args["database-url"]!);
  url.pathname = `/${databaseName}`;
  databaseUrl = url.toString();
}

const serverPort = await freePort();
const issuer = `http://127.0.0.1:${serverPort}`;
const audience = `${issuer}/api`;
const serverEnv = {
  ...process.env,
  PORT: String(serverPort),
  TA_ISSUER: issuer,
  TA_LOG_LEVEL: "warn",
  TA_DATA_DIR: dataDir,
  ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
};

/** Runs a command of the executable (before the server starts: PGlite allows one process). */
async function cli(...argv: string[]): Promise<Record<string, string>> {
  const proc = Bun.spawn([...serverCommand, ...argv], { env: serverEnv, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
  if (code !== 0) throw new Error(`${argv.join(" ")} failed: ${err}`);
  return JSON.parse(out || "{}");
}

const owner = await cli("clients", "create", "--name", "bench owner", "--grant-type", "client_credentials", "--scope", "read");
const api = await cli("clients", "create", "--name", "bench api", "--grant-type", "client_credentials", "--resource-server", audience);

const server = Bun.spawn([...serverCommand, "serve"], { env: serverEnv, stdout: "ignore", stderr: "inherit" });
await untilUp(`${issuer}/readyz`, server);
const apiPort = await freePort();
const apiProcess = Bun.spawn(["bun", join(ROOT, "examples/protected-api.ts")], {
  env: {
    ...process.env,
    TA_ISSUER: issuer,
    API_CLIENT_ID: api.client_id!,
    API_CLIENT_SECRET: api.client_secret!,
    API_REVOCATION_MODE: mode,
    API_PORT: String(apiPort),
  },
  stdout: "ignore",
  stderr: "inherit",
});

const ownerAuth = basic(owner.client_id!, owner.client_secret!);
const form = { authorization: ownerAuth, "content-type": "application/x-www-form-urlencoded" };
const apiUrl = `http://127.0.0.1:${apiPort}/me`;

const delays: number[] = [];
const revokeLatencies: number[] = [];
let apiCalls = 0;
try {
  await untilUp(`http://127.0.0.1:${apiPort}/healthz`, apiProcess);
  for (let i = 0; i < count; i++) {
    const minted = await fetch(`${issuer}/oauth/token`, { method: "POST", headers: form, body: "grant_type=client_credentials&scope=read" });
    if (minted.status !== 200) throw new Error(`token endpoint answered ${minted.status}: ${await minted.text()}`);
    const { access_token: token } = (await minted.json()) as { access_token: string };
    const ask = async () => {
      apiCalls++;
      const res = await fetch(apiUrl, { headers: { authorization: `Bearer ${token}` } });
      await res.arrayBuffer();
      return res.status;
    };
    if ((await ask()) !== 200) throw new Error("the API refused a live token");
    const started = performance.now();
    const revoked = await fetch(`${issuer}/oauth/revoke`, {
      method: "POST",
      headers: form,
      body: new URLSearchParams({ token, token_type_hint: "access_token" }),
    });
    const answered = performance.now();
    if (revoked.status !== 200) throw new Error(`revoke answered ${revoked.status}`);
    revokeLatencies.push(answered - started);
    for (;;) {
      const status = await ask();
      if (status === 401) break;
      if (status !== 200) throw new Error(`the API answered ${status}`);
      if (performance.now() - answered > 10_000) throw new Error("the API still accepts a revoked token after 10 s");
    }
    delays.push(performance.now() - answered);
  }
} finally {
  apiProcess.kill();
  server.kill();
  await Promise.all([apiProcess.exited, server.exited]);
  rmSync(dataDir, { recursive: true, force: true });
  if (admin) {
    await admin.unsafe(`drop database if exists ${databaseName} with (force)`);
    await admin.end();
  }
}

const delay = summary(delays);
const result = {
  benchmark: "revocation-to-rejection delay",
  date: new Date().toISOString(),
  mode,
  server: serverCommand.join(" "),
  database: databaseUrl ? "postgresql" : "pglite",
  revocations: count,
  delay_ms: delay,
  revoke_latency_ms: summary(revokeLatencies),
  api_calls: apiCalls,
  target: "p99 < 100 ms",
  target_met: delay.p99 < 100,
};
console.log(JSON.stringify(result, null, 2));
if (args.out) await Bun.write(args.out, JSON.stringify(result, null, 2) + "\n");
