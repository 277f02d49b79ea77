// `bun run bench:soak`: a long run of mixed traffic against one process of the compiled executable
// on PostgreSQL — client_credentials minting (bearer and DPoP), code exchange with ID tokens,
// refresh rotation, introspection, UserInfo, revocation, admin API reads over the admin socket, and
// revocation-feed subscribers following every revocation — at a fixed concurrency, closed loop.
// Prints, per minute: requests per second, p99, the server's RSS and the errors (any answer that is
// not what the request must get), and then the targets of issue #20: no error, the last minute's
// throughput within 5 % of the second's, RSS growth after the second minute under 10 MB.
//
// Knobs (environment): SOAK_MINUTES (10), SOAK_CONCURRENCY (32), SOAK_SUBSCRIBERS (4), TA_DB_POOL (4),
// BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres). Writes bench/results/soak.md
// and soak.json.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import type { Reply } from "./lib.ts";
import { ADMIN_URL, basic, BINARY, dbUrl, freePort, httpClient, insertCodeGrants, percentile, rssMiB } from "./lib.ts";
import { exportJWK, generateKeyPair, SignJWT } from "jose";

const ROOT = join(import.meta.dir, "..");
const DB_NAME = "ta_soak";
const MINUTES = Number(process.env.SOAK_MINUTES ?? 10);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 32);
const POOL = process.env.TA_DB_POOL ?? "4";
const REDIRECT_URI = "http://127.0.0.1/callback";
const SUBSCRIBERS = Number(process.env.SOAK_SUBSCRIBERS ?? 4);
/** Codes made ahead for each minute (more than a minute's exchanges need at this machine's speed). */
const CODES_PER_MINUTE = 20_000;

/** How often each operation is picked (weights), and what it must answer. */
const MIX = [
  ["mint", 30],
  ["mint_dpop", 5],
  ["introspect", 25],
  ["revoke", 10],
  ["code_exchange", 10],
  ["refresh", 10],
  ["userinfo", 8],
  ["admin", 2],
] as const;
type Operation = (typeof MIX)[number][0];


async function sh(cmd: string[], env: Record<string, string>, stdin?: string): Promise<string> {
  const proc = Bun.spawn(cmd, { env: { PATH: process.env.PATH!, ...env }, stdin: stdin ? new TextEncoder().encode(stdin) : "ignore", stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${err}`);
  return out;
}

/** A pool of tokens to use: taken at random, some used once (revocation, refresh), some many times. */
class Pool {
  private readonly items: string[] = [];
  constructor(private readonly cap: number) {}
  add(item: string): void {
    if (this.items.length >= this.cap) this.items[Math.floor(Math.random() * this.items.length)] = item;
    else this.items.push(item);
  }
  pick(): string | undefined {
    return this.items[Math.floor(Math.random() * this.items.length)];
  }
  take(): string | undefined {
    if (this.items.length === 0) return undefined;
    const i = Math.floor(Math.random() * this.items.length);
    const [item] = this.items.splice(i, 1);
    return item;
  }
}

interface Minute {
  minute: number;
  seconds: number;
  requests: number;
  rps: number;
  p99_ms: number;
  rss_mb: number;
  errors: number;
  feed_events: number;
  /** Mean latency (ms) of each operation in the minute: which one slows down. */
  mean_ms_by_operation: Record<string, number>;
}

async function main() {
  const build = Bun.spawn(["bun", "run", "build"], { cwd: ROOT, stdout: "ignore", stderr: "inherit" });
  if ((await build.exited) !== 0) throw new Error("build failed");
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${DB_NAME} with (force)`);
  await admin.unsafe(`create database ${DB_NAME}`);
  await admin.end();
  const dir = mkdtempSync(join(tmpdir(), "ta-soak-"));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const socket = join(dir, "admin.sock");
  const env = { DATABASE_URL: dbUrl(DB_NAME), TA_ISSUER: issuer, TA_DATA_DIR: dir, TA_ADMIN_SOCKET: socket, TA_LOG_LEVEL: "warn", TA_DB_POOL: POOL };
  const cli = async (...args: string[]) => JSON.parse(await sh([BINARY, ...args], env));
  await sh([BINARY, "migrate"], env);
  const cc = await cli("clients", "create", "--name", "soak-cc", "--grant-type", "client_credentials", "--scope", "read");
  const web = await cli("clients", "create", "--name", "soak-web", "--redirect-uri", REDIRECT_URI, "--grant-type", "authorization_code", "--grant-type", "refresh_token", "--scope", "openid profile read");
  const rs = await cli("clients", "create", "--name", "soak-api", "--resource-server", `${issuer}/api`);
  const user = JSON.parse(await sh([BINARY, "users", "create", "soak-user", "--password-stdin"], env, "a soak password\n"));
  const sql = postgres(dbUrl(DB_NAME), { max: 2, onnotice: () => {} });

  const server = Bun.spawn([BINARY, "serve", "--port", String(port)], { env: { PATH: process.env.PATH!, ...env }, stdout: "inherit", stderr: "inherit" });
  for (;;) {
    try {
      if ((await fetch(`${issuer}/readyz`)).status === 200) break;
    } catch {
      // not yet
    }
    await Bun.sleep(20);
  }
  const http = httpClient(issuer);
  const ccAuth = basic(cc.client_id, cc.client_secret);
  const webAuth = basic(web.client_id, web.client_secret);
  const rsAuth = basic(rs.client_id, rs.client_secret);
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const jwk = await exportJWK(publicKey);
  /** A DPoP proof (RFC 9449 §4.2) of the soak's one key, as a DPoP client makes them. */
  const proofFor = (htu: string) =>
    new SignJWT({ jti: crypto.randomUUID(), htm: "POST", htu, iat: Math.floor(Date.now() / 1000) }).setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk }).sign(privateKey);

  // Feed subscribers: each follows every revocation over Server-Sent Events.
  let feedEvents = 0;
  const feeds = new AbortController();
  for (let i = 0; i < SUBSCRIBERS; i++) {
    void (async () => {
      const res = await fetch(`${issuer}/oauth/revocations`, { headers: { authorization: rsAuth, accept: "text/event-stream" }, signal: feeds.signal });
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) feedEvents += (decoder.decode(chunk).match(/^id: /gm) ?? []).length;
    })().catch(() => undefined);
  }

  const accessTokens = new Pool(20_000);
  const refreshTokens = new Pool(20_000);
  const openidTokens = new Pool(5_000);
  let codes: { codes: string[]; verifier: string } = { codes: [], verifier: "" };
  let nextCode = 0;
  const refill = async () => {
    codes = await insertCodeGrants(sql, CODES_PER_MINUTE, { clientId: web.client_id, userId: user.id, redirectUri: REDIRECT_URI, scope: "openid profile read" });
    nextCode = 0;
  };
  await refill();

  const weights = MIX.reduce((sum, [, w]) => sum + w, 0);
  const pickOperation = (): Operation => {
    let r = Math.random() * weights;
    for (const [name, weight] of MIX) if ((r -= weight) < 0) return name;
    return "mint";
  };
  const tokensOf = (reply: Reply) => JSON.parse(reply.body) as { access_token: string; refresh_token?: string; id_token?: string };

  /** One request of `operation`; answers whether its answer is what it must be. */
  async function run(operation: Operation): Promise<boolean> {
    switch (operation) {
      case "mint": {
        const reply = await http.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, ccAuth);
        if (reply.status !== 200) return false;
        accessTokens.add(tokensOf(reply).access_token);
        return true;
      }
      case "mint_dpop": {
        const proof = await proofFor(`${issuer}/oauth/token`);
        const reply = await http.post("/oauth/token", { grant_type: "client_credentials", scope: "read" }, ccAuth, { DPoP: proof });
        return reply.status === 200 && reply.body.includes('"token_type":"DPoP"');
      }
      case "introspect": {
        const token = accessTokens.pick();
        if (!token) return run("mint");
        const reply = await http.post("/oauth/introspect", { token }, rsAuth);
        return reply.status === 200 && reply.body.startsWith('{"active":');
      }
      case "revoke": {
        const token = accessTokens.take();
        if (!token) return run("mint");
        const reply = await http.post("/oauth/revoke", { token }, ccAuth);
        return reply.status === 200;
      }
      case "code_exchange": {
        if (nextCode >= codes.codes.length) return run("mint");
        const code = codes.codes[nextCode++]!;
        const reply = await http.post("/oauth/token", { grant_type: "authorization_code", code, code_verifier: codes.verifier, redirect_uri: REDIRECT_URI }, webAuth);
        if (reply.status !== 200) return false;
        const tokens = tokensOf(reply);
        if (!tokens.id_token) return false;
        refreshTokens.add(tokens.refresh_token!);
        openidTokens.add(tokens.access_token);
        return true;
      }
      case "refresh": {
        const token = refreshTokens.take();
        if (!token) return run("code_exchange");
        const reply = await http.post("/oauth/token", { grant_type: "refresh_token", refresh_token: token }, webAuth);
        if (reply.status !== 200) return false;
        const tokens = tokensOf(reply);
        refreshTokens.add(tokens.refresh_token!);
        openidTokens.add(tokens.access_token);
        return Boolean(tokens.id_token);
      }
      case "userinfo": {
        const token = openidTokens.pick();
        if (!token) return run("code_exchange");
        const reply = await http.get("/oauth/userinfo", { Authorization: `Bearer ${token}` });
        // A token rotated away by a refresh is no longer live: 401 is its right answer.
        return reply.status === 200 || reply.status === 401;
      }
      case "admin": {
        const res = await fetch("http://localhost/admin/v1/clients?limit=10", { unix: socket } as RequestInit);
        await res.arrayBuffer();
        return res.status === 200;
      }
    }
  }

  const minutes: Minute[] = [];
  const began = performance.now();
  const end = began + MINUTES * 60_000;
  let latencies: number[] = [];
  let byOperation: Record<string, { n: number; ms: number }> = {};
  let errors = 0;
  let errorSamples: string[] = [];
  let feedAtMinute = 0;
  const closeMinute = async (index: number, seconds: number) => {
    const sorted = latencies.sort((a, b) => a - b);
    const mean = Object.fromEntries(Object.entries(byOperation).map(([name, { n, ms }]) => [name, Math.round((ms / n) * 100) / 100]));
    const minute = { minute: index, seconds: Math.round(seconds), requests: sorted.length, rps: Math.round(sorted.length / seconds), p99_ms: percentile(sorted, 99), rss_mb: Math.round(rssMiB(server.pid) * 1.048576 * 10) / 10, errors, feed_events: feedEvents - feedAtMinute, mean_ms_by_operation: mean };
    minutes.push(minute);
    console.log(JSON.stringify(minute), errorSamples.length ? errorSamples.slice(0, 3) : "");
    feedAtMinute = feedEvents;
    latencies = [];
    byOperation = {};
    errors = 0;
    errorSamples = [];
    await refill();
  };
  let minuteStart = began;
  let minuteIndex = 1;
  let closing: Promise<void> | undefined;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const now = performance.now();
        if (now - minuteStart >= 60_000 && !closing) {
          const seconds = (now - minuteStart) / 1000;
          minuteStart = now;
          closing = closeMinute(minuteIndex++, seconds).finally(() => (closing = undefined));
        }
        const operation = pickOperation();
        const t0 = performance.now();
        let ok: boolean;
        try {
          ok = await run(operation);
        } catch (error) {
          ok = false;
          errorSamples.push(`${operation}: ${(error as Error).message}`);
        }
        const took = performance.now() - t0;
        latencies.push(took);
        const stats = (byOperation[operation] ??= { n: 0, ms: 0 });
        stats.n++;
        stats.ms += took;
        if (!ok) {
          errors++;
          if (errorSamples.length < 3) errorSamples.push(operation);
        }
      }
    }),
  );
  await closing;
  if (latencies.length > 0) await closeMinute(minuteIndex, (performance.now() - minuteStart) / 1000);
  feeds.abort();
  server.kill("SIGTERM");
  await server.exited;
  await sql.end();
  rmSync(dir, { recursive: true, force: true });

  const second = MINUTES >= 3 ? minutes[1] : undefined;
  // The last whole minute (the run's end may leave a few seconds over).
  const last = minutes.findLast((m) => m.seconds >= 55) ?? minutes.at(-1)!;
  const totalErrors = minutes.reduce((sum, m) => sum + m.errors, 0);
  const throughputDrift = second ? Math.round(((last.rps - second.rps) / second.rps) * 1000) / 10 : 0;
  const rssGrowth = second ? Math.round((last.rss_mb - second.rss_mb) * 10) / 10 : 0;
  // The drift and growth targets need a second and a later minute: a shorter run measures neither.
  const targets = {
    no_error: totalErrors === 0,
    last_minute_within_5_percent_of_second: second ? Math.abs(throughputDrift) <= 5 : null,
    rss_growth_after_second_minute_under_10_mb: second ? rssGrowth < 10 : null,
  };
  const verdict = (met: boolean | null) => (met === null ? "not measured (SOAK_MINUTES < 3)" : met ? "met" : "MISSED");
  const result = { minutes: MINUTES, concurrency: CONCURRENCY, pool: Number(POOL), mix: Object.fromEntries(MIX), per_minute: minutes, errors: totalErrors, throughput_drift_percent: throughputDrift, rss_growth_mb: rssGrowth, targets };
  const lines = [
    `# Soak: ${MINUTES} minutes of mixed traffic, one process on PostgreSQL, c=${CONCURRENCY}`,
    "",
    `Mix (weights): ${MIX.map(([name, w]) => `${name} ${w}`).join(", ")}; ${SUBSCRIBERS} revocation-feed subscribers.`,
    "",
    "| minute | seconds | req/s | p99 ms | RSS MB | errors | feed events |",
    "|---:|---:|---:|---:|---:|---:|---:|",
    ...minutes.map((m) => `| ${m.minute} | ${m.seconds} | ${m.rps} | ${m.p99_ms} | ${m.rss_mb} | ${m.errors} | ${m.feed_events} |`),
    "",
    `- errors: ${totalErrors} — ${verdict(targets.no_error)}`,
    `- last whole minute (${last.minute}) vs the second: ${throughputDrift} % — ${verdict(targets.last_minute_within_5_percent_of_second)} (within 5 %)`,
    `- RSS growth after the second minute: ${rssGrowth} MB — ${verdict(targets.rss_growth_after_second_minute_under_10_mb)} (< 10 MB)`,
    "",
  ];
  writeFileSync(join(import.meta.dir, "results", "soak.json"), JSON.stringify(result, null, 2) + "\n");
  writeFileSync(join(import.meta.dir, "results", "soak.md"), lines.join("\n"));
  console.log(lines.join("\n"));
}

await main();
