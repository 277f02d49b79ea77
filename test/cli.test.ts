// Operator commands of the executable that change sessions and keys, checked by their effect
// over HTTP: `sessions revoke` (by client, by user, by session) and `users create`.
import { beforeAll, describe, expect, test } from "bun:test";
import { newClientId } from "../src/oauth/clients.ts";
import { basic } from "./helpers/app.ts";
import { buildBinary, emptyDirWithBinary, runCli, startServer } from "./helpers/binary.ts";

beforeAll(async () => {
  await buildBinary();
}, 120_000);

interface CliClient {
  client_id: string;
  client_secret: string;
}

async function mint(url: string, c: CliClient): Promise<string> {
  const res = await fetch(`${url}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic(c.client_id, c.client_secret) },
    body: "grant_type=client_credentials&scope=read",
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

async function active(url: string, c: CliClient, token: string): Promise<boolean> {
  const res = await fetch(`${url}/oauth/introspect`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic(c.client_id, c.client_secret) },
    body: new URLSearchParams({ token }).toString(),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { active: boolean }).active;
}

describe("operator commands (executable, PGlite)", () => {
  test("sessions revoke --client revokes every live session of that client and no other", async () => {
    const { dir } = emptyDirWithBinary();
    const create = async (name: string) =>
      JSON.parse((await runCli(dir, ["clients", "create", "--name", name, "--grant-type", "client_credentials", "--scope", "read"])).stdout) as CliClient;
    const a = await create("a");
    const b = await create("b");
    let server = await startServer(dir);
    const aTokens = [await mint(server.url, a), await mint(server.url, a), await mint(server.url, a)];
    const bToken = await mint(server.url, b);
    expect(await server.stop()).toBe(0);

    const revoked = await runCli(dir, ["sessions", "revoke", "--client", a.client_id]);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toEqual({ revoked: 3 });
    const again = await runCli(dir, ["sessions", "revoke", "--client", a.client_id]);
    expect(JSON.parse(again.stdout)).toEqual({ revoked: 0 });

    server = await startServer(dir);
    for (const token of aTokens) expect(await active(server.url, a, token)).toBe(false);
    expect(await active(server.url, b, bToken)).toBe(true);
    expect(await server.stop()).toBe(0);
  }, 120_000);

  test("a value beginning with - is a value: sessions revoke --client -… selects that client", async () => {
    const { dir } = emptyDirWithBinary();
    // The id reaches the admin API (which knows no such client), not the flag parser.
    const revoked = await runCli(dir, ["sessions", "revoke", "--client", "-BbLh05i08o8MTZMIm4EjA"]);
    expect({ code: revoked.code, stderr: revoked.stderr }).toEqual({ code: 2, stderr: "token-authority: no such client\n" });
  }, 60_000);

  test("sessions revoke refuses ambiguous or malformed selections with one line and exit 2", async () => {
    const { dir } = emptyDirWithBinary();
    const none = await runCli(dir, ["sessions", "revoke"]);
    expect(none.code).toBe(2);
    expect(none.stderr.trim()).toBe("token-authority: give exactly one of --session, --client, --user");
    const two = await runCli(dir, ["sessions", "revoke", "--client", "x", "--user", "y"]);
    expect(two.code).toBe(2);
    const badId = await runCli(dir, ["sessions", "revoke", "--session", "not-a-uuid"]);
    expect(badId.code).toBe(2);
    const unknownUser = await runCli(dir, ["sessions", "revoke", "--user", "nobody"]);
    expect(unknownUser.code).toBe(2);
    expect(unknownUser.stderr).toBe("token-authority: no such user\n");
  }, 60_000);

  test("users create reads the password from stdin and refuses duplicates", async () => {
    const { dir } = emptyDirWithBinary();
    const created = await runCli(dir, ["users", "create", "alice", "--password-stdin"], {}, "correct horse battery\n");
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ username: "alice" });
    expect(created.stdout).not.toContain("correct horse");
    const duplicate = await runCli(dir, ["users", "create", "alice", "--password-stdin"], {}, "another password\n");
    expect(duplicate.code).toBe(2);
    expect(duplicate.stderr.trim()).toBe("token-authority: user alice already exists");
    const noFlag = await runCli(dir, ["users", "create", "bob"]);
    expect(noFlag.code).toBe(2);
  }, 60_000);
});

test("client ids never begin with - or _ (a leading - read as a flag failed 1 CLI run in 64)", () => {
  const ids = Array.from({ length: 20_000 }, () => newClientId());
  expect(ids.filter((id) => !/^[A-Za-z0-9][A-Za-z0-9_-]{21}$/.test(id))).toEqual([]);
  expect(new Set(ids).size).toBe(ids.length);
});
