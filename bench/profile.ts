// Profiles one phase of the benchmark: `bun bench/profile.ts revoke|introspect|mint|dpop|code [count] [--plain]`.
// Tokens are minted by one server; a second, started from source under `bun --cpu-prof`,
// serves only the phase, so its profile (bench/results/profile/*.cpuprofile and .md) shows
// nothing else. With --plain the second server runs without the profiler and the phase's
// req/s, p99 and CPU per request (server / PostgreSQL / load generator) are printed: a quick
// A/B of one change. Needs the local PostgreSQL, like `bun run bench`.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import postgres from "postgres";
import type { Reply } from "./lib.ts";
import { basic, closedLoop, cpuMeter, freePort, httpClient, insertCodeGrants } from "./lib.ts";

const ROOT = join(import.meta.dir, "..");
const phase = process.argv[2] ?? "revoke";
const count = Number(process.argv[3] ?? 6000);
const plain = process.argv.includes("--plain");
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const DB_NAME = "ta_profile";
const url = new URL(ADMIN_URL);
url.pathname = `/${DB_NAME}`;
const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`);
await admin.unsafe(`create database ${DB_NAME}`);
const env = { ...process.env, DATABASE_URL: url.toString(), TA_LOG_LEVEL: "warn", TA_ISSUER: "http://127.0.0.1:1" };
const cwd = mkdtempSync(join(tmpdir(), "ta-profile-"));
const cli = async (...args: string[]) => {
  const stdin = args[0] === "users" ? new TextEncoder().encode("profile-password\n") : "ignore";
  const proc = Bun.spawn(["bun", join(ROOT, "src/main.ts"), ...args], { env, cwd, stdin, stdout: "pipe", stderr: "inherit" });
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error(`${args.join(" ")} failed`);
  return out;
};
await cli("migrate");
const REDIRECT_URI = "http://127.0.0.1/callback";
const client = JSON.parse(
  await cli("clients", "create", "--name", "profile", "--grant-type", "client_credentials", "--grant-type", "authorization_code",
    "--grant-type", "refresh_token", "--redirect-uri", REDIRECT_URI, "--scope", "read"),
) as { client_id: string; client_secret: string };
const auth = basic(client.client_id, client.client_secret);

async function serve(profile: boolean) {
  const port = await freePort();
  const flags = profile ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${join(ROOT, "bench", "results", "profile")}`] : [];
  const proc = Bun.spawn(["bun", ...flags, join(ROOT, "src/main.ts"), "serve", "--port", String(port)], { env, cwd, stdout: "ignore", stderr: "inherit" });
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break;
    } catch {
      await Bun.sleep(20);
    }
  }
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid, stop: () => (proc.kill("SIGTERM"), proc.exited) };
}

const noMeter = async () => async () => ({ server: 0, database: 0, loadgen: 0, other: 0, load: 0 });
const minter = await serve(false);
const tokens: string[] = [];
const minting = httpClient(minter.url);
await closedLoop(
  Array.from({ length: count }, (_, i) => i),
  32,
  () => minting.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, auth),
  { meter: noMeter, check: (_, reply) => reply.status === 200 && tokens.push(JSON.parse(reply.body).access_token) },
);
await minter.stop();

// Authorization codes for the code phase: the fixture of bench/run.ts (grant rows holding the
// SHA-256 hex of a known code and a PKCE S256 challenge), redeemed like any client would.
let fixture = { codes: [] as string[], verifier: "" };
if (phase === "code") {
  const user = JSON.parse(await cli("users", "create", "profile-user", "--password-stdin")) as { id: string };
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  fixture = await insertCodeGrants(sql, count, { clientId: client.client_id, userId: user.id, redirectUri: REDIRECT_URI });
  await sql.end();
}
const { codes, verifier } = fixture;

// DPoP proofs for the dpop phase, one per request, made before the run as bench/dpop.ts makes them.
const proofs: string[] = [];
if (phase === "dpop") {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const jwk = await exportJWK(publicKey);
  const htu = `${env.TA_ISSUER}/oauth/token`;
  for (let i = 0; i < count; i++) {
    proofs.push(await new SignJWT({ jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), htm: "POST", htu }).setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk }).sign(privateKey));
  }
}

const server = await serve(!plain);
const http = httpClient(server.url);
const databasePids = async () =>
  (await admin`select pid from pg_stat_activity where datname = ${DB_NAME} and backend_type = 'client backend'`).map((r) => r.pid as number);
const send: Record<string, (token: string) => Promise<Reply>> = {
  revoke: (token) => http.post("/oauth/revoke", { token, token_type_hint: "access_token" }, auth),
  introspect: (token) => http.post("/oauth/introspect", { token, token_type_hint: "access_token" }, auth),
  mint: () => http.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, auth),
  dpop: (proof) => http.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, auth, { DPoP: proof }),
  code: (code) => http.post("/oauth/token", { grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: REDIRECT_URI }, auth),
};
const result = await closedLoop(phase === "code" ? codes : phase === "dpop" ? proofs : tokens, 32, send[phase]!, { meter: plain ? () => cpuMeter([server.pid], databasePids) : noMeter });
await server.stop();
const perRequest = (seconds: number) => Math.round((seconds / result.requests) * 1e6);
console.log(phase, result.rps, "req/s, p99", result.p99, "ms, statuses", JSON.stringify(result.statuses));
if (plain) console.log(`CPU µs/request: server ${perRequest(result.cpu.server)}, PostgreSQL ${perRequest(result.cpu.database)}, load generator ${perRequest(result.cpu.loadgen)}, other ${perRequest(result.cpu.other)}`);
await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`);
await admin.end();
