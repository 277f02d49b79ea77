// The Shared Signals guarantee at the compiled executable, as a real process on both backends:
// revocations committed while the push receiver is down, then the transmitter SIGKILLed before
// it delivered them — after a restart the independent receiver gets every one, once, in order.
// On PostgreSQL, two instances sharing the database deliver each event once (leases).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { decodeJwt } from "jose";
import type { ServerProcess } from "./helpers/binary.ts";
import { buildBinary, emptyDirWithBinary, freePort, runCli, startServer } from "./helpers/binary.ts";
import { basic } from "./helpers/app.ts";
import { backends, createPostgresDatabase } from "./helpers/db.ts";
import type { PushReceiver } from "./helpers/ssf-receiver.ts";
import { pushReceiver, TYPES } from "./helpers/ssf-receiver.ts";

setDefaultTimeout(120_000);

const PUSH = "urn:ietf:rfc:8935";
const drops: Array<() => Promise<void>> = [];

/** A fresh, migrated database on TEST_DATABASE_URL's server, dropped after the file. */
async function freshDatabase(): Promise<string> {
  const created = await createPostgresDatabase();
  drops.push(created.drop);
  return created.url;
}

interface Credentials {
  clientId: string;
  secret: string;
}

async function form(server: ServerProcess, path: string, who: Credentials, fields: Record<string, string>) {
  const res = await fetch(`${server.url}${path}`, { method: "POST", headers: { authorization: basic(who.clientId, who.secret) }, body: new URLSearchParams(fields) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** `clients create` through the CLI, as an operator makes a client beside a running server. */
async function createClientCli(dir: string, env: Record<string, string>, args: string[]): Promise<Credentials> {
  const { code, stdout, stderr } = await runCli(dir, ["clients", "create", ...args], env);
  if (code !== 0) throw new Error(`clients create failed: ${stderr}`);
  const client = JSON.parse(stdout);
  return { clientId: client.client_id, secret: client.client_secret };
}

/** Mints `count` client_credentials tokens and revokes each, at `servers` in turn; answers their sids in revocation order. */
async function revokeTokens(servers: ServerProcess[], app: Credentials, count: number): Promise<string[]> {
  const sids: string[] = [];
  for (let i = 0; i < count; i++) {
    const server = servers[i % servers.length]!;
    const minted = await form(server, "/oauth/token", app, { grant_type: "client_credentials", scope: "read" });
    expect(minted.status).toBe(200);
    expect((await form(server, "/oauth/revoke", app, { token: minted.body.access_token })).status).toBe(200);
    sids.push(decodeJwt(minted.body.access_token).sid as string);
  }
  return sids;
}

const sidOf = (event: { subject: Record<string, unknown> }) => (event.subject.session as { id: string }).id;

afterAll(async () => {
  for (const drop of drops) await drop();
});

describe.each(backends)("Shared Signals at the executable [%s]", (backend) => {
  beforeAll(() => buildBinary(), 180_000);

  test("a SIGKILL between commit and delivery loses nothing: after a restart the receiver gets every event once, in order", async () => {
    const { dir } = emptyDirWithBinary();
    const port = freePort();
    const receiverPort = freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const env: Record<string, string> = {
      TA_ISSUER: issuer,
      TA_OUTBOUND_ALLOW_HOSTS: `127.0.0.1:${receiverPort}`,
      ...(backend === "postgres" ? { DATABASE_URL: await freshDatabase() } : {}),
    };
    let server = await startServer(dir, env, ["--port", String(port)]);
    let receiver: PushReceiver | undefined;
    try {
      const ssfReceiver = await createClientCli(dir, env, ["--name", "receiver", "--grant-type", "client_credentials", "--scope", "ssf"]);
      const app = await createClientCli(dir, env, ["--name", "app", "--grant-type", "client_credentials", "--scope", "read"]);
      const token = (await form(server, "/oauth/token", ssfReceiver, { grant_type: "client_credentials", scope: "ssf" })).body.access_token;
      const created = await fetch(`${server.url}/ssf/streams`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({
          events_requested: [TYPES.sessionRevoked],
          delivery: { method: PUSH, endpoint_url: `http://127.0.0.1:${receiverPort}/events`, authorization_header: "Bearer push-secret" },
        }),
      });
      expect(created.status).toBe(201);

      // The receiver is down: every revocation commits, none can be delivered.
      const sids = await revokeTokens([server], app, 5);
      expect(await server.stop("SIGKILL")).not.toBe(0);

      receiver = pushReceiver({ issuer, audience: ssfReceiver.clientId, jwksUrl: `${issuer}/.well-known/jwks.json`, authorization: "Bearer push-secret", port: receiverPort });
      server = await startServer(dir, env, ["--port", String(port)]);
      // On PostgreSQL the dead instance's lease on the stream expires first (LEASE_SECONDS, 10 s).
      const events = await receiver.until((e) => e.length >= sids.length, 30_000);
      // Settle a moment: a duplicate would arrive now.
      await Bun.sleep(500);
      expect(receiver.events.map(sidOf)).toEqual(sids);
      expect(events.every((event) => event.type === TYPES.sessionRevoked)).toBe(true);
      expect(receiver.rejected).toEqual([]);
    } finally {
      receiver?.stop();
      await server.stop("SIGKILL");
    }
  });

  test.skipIf(backend !== "postgres")("two instances on one PostgreSQL deliver each event once, in commit order", async () => {
    const { dir } = emptyDirWithBinary();
    const receiverPort = freePort();
    const issuer = "http://ssf-pair.test";
    const env: Record<string, string> = { TA_ISSUER: issuer, TA_OUTBOUND_ALLOW_HOSTS: `127.0.0.1:${receiverPort}`, DATABASE_URL: await freshDatabase() };
    const a = await startServer(dir, env);
    const b = await startServer(dir, { ...env, TA_ADMIN_SOCKET: join(dir, "b.sock") });
    try {
      const ssfReceiver = await createClientCli(dir, env, ["--name", "receiver", "--grant-type", "client_credentials", "--scope", "ssf"]);
      const app = await createClientCli(dir, env, ["--name", "app", "--grant-type", "client_credentials", "--scope", "read"]);
      const checked = pushReceiver({ issuer, audience: ssfReceiver.clientId, jwksUrl: `${a.url}/.well-known/jwks.json`, authorization: "Bearer push-secret", port: receiverPort });
      try {
        const token = (await form(a, "/oauth/token", ssfReceiver, { grant_type: "client_credentials", scope: "ssf" })).body.access_token;
        const created = await fetch(`${b.url}/ssf/streams`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ delivery: { method: PUSH, endpoint_url: `http://127.0.0.1:${receiverPort}/events`, authorization_header: "Bearer push-secret" } }),
        });
        expect(created.status).toBe(201);
        const sids = await revokeTokens([a, b], app, 20);
        await checked.until((e) => e.length >= sids.length, 30_000);
        await Bun.sleep(1500); // the other instance's periodic look (1 s) would find a stream not yet settled
        expect(checked.events.map(sidOf)).toEqual(sids);
        expect(new Set(checked.events.map((event) => event.jti)).size).toBe(sids.length);
      } finally {
        checked.stop();
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
