// Foundation: configuration, migrations, keys and rotation, client authentication, error
// shape, database unavailability.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { decodeProtectedHeader } from "jose";
import { openPostgres } from "../db/client.ts";
import { DataDirLockedError, lockDataDir } from "../db/data-dir-lock.ts";
import { migrate } from "../db/migrate.ts";
import { migrations } from "../db/migrations/index.ts";
import { createApp } from "../src/app.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import { createLogger } from "../src/log.ts";
import { SessionStore } from "../db/stores/sessions.ts";
import { RevocationService } from "../src/oauth/revocation.ts";
import { TokenPipeline } from "../src/oauth/token-pipeline.ts";
import { createServices } from "../src/services.ts";
import { basic, createClient, createTestApp, post, request, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";

describe("configuration", () => {
  test("defaults follow docs/configuration.md", () => {
    const config = loadConfig({});
    expect(config.port).toBe(3000);
    expect(config.host).toBe("127.0.0.1");
    expect(config.issuer).toBe("http://localhost:3000");
    expect(config.databaseUrl).toBeUndefined();
    expect(config.dataDir).toBe("./data");
    expect(config.authorizationCodeTtl).toBe(60);
    expect(config.keyReloadInterval).toBe(10);
    expect(Object.isFrozen(config)).toBe(true);
  });

  test.each([
    [{ PORT: "http" }, /PORT must be a whole number/],
    [{ TA_DB_POOL: "0" }, /TA_DB_POOL must be between/],
    [{ DATABASE_URL: "mysql://x" }, /DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [{ DATABASE_URL: "postgres://db1:5432,db2:5432/ta" }, /several hosts: add target_session_attrs=primary/],
    // postgres.js's read-write accepts a hot standby (it reads default_transaction_read_only).
    [{ DATABASE_URL: "postgres://db1:5432,db2:5432/ta?target_session_attrs=read-write" }, /target_session_attrs=primary/],
    [{ DATABASE_URL: "postgres://db1:5432,,db2/ta?target_session_attrs=primary" }, /host\[:port\] entries separated by commas/],
    [{ DATABASE_URL: "postgres://db1/ta?target_session_attrs=any" }, /target_session_attrs must be one of/],
    [{ TA_DATABASE_READ_URL: "postgres://db2/ta" }, /TA_DATABASE_READ_URL needs DATABASE_URL/],
    [{ DATABASE_URL: "postgres://db1/ta", TA_DATABASE_READ_URL: "postgres://db2:5432,db3:5432/ta" }, /several hosts: add target_session_attrs=standby/],
    [{ DATABASE_URL: "postgres://db1/ta", TA_DATABASE_READ_URL: "http://db2/ta" }, /TA_DATABASE_READ_URL must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [{ DATABASE_URL: "postgres://db1/ta", TA_READ_MAX_LAG: "0" }, /TA_READ_MAX_LAG must be between 0.02 and 60/],
    [{ TA_CORS_ORIGINS: "*" }, /'\*' is not allowed/],
    [{ TA_CORS_ORIGINS: "https://a.example/path" }, /is not an origin/],
    [{ TA_RESOURCES: "{" }, /TA_RESOURCES must be a JSON list/],
    [{ TA_SCOPES: 'a "b"' }, /not a valid scope token/],
    [{ TA_LOG_LEVEL: "loud" }, /TA_LOG_LEVEL must be one of/],
  ])("refuses bad configuration %j", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  test("takes a multi-host DATABASE_URL that targets the primary, and never echoes a DATABASE_URL (it may hold a password)", () => {
    const url = "postgres://ta:s3cret@db1:5432,db2:5433,db3/ta?target_session_attrs=primary";
    expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
    expect(() => loadConfig({ DATABASE_URL: "postgres://ta:s3cret@db1,db2/ta" })).toThrow(/^(?!.*s3cret)/);
  });

  test("takes a read URL of replicas beside a DATABASE_URL, and never echoes it", () => {
    const read = "postgres://ta:s3cret@db2:5432,db3:5432/ta?target_session_attrs=standby";
    const config = loadConfig({ DATABASE_URL: "postgres://db1/ta", TA_DATABASE_READ_URL: read, TA_READ_MAX_LAG: "0.5" });
    expect([config.databaseReadUrl, config.readMaxLag]).toEqual([read, 0.5]);
    expect(loadConfig({}).readMaxLag).toBe(1);
    expect(() => loadConfig({ DATABASE_URL: "postgres://db1/ta", TA_DATABASE_READ_URL: "postgres://ta:s3cret@db2,db3/ta" })).toThrow(/^(?!.*s3cret)/);
  });

  test("lists are comma-separated", () => {
    const config = loadConfig({ TA_SCOPES: "a, b,,c", TA_CORS_ORIGINS: "https://x.example,http://localhost:5173" });
    // openid comes first, always (the server is an OpenID Provider).
    expect(config.scopes).toEqual(["openid", "a", "b", "c"]);
    expect(config.corsOrigins).toEqual(["https://x.example", "http://localhost:5173"]);
  });
});

describe("embedded migrations", () => {
  test("db/migrations/index.ts embeds every journal entry with the file's exact text", () => {
    const dir = join(import.meta.dir, "..", "db", "migrations");
    const journal = JSON.parse(readFileSync(join(dir, "meta", "_journal.json"), "utf8")) as { entries: { tag: string; when: number }[] };
    expect(migrations.map((m) => m.tag)).toEqual(journal.entries.map((e) => e.tag));
    for (const migration of migrations) {
      expect(migration.sql).toBe(readFileSync(join(dir, `${migration.tag}.sql`), "utf8"));
    }
  });
});

describe("data directory lock", () => {
  test("a second lock on the same directory is refused naming the holder", () => {
    const dir = mkdtempSync(join(tmpdir(), "ta-lock-"));
    const child = Bun.spawn(["sleep", "30"]);
    try {
      writeFileSync(join(dir, "token-authority.lock"), `${child.pid}\n`);
      expect(() => lockDataDir(dir)).toThrow(DataDirLockedError);
      expect(() => lockDataDir(dir)).toThrow(String(child.pid));
    } finally {
      child.kill();
    }
  });

  test("a lock left by a dead process is taken over", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ta-lock-"));
    const child = Bun.spawn(["true"]);
    await child.exited;
    writeFileSync(join(dir, "token-authority.lock"), `${child.pid}\n`);
    const lock = lockDataDir(dir);
    expect(readFileSync(lock.path, "utf8").trim()).toBe(String(process.pid));
    lock.release();
    const again = lockDataDir(dir);
    again.release();
  });
});

describe.each(backends)("database [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("migrations are idempotent: a second run applies nothing", async () => {
    const t = await ready();
    expect(await migrate(t.database)).toEqual({ applied: [], total: migrations.length });
  });

  test("GET /readyz reports the backend", async () => {
    const t = await ready();
    const [res, body] = await request(t, "GET", "/readyz");
    expect(res.status).toBe(200);
    expect(body).toEqual({ status: "ready", database: backend });
  });
});

describe.each(backends)("signing keys [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("the first start generates one active ES256 key; a second instance reuses it", async () => {
    const t = await ready();
    const jwks = t.services.keys.jwks();
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
    expect(jwks.keys[0]).not.toHaveProperty("d");
    const second = await createServices({ config: t.config, database: t.database, log: createLogger("silent") });
    expect(second.keys.signingKey().kid).toBe(t.services.keys.signingKey().kid);
  });

  test("rotation: new tokens use the new kid, old tokens still verify", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const before = await t.services.sessions.mint({ client: c.client, subject: "s", scope: "read", audience: ["https://api.example"], withRefreshToken: false });
    const oldKid = decodeProtectedHeader(before.accessToken).kid;
    const { retired, active } = await t.services.keys.rotate();
    expect(retired).toBe(oldKid!);
    const after = await t.services.sessions.mint({ client: c.client, subject: "s", scope: "read", audience: ["https://api.example"], withRefreshToken: false });
    expect(decodeProtectedHeader(after.accessToken).kid).toBe(active);
    expect((await t.services.pipeline.verify(before.accessToken)).ok).toBe(true);
    expect((await t.services.pipeline.verify(after.accessToken)).ok).toBe(true);
    expect(t.services.keys.jwks().keys.map((k) => k.kid).sort()).toEqual([oldKid!, active].sort());
    // Another instance on the same database learns of the rotation through an unknown kid.
    const other = await createServices({ config: t.config, database: t.database, log: createLogger("silent") });
    expect(other.keys.signingKey().kid).toBe(active);
  });

  test("another instance verifies a token signed with a key it has not loaded yet (reload on unknown kid)", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const stale = await createServices({ config: t.config, database: t.database, log: createLogger("silent") });
    const { active } = await t.services.keys.rotate();
    const after = await t.services.sessions.mint({ client: c.client, subject: "s", scope: "read", audience: ["https://api.example"], withRefreshToken: false });
    expect(decodeProtectedHeader(after.accessToken).kid).toBe(active);
    expect(stale.keys.jwks().keys.map((k) => k.kid)).not.toContain(active);
    expect((await stale.pipeline.verify(after.accessToken)).ok).toBe(true);
    expect(stale.keys.jwks().keys.map((k) => k.kid)).toContain(active);
  });

  test("another instance signs with and publishes a rotated key within its reload interval", async () => {
    const t = await ready();
    const other = await createServices({ config: t.config, database: t.database, log: createLogger("silent") });
    const reloading = other.keys.startReloading(1, (error) => {
      throw error;
    });
    try {
      const { active } = await t.services.keys.rotate();
      expect(other.keys.signingKey().kid).not.toBe(active);
      expect(other.keys.jwks().keys.map((k) => k.kid)).not.toContain(active);
      const deadline = Date.now() + 5000;
      while (other.keys.signingKey().kid !== active && Date.now() < deadline) await Bun.sleep(50);
      expect(other.keys.signingKey().kid).toBe(active);
      expect(other.keys.jwks().keys.map((k) => k.kid)).toContain(active);
    } finally {
      await reloading.stop();
    }
  });

  test("a retired key keeps verifying for the longest token lifetime plus TA_KEY_RELOAD_INTERVAL", async () => {
    const t = await ready();
    const { retired } = await t.services.keys.rotate();
    const [row] = await t.database.rows<{ seconds: number }>(
      sql`select extract(epoch from verify_until - retired_at)::int as seconds from signing_keys where kid = ${retired!}`,
    );
    // Default lifetimes: the 14-day refresh token, plus the default 10-second reload interval.
    expect(row!.seconds).toBe(14 * 24 * 3600 + 10);
  });
});

describe.each(backends)("client authentication [%s]", (backend) => {
  const ready = useTestApp(backend);
  // An undecodable token gets past client authentication and fails after it with 400
  // unsupported_token_type: so 400 proves authentication succeeded, 401 that it failed.
  const probe = { token: "not-a-jwt" };

  test("client_secret_basic, client_secret_post and public clients authenticate", async () => {
    const t = await ready();
    const conf = await createClient(t, "confidential");
    const pub = await createClient(t, "public");
    const basicRes = await post(t, "/oauth/revoke", probe, { authorization: basic(conf.client.clientId, conf.secret!) });
    const postRes = await post(t, "/oauth/revoke", { ...probe, client_id: conf.client.clientId, client_secret: conf.secret! });
    const publicRes = await post(t, "/oauth/revoke", { ...probe, client_id: pub.client.clientId });
    for (const [res, body] of [basicRes, postRes, publicRes]) {
      expect(res.status).toBe(400);
      expect(body).toEqual({ error: "unsupported_token_type", error_description: expect.any(String) });
    }
  });

  test("the secret is 256-bit random, shown once and stored only as a hash", async () => {
    const t = await ready();
    const conf = await createClient(t, "confidential");
    expect(Buffer.from(conf.secret!, "base64url").length).toBeGreaterThanOrEqual(32);
    expect(conf.client.secretHash).not.toContain(conf.secret!);
    expect(conf.client.secretHash).toMatch(/^[0-9a-f]{64}$/);
  });

  test.each([
    ["wrong secret (basic)", (id: string) => ({ headers: { authorization: basic(id, "wrong") }, form: {} }), true],
    ["unknown client (basic)", (_id: string) => ({ headers: { authorization: basic("nobody", "x") }, form: {} }), true],
    ["malformed basic", (_id: string) => ({ headers: { authorization: "Basic %%%" }, form: {} }), true],
    ["wrong secret (post)", (id: string) => ({ headers: {}, form: { client_id: id, client_secret: "wrong" } }), false],
    ["confidential client without secret", (id: string) => ({ headers: {}, form: { client_id: id } }), false],
    ["no credentials at all", (_id: string) => ({ headers: {}, form: {} }), false],
  ])("refuses %s with 401 invalid_client", async (_name, credentials, viaBasic) => {
    const t = await ready();
    const conf = await createClient(t, "confidential");
    const { headers, form } = credentials(conf.client.clientId);
    const [res, body] = await post(t, "/oauth/revoke", { ...probe, ...form }, headers);
    expect(res.status).toBe(401);
    expect(body.error).toBe("invalid_client");
    expect(res.headers.get("cache-control")).toBe("no-store");
    if (viaBasic) expect(res.headers.get("www-authenticate")).toStartWith("Basic realm=");
    else expect(res.headers.get("www-authenticate")).toBeNull();
  });

  test("two methods at once, or a Basic id differing from the body client_id, is 400 invalid_request", async () => {
    const t = await ready();
    const conf = await createClient(t, "confidential");
    const headers = { authorization: basic(conf.client.clientId, conf.secret!) };
    const [both, bothBody] = await post(t, "/oauth/revoke", { ...probe, client_secret: conf.secret! }, headers);
    expect([both.status, bothBody.error]).toEqual([400, "invalid_request"]);
    const [mismatch, mismatchBody] = await post(t, "/oauth/revoke", { ...probe, client_id: "someone-else" }, headers);
    expect([mismatch.status, mismatchBody.error]).toEqual([400, "invalid_request"]);
  });

  test("Basic credentials are form-urlencoded inside (RFC 6749 §2.3.1)", async () => {
    const t = await ready();
    const conf = await createClient(t, "confidential");
    // Encode every character of the id as %XX: only a decoding server finds the client.
    const id = [...conf.client.clientId].map((ch) => "%" + ch.charCodeAt(0).toString(16).padStart(2, "0")).join("");
    const header = `Basic ${Buffer.from(`${id}:${encodeURIComponent(conf.secret!)}`).toString("base64")}`;
    const [res] = await post(t, "/oauth/revoke", probe, { authorization: header });
    expect(res.status).toBe(400);
  });
});

describe.each(backends)("error responses [%s]", (backend) => {
  const ready = useTestApp(backend);

  test.each([
    ["unknown path", "GET", "/nope", undefined, 404, "not_found"],
    ["wrong method", "GET", "/oauth/revoke", undefined, 405, "method_not_allowed"],
    ["json body", "POST", "/oauth/revoke", { "content-type": "application/json", body: '{"token":"x"}' }, 400, "invalid_request"],
    ["multipart body", "POST", "/oauth/revoke", { "content-type": "multipart/form-data; boundary=x", body: "--x--" }, 400, "invalid_request"],
    ["no content type", "POST", "/oauth/revoke", { body: "token=x" }, 400, "invalid_request"],
    ["repeated parameter", "POST", "/oauth/revoke", { "content-type": "application/x-www-form-urlencoded", body: "token=a&token=b" }, 400, "invalid_request"],
    ["missing token", "POST", "/oauth/revoke", { "content-type": "application/x-www-form-urlencoded", body: "token_type_hint=access_token" }, 400, "invalid_request"],
  ] as const)("%s → %d %s, JSON, no-store, no stack, no echo", async (_name, method, path, init, status, code) => {
    const t = await ready();
    const headers: Record<string, string> = init && "content-type" in init ? { "content-type": init["content-type"] } : {};
    const [res, body] = await request(t, method, path, { headers, body: init?.body });
    expect(res.status).toBe(status);
    expect(res.headers.get("content-type")).toStartWith("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body.error).toBe(code);
    expect(Object.keys(body).every((k) => k === "error" || k === "error_description")).toBe(true);
    const raw = JSON.stringify(body);
    expect(raw).not.toMatch(/at .*\.ts|stack|token=|"token"/);
  });

  test("405 names the allowed method", async () => {
    const t = await ready();
    const [res] = await request(t, "PUT", "/oauth/revoke", { body: "x" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });

  test("every response carries an X-Request-Id", async () => {
    const t = await ready();
    const [a] = await request(t, "GET", "/healthz");
    const [b] = await request(t, "GET", "/healthz");
    expect(a.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.headers.get("x-request-id")).not.toBe(b.headers.get("x-request-id"));
  });
});

describe("unreachable database", () => {
  test("readiness and every database-backed endpoint answer 503 temporarily_unavailable with Retry-After", async () => {
    const t = await createTestApp("pglite");
    try {
      const c = await createClient(t, "confidential");
      const issued = await t.services.sessions.mint({ client: c.client, subject: "s", scope: "read", audience: ["https://api.example"], withRefreshToken: false });
      // The same services over a PostgreSQL nobody listens on.
      const dead = openPostgres("postgres://postgres@127.0.0.1:1/none", { poolSize: 1, connectTimeout: 2, statementTimeout: 2 });
      // Client authentication still reads the live database; revocation and readiness the dead one.
      const deadStore = new SessionStore(dead);
      const revocation = new RevocationService({ pipeline: new TokenPipeline(t.services.tokens, deadStore), store: deadStore, log: t.services.log });
      const app = createApp({ ...t.services, database: dead, revocation });
      const ready = await app.handle(new Request("http://localhost/readyz"));
      expect(ready.status).toBe(503);
      expect(ready.headers.get("retry-after")).toBe("1");
      const res = await app.handle(
        new Request("http://localhost/oauth/revoke", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic(c.client.clientId, c.secret!) },
          body: new URLSearchParams({ token: issued.accessToken }),
        }),
      );
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: "temporarily_unavailable" });
      expect(res.headers.get("cache-control")).toBe("no-store");
      await dead.close();
      // Nothing was persisted: the token is still live on the real database.
      expect((await t.services.pipeline.verify(issued.accessToken)).ok).toBe(true);
    } finally {
      await t.close();
    }
  });
});
