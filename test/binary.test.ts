// The compiled executable as a real process, copied alone into an empty directory.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { buildBinary, emptyDirWithBinary, runCli, startServer } from "./helpers/binary.ts";
import { adminConnection, databaseUrl, TEST_DATABASE_URL } from "./helpers/db.ts";

beforeAll(async () => {
  await buildBinary();
}, 120_000);

/** 400 unsupported_token_type proves the client authenticated (a bad client gets 401). */
async function clientAuthenticates(url: string, clientId: string, secret: string): Promise<boolean> {
  const res = await fetch(`${url}/oauth/revoke`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: "not-a-jwt", client_id: clientId, client_secret: secret }),
  });
  if (res.status !== 400 && res.status !== 401) throw new Error(`unexpected status ${res.status}`);
  return res.status === 400;
}

describe("executable on embedded PGlite", () => {
  let dir = "";
  beforeAll(() => {
    dir = emptyDirWithBinary().dir;
  });

  test("version and --help need no database", async () => {
    const version = await runCli(dir, ["version"]);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const help = await runCli(dir, ["clients", "create", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--redirect-uri");
    expect(existsSync(join(dir, "data"))).toBe(false);
  });

  test("bad flags and bad configuration: one line, exit 2, no stack trace", async () => {
    const flag = await runCli(dir, ["clients", "create", "--nmae", "x"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr.trim().split("\n")).toHaveLength(1);
    const config = await runCli(dir, ["serve"], { TA_DB_POOL: "many" });
    expect(config.code).toBe(2);
    expect(config.stderr.trim()).toBe('token-authority: TA_DB_POOL must be a whole number, got "many"');
  });

  test("serves, refuses a second process on the data directory, persists across restarts and SIGKILL", async () => {
    const created = await runCli(dir, ["clients", "create", "--name", "smoke"]);
    expect(created.code).toBe(0);
    const client = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    expect(client.client_secret.length).toBeGreaterThanOrEqual(43);

    const first = await startServer(dir);
    const ready = await fetch(`${first.url}/readyz`);
    expect(await ready.json()).toEqual({ status: "ready", database: "pglite" });
    expect(await clientAuthenticates(first.url, client.client_id, client.client_secret)).toBe(true);

    const second = await runCli(dir, ["serve", "--port", "0"]);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`is in use by process ${first.proc.pid}`);

    // Graceful shutdown: exit 0, database closed, lock released.
    expect(await first.stop("SIGTERM")).toBe(0);
    expect(first.lines.some((l) => l.includes('"server.stopped"'))).toBe(true);
    expect(existsSync(join(dir, "data", "token-authority.lock"))).toBe(false);

    const restarted = await startServer(dir);
    expect(await clientAuthenticates(restarted.url, client.client_id, client.client_secret)).toBe(true);
    expect(await restarted.stop("SIGKILL")).not.toBe(0);
    expect(existsSync(join(dir, "data", "token-authority.lock"))).toBe(true);

    // The stale lock of the killed process is detected and taken over.
    const afterKill = await startServer(dir);
    expect(await clientAuthenticates(afterKill.url, client.client_id, client.client_secret)).toBe(true);
    expect(await afterKill.stop()).toBe(0);
  }, 120_000);

  test("a second server on a taken port is refused with one line and exit 2, and the first keeps every request", async () => {
    const first = await startServer(dir);
    const port = new URL(first.url).port;
    const other = emptyDirWithBinary();
    const second = await runCli(other.dir, ["serve", "--port", port]);
    expect(second.code).toBe(2);
    expect(second.stderr).toBe(`token-authority: 127.0.0.1:${port} is already in use (another server is listening there)\n`);
    // Every request still lands on the first server (its JWKS, its one key).
    const kids = new Set<string>();
    for (let i = 0; i < 8; i++) kids.add(((await (await fetch(`${first.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys[0]!.kid);
    expect(kids.size).toBe(1);
    expect(await first.stop()).toBe(0);
  }, 120_000);

  test("every request is one JSON log line without tokens or secrets", async () => {
    const server = await startServer(dir);
    await fetch(`${server.url}/oauth/revoke`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: "Basic c2VjcmV0LWlkOnNlY3JldC1wdw==" },
      body: "token=eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
    });
    await server.stop();
    const requests = server.lines.map((l) => JSON.parse(l)).filter((l) => l.event === "http.request");
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({ method: "POST", route: "/oauth/revoke", status: 401 });
    const all = server.lines.join("\n");
    expect(all).not.toContain("eyJhbGciOiJFUzI1NiJ9");
    expect(all).not.toContain("c2VjcmV0");
  }, 60_000);

  test("throttles failed sign-ins per client IP: the 11th from one address gets 429, whatever the username", async () => {
    const server = await startServer(dir);
    try {
      const form = await fetch(`${server.url}/oauth/login`);
      const cookie = form.headers.getSetCookie()[0]!.split(";")[0]!;
      const csrfToken = /name="csrf_token" value="([^"]+)"/.exec(await form.text())![1]!;
      const attempt = (username: string) =>
        fetch(`${server.url}/oauth/login`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", cookie },
          body: new URLSearchParams({ csrf_token: csrfToken, username, password: "not the password" }),
        });
      // A new username each time, so only the per-IP counter can reach the limit.
      const statuses: number[] = [];
      for (let i = 1; i <= 10; i++) statuses.push((await attempt(`nobody-${i}`)).status);
      expect(statuses).toEqual(Array(10).fill(401));
      const locked = await attempt("nobody-11");
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    const events = server.lines.map((l) => JSON.parse(l));
    expect(events.find((e) => e.event === "security.login.throttled")).toMatchObject({ ip: "127.0.0.1" });
    expect(events.some((e) => e.event === "security.login.ip_unknown")).toBe(false);
  }, 60_000);
});

describe.skipIf(!TEST_DATABASE_URL)("executable on PostgreSQL", () => {
  const name = `ta_bin_${process.pid}`;
  const env = () => ({ DATABASE_URL: databaseUrl(name) });

  beforeAll(async () => {
    const admin = adminConnection();
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`create database ${name}`);
    await admin.end();
  });
  afterAll(async () => {
    const admin = adminConnection();
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  });

  test("migrates, serves, runs beside the CLI and a second instance, persists across restarts", async () => {
    const { dir } = emptyDirWithBinary();
    const a = await startServer(dir, env());
    // Several instances may share one database (each with an admin socket of its own).
    const b = await startServer(dir, { ...env(), TA_ADMIN_SOCKET: join(dir, "b.sock") });
    const created = await runCli(dir, ["clients", "create", "--name", "pg"], env());
    expect(created.code).toBe(0);
    const client = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    expect(await (await fetch(`${a.url}/readyz`)).json()).toEqual({ status: "ready", database: "postgres" });
    expect(await clientAuthenticates(a.url, client.client_id, client.client_secret)).toBe(true);
    expect(await clientAuthenticates(b.url, client.client_id, client.client_secret)).toBe(true);
    expect(await a.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
    const again = await startServer(dir, env());
    expect(again.lines.some((l) => l.includes('"db.migrated"'))).toBe(false);
    expect(await clientAuthenticates(again.url, client.client_id, client.client_secret)).toBe(true);
    expect(await again.stop()).toBe(0);
    const sql = postgres(databaseUrl(name), { max: 1 });
    const [keys] = await sql`select count(*)::int as n from signing_keys where status = 'active'`;
    await sql.end();
    expect(keys!.n).toBe(1);
  }, 120_000);

  test("an unreachable database: /readyz is 503 while /healthz stays 200", async () => {
    const { dir } = emptyDirWithBinary();
    const server = await startServer(dir, env());
    // Terminate every connection of the server's pool and forbid new ones.
    const admin = adminConnection();
    await admin.unsafe(`alter database ${name} with allow_connections false`);
    await admin.unsafe(`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${name}'`);
    try {
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ error: "temporarily_unavailable" });
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      await admin.unsafe(`alter database ${name} with allow_connections true`);
      await admin.end();
    }
    // And it recovers without a restart.
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await fetch(`${server.url}/readyz`)).status;
      if (status !== 200) await Bun.sleep(100);
    }
    expect(status).toBe(200);
    expect(await server.stop()).toBe(0);
  }, 60_000);
});
