// Revocation-to-rejection delay: the time from `POST /oauth/revoke` answering 200 to the
// example protected API refusing the token, over real HTTP on loopback. The authorization
// server runs in this process (Bun.serve over createApp) on PGlite, or on PostgreSQL with
// --database-url (a fresh database is created and dropped); the API runs beside it with the
// resource-server library in feed mode (or --mode introspection).
//
//   bun bench/revocation-delay.ts [--count 200] [--mode feed|introspection]
//                                 [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--out FILE]
import { parseArgs } from "node:util";
import postgres from "postgres";
import type { Database } from "../db/client.ts";
import { openPglite, openPostgres } from "../db/client.ts";
import { migrate } from "../db/migrate.ts";
import { createProtectedApi } from "../examples/protected-api.ts";
import { createApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/log.ts";
import { createAccessTokenVerifier } from "../src/resource-server/index.ts";
import { createServices } from "../src/services.ts";
import { serve } from "../test/helpers/serve.ts";

const { values: args } = parseArgs({
  options: {
    count: { type: "string", default: "200" },
    mode: { type: "string", default: "feed" },
    "database-url": { type: "string" },
    out: { type: "string" },
  },
});
const count = Number(args.count);
const mode = args.mode === "introspection" ? "introspection" : "feed";

async function openBenchDatabase(): Promise<{ database: Database; label: string; drop(): Promise<void> }> {
  const url = args["database-url"];
  if (!url) {
    const database = await openPglite();
    return { database, label: "pglite (in memory)", drop: async () => {} };
  }
  const name = `ta_bench_${process.pid}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const target = new URL(url);
  target.pathname = `/${name}`;
  const database = openPostgres(target.toString(), { poolSize: 10, connectTimeout: 5, statementTimeout: 10 });
  return {
    database,
    label: `postgresql (${target.host})`,
    async drop() {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1)!),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
};

const { database, label, drop } = await openBenchDatabase();
await migrate(database);
const config = loadConfig({ TA_ISSUER: "http://localhost:3000", TA_LOG_LEVEL: "warn" });
const services = await createServices({ config, database, log: createLogger("warn") });
const server = serve({ app: createApp(services) });

const owner = await services.clients.create({ name: "bench owner", type: "confidential" });
const resource = await services.clients.create({ name: "bench api", type: "confidential", resourceServer: config.defaultAudience });
const credentials = { clientId: resource.client.clientId, clientSecret: resource.secret! };
const verifier = createAccessTokenVerifier({
  issuer: config.issuer,
  audience: config.defaultAudience,
  jwksUri: `${server.url}/.well-known/jwks.json`,
  revocation:
    mode === "feed"
      ? { mode, url: `${server.url}/oauth/revocations`, ...credentials }
      : { mode, url: `${server.url}/oauth/introspect`, cacheTtlMs: 0, ...credentials },
});
await verifier.ready();
const api = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: createProtectedApi(verifier).fetch });
const apiUrl = `http://127.0.0.1:${api.port}/me`;
const ownerAuth = `Basic ${btoa(`${owner.client.clientId}:${owner.secret}`)}`;

const delays: number[] = [];
const revokeLatencies: number[] = [];
let apiCalls = 0;
for (let i = 0; i < count; i++) {
  const { accessToken } = await services.sessions.mint({
    client: owner.client,
    subject: `user-${i}`,
    scope: "read",
    audience: [config.defaultAudience],
    withRefreshToken: false,
  });
  const ask = async () => {
    apiCalls++;
    const res = await fetch(apiUrl, { headers: { authorization: `Bearer ${accessToken}` } });
    await res.arrayBuffer();
    return res.status;
  };
  if ((await ask()) !== 200) throw new Error("the API refused a live token");
  const started = performance.now();
  const revoked = await fetch(`${server.url}/oauth/revoke`, {
    method: "POST",
    headers: { authorization: ownerAuth, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: accessToken, token_type_hint: "access_token" }),
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

const result = {
  benchmark: "revocation-to-rejection delay",
  date: new Date().toISOString(),
  mode,
  database: label,
  revocations: count,
  delay_ms: summary(delays),
  revoke_latency_ms: summary(revokeLatencies),
  api_calls: apiCalls,
  target: "p99 < 100 ms",
  target_met: summary(delays).p99 < 100,
  note: "authorization server in-process (Bun.serve over createApp); example API in the same process; loopback HTTP",
};
console.log(JSON.stringify(result, null, 2));
if (args.out) await Bun.write(args.out, JSON.stringify(result, null, 2) + "\n");

verifier.close();
api.stop(true);
await server.stop();
await services.feed.close();
await database.close();
await drop();
