// The CLI as a client of the running server, against the compiled executable: with the embedded
// server running, every command goes through its admin socket (mode 0600) and takes effect with
// no restart; with none, the same commands work on the database directly, with the same output.
// On PostgreSQL a change the CLI makes straight on the database reaches a running instance's
// caches at once. `--help` works for every command and group.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { commands } from "../src/main.ts";
import { basic } from "./helpers/app.ts";
import { buildBinary, emptyDirWithBinary, runCli, startServer } from "./helpers/binary.ts";
import { adminConnection, databaseUrl, TEST_DATABASE_URL } from "./helpers/db.ts";

beforeAll(async () => {
  await buildBinary();
}, 120_000);

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

async function mint(url: string, id: string, secret: string): Promise<Response> {
  return fetch(`${url}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic(id, secret) },
    body: form({ grant_type: "client_credentials" }),
  });
}

async function active(url: string, id: string, secret: string, token: string): Promise<boolean> {
  const res = await fetch(`${url}/oauth/introspect`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic(id, secret) },
    body: form({ token }),
  });
  return ((await res.json()) as { active: boolean }).active;
}

describe("the CLI beside a running embedded server", () => {
  test("create a client and a user, mint, rotate the secret, disable the user: each takes effect at once, no restart", async () => {
    const { dir } = emptyDirWithBinary();
    const server = await startServer(dir);
    try {
      const socket = join(dir, "data", "admin.sock");
      expect(statSync(socket).mode & 0o777).toBe(0o600);
      expect(server.lines.some((line) => line.includes(`"admin_socket":"data/admin.sock"`) || line.includes(`"admin_socket":"./data/admin.sock"`))).toBe(true);

      const created = await runCli(dir, ["clients", "create", "--name", "live", "--scope", "read"]);
      expect(created.code).toBe(0);
      const client = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
      const minted = await mint(server.url, client.client_id, client.client_secret);
      expect(minted.status).toBe(200);
      const token = ((await minted.json()) as { access_token: string }).access_token;

      const user = await runCli(dir, ["users", "create", "alice", "--password-stdin"], {}, "a long enough password\n");
      expect(user.code).toBe(0);
      const listed = JSON.parse((await runCli(dir, ["users", "list"])).stdout) as { items: Array<{ username: string }> };
      expect(listed.items.map((u) => u.username)).toEqual(["alice"]);
      const disabled = await runCli(dir, ["users", "disable", "alice"]);
      expect(disabled.code).toBe(0);
      expect(JSON.parse(disabled.stdout)).toMatchObject({ username: "alice", disabled: true });

      const rotated = await runCli(dir, ["clients", "rotate-secret", client.client_id]);
      const { client_secret: secret } = JSON.parse(rotated.stdout) as { client_secret: string };
      expect((await mint(server.url, client.client_id, client.client_secret)).status).toBe(401);
      expect(await active(server.url, client.client_id, secret, token)).toBe(true);

      // Revoking through the CLI kills the token at the running server.
      const sessions = JSON.parse((await runCli(dir, ["sessions", "list", "--client", client.client_id])).stdout) as { items: Array<{ session_id: string }> };
      expect(sessions.items).toHaveLength(1);
      expect(JSON.parse((await runCli(dir, ["sessions", "revoke", "--session", sessions.items[0]!.session_id])).stdout)).toEqual({ revoked: 1 });
      expect(await active(server.url, client.client_id, secret, token)).toBe(false);

      // Refusals are one line and exit 2, as offline.
      const unknown = await runCli(dir, ["users", "disable", "nobody"]);
      expect({ code: unknown.code, stderr: unknown.stderr }).toEqual({ code: 2, stderr: "token-authority: no such user\n" });
      const bad = await runCli(dir, ["clients", "create", "--name", "x", "--scope", "admin"]);
      expect({ code: bad.code, stderr: bad.stderr }).toEqual({ code: 2, stderr: 'token-authority: scope "admin" is not supported\n' });
      // `--`: a kid (an RFC 7638 thumbprint, base64url) may begin with "-".
      const active_key = await runCli(dir, ["keys", "revoke", "--", JSON.parse((await runCli(dir, ["keys", "list"])).stdout).items[0].kid]);
      expect(active_key.code).toBe(2);
      expect(active_key.stderr).toContain("rotate first");

      // Every action is in the server's log, with who did it; no secret.
      const audit = server.lines.filter((line) => line.includes('"admin.action"'));
      expect(audit.some((line) => line.includes('"users.disable"') && line.includes('"actor":"local"'))).toBe(true);
      expect(audit.join("\n")).not.toContain(client.client_secret);
      expect(audit.join("\n")).not.toContain(secret);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    // Stopped, the server leaves no socket; the same command now works on the database directly.
    expect(() => statSync(join(dir, "data", "admin.sock"))).toThrow();
    const offline = await runCli(dir, ["users", "get", "alice"]);
    expect(offline.code).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({ username: "alice", disabled: true });
  }, 120_000);

  test("a second server on the same data directory is refused; a socket left by a killed server is taken over", async () => {
    const { dir } = emptyDirWithBinary();
    const first = await startServer(dir);
    expect(await first.stop("SIGKILL")).not.toBe(0);
    expect(statSync(join(dir, "data", "admin.sock")).isSocket()).toBe(true);
    const second = await startServer(dir);
    try {
      const third = await runCli(dir, ["serve", "--port", "0"]);
      expect(third.code).toBe(2);
      expect(third.stderr).toContain("in use by process");
      const listed = await runCli(dir, ["clients", "list"]);
      expect(listed.code).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual({ items: [], next_cursor: null });
    } finally {
      expect(await second.stop()).toBe(0);
    }
  }, 120_000);
});

describe.skipIf(!TEST_DATABASE_URL)("the CLI on PostgreSQL with no server on its socket", () => {
  const name = `ta_admin_cli_${process.pid}`;
  beforeAll(async () => {
    const db = adminConnection();
    await db.unsafe(`drop database if exists ${name} with (force)`);
    await db.unsafe(`create database ${name}`);
    await db.end();
  });
  afterAll(async () => {
    const db = adminConnection();
    await db.unsafe(`drop database if exists ${name} with (force)`);
    await db.end();
  });

  test("a client deleted or rotated by the CLI straight on the database is refused by a running instance at once, not after its cache TTL", async () => {
    const env = { DATABASE_URL: databaseUrl(name) };
    const { dir } = emptyDirWithBinary();
    // The instance runs elsewhere (its own socket); the CLI finds none at its own path and works on the database.
    const server = await startServer(dir, { ...env, TA_ADMIN_SOCKET: join(dir, "instance.sock"), TA_CLIENT_CACHE_TTL: "3600" });
    try {
      const client = JSON.parse((await runCli(dir, ["clients", "create", "--name", "pg"], env)).stdout) as { client_id: string; client_secret: string };
      expect((await mint(server.url, client.client_id, client.client_secret)).status).toBe(200); // now cached for an hour
      const rotated = JSON.parse((await runCli(dir, ["clients", "rotate-secret", client.client_id], env)).stdout) as { client_secret: string };
      expect((await mint(server.url, client.client_id, client.client_secret)).status).toBe(401);
      expect((await mint(server.url, client.client_id, rotated.client_secret)).status).toBe(200);
      expect((await runCli(dir, ["clients", "delete", client.client_id], env)).code).toBe(0);
      expect((await mint(server.url, client.client_id, rotated.client_secret)).status).toBe(401);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 120_000);
});

test("--help works for every command and every group of commands", async () => {
  const { dir } = emptyDirWithBinary();
  for (const command of commands) {
    const help = await runCli(dir, [...command.path, "--help"]);
    expect({ command: command.path.join(" "), code: help.code }).toEqual({ command: command.path.join(" "), code: 0 });
    expect(help.stdout).toStartWith(`usage: ${command.usage.split("\n")[0]}`);
  }
  for (const group of new Set(commands.filter((c) => c.path.length > 1).map((c) => c.path[0]!))) {
    const help = await runCli(dir, [group, "--help"]);
    expect({ group, code: help.code }).toEqual({ group, code: 0 });
    for (const command of commands.filter((c) => c.path[0] === group)) expect(help.stdout).toContain(command.path.join(" "));
  }
}, 120_000);
