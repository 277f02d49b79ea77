// createTestApp(): an app over a private migrated database, with logs captured in memory,
// plus request helpers that return [response, body] and fixtures for clients and tokens.
import { afterAll, beforeAll } from "bun:test";
import { PgDialect } from "drizzle-orm/pg-core";
import type { Database } from "../../db/client.ts";
import { authorizationGrants } from "../../db/schema.ts";
import { createApp } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import type { Client, NewClient } from "../../src/oauth/clients.ts";
import type { IssuedTokens, SessionService } from "../../src/oauth/sessions.ts";
import type { Services } from "../../src/services.ts";
import { createServices } from "../../src/services.ts";
import type { Backend } from "./db.ts";
import { openTestDatabase } from "./db.ts";

/** Every log line any test app wrote during this run (the log-leak test scans them). */
export const allLogLines: string[] = [];

/** Every client secret (and test password) issued during this run: none may appear in a log. */
export const issuedSecrets = new Set<string>();

export interface TestApp {
  backend: Backend;
  app: ReturnType<typeof createApp>;
  services: Services;
  database: Database;
  config: Config;
  logs: string[];
  close(): Promise<void>;
}

export async function createTestApp(
  backend: Backend,
  env: Record<string, string> = {},
  options: { database?: Database; replica?: Database } = {},
): Promise<TestApp> {
  const config = loadConfig({ TA_ISSUER: "http://localhost", TA_LOG_LEVEL: "debug", ...env });
  const database = options.database ?? (await openTestDatabase(backend));
  const logs: string[] = [];
  const log = createLogger(config.logLevel, (line) => {
    logs.push(line);
    allLogLines.push(line);
  });
  const services = await createServices({ config, database, log, replica: options.replica });
  const create = services.clients.create.bind(services.clients);
  services.clients.create = async (input) => {
    const created = await create(input);
    if (created.secret) issuedSecrets.add(created.secret);
    return created;
  };
  const app = createApp(services);
  return {
    backend,
    app,
    services,
    database,
    config,
    logs,
    close: async () => {
      await services.introspectionCache?.close();
      await services.replicaReads?.close();
      await options.replica?.close();
      await database.close();
    },
  };
}

/** createTestApp for a describe block: opened in the block, closed after it. */
export function useTestApp(backend: Backend, env: Record<string, string> = {}) {
  const ready = createTestApp(backend, env);
  // Opening a database can take seconds on a loaded machine: wait here, not in the first test
  // (whose 5 s default timeout bunfig cannot raise).
  beforeAll(async () => {
    await ready;
  }, 60_000);
  afterAll(async () => (await ready).close());
  return () => ready;
}

export type Form = Record<string, string>;

export async function request(
  t: TestApp,
  method: string,
  path: string,
  init: { form?: Form | string; headers?: Record<string, string>; body?: BodyInit } = {},
): Promise<[Response, any]> {
  const headers: Record<string, string> = { ...init.headers };
  let body = init.body;
  if (init.form !== undefined) {
    headers["content-type"] ??= "application/x-www-form-urlencoded";
    body = typeof init.form === "string" ? init.form : new URLSearchParams(init.form).toString();
  }
  const res = await t.app.handle(new Request(`http://localhost${path}`, { method, headers, body }));
  const text = await res.text();
  let parsed: unknown = text;
  if (res.headers.get("content-type")?.includes("json") && text) parsed = JSON.parse(text);
  return [res, parsed];
}

export const post = (t: TestApp, path: string, form: Form | string, headers: Record<string, string> = {}) =>
  request(t, "POST", path, { form, headers });

/** POST /oauth/revoke (RFC 7009) as client `c` (its Basic header, or client_id alone when public). */
export function revoke(t: TestApp, c: TestClient, token: string, hint?: string) {
  const form: Form = { ...c.auth.form, token };
  if (hint !== undefined) form.token_type_hint = hint;
  return post(t, "/oauth/revoke", form, c.auth.headers);
}

/** POST /oauth/introspect (RFC 7662) as client `c`. */
export function introspect(t: TestApp, c: TestClient, token: string, hint?: string) {
  const form: Form = { ...c.auth.form, token };
  if (hint !== undefined) form.token_type_hint = hint;
  return post(t, "/oauth/introspect", form, c.auth.headers);
}

/**
 * A call of the admin API as the local operator (as through the admin socket, or the CLI in
 * process); with `bearer`, as a remote caller with that token instead.
 */
export async function admin(t: TestApp, method: string, path: string, body?: unknown, bearer?: string): Promise<[Response, any]> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
  const req = new Request(`http://localhost/admin/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (bearer === undefined) t.services.localAdmin.add(req);
  const res = await t.app.handle(req);
  const text = await res.text();
  return [res, text && res.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text];
}

export function basic(clientId: string, secret: string): string {
  const encode = (s: string) => encodeURIComponent(s);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString("base64")}`;
}

export interface TestClient {
  client: Client;
  secret: string | undefined;
  /** Credentials as they go on a request: Basic header for confidential, client_id for public. */
  auth: { form: Form; headers: Record<string, string> };
}

export async function createClient(t: TestApp, kind: "confidential" | "public", extra: Partial<NewClient> = {}): Promise<TestClient> {
  const { client, secret } = await t.services.clients.create({
    name: `${kind} test client`,
    type: kind,
    grantTypes: ["authorization_code", "refresh_token", ...(kind === "confidential" ? ["client_credentials"] : [])],
    redirectUris: ["https://app.example/callback"],
    scope: "read write",
    ...extra,
  });
  const auth: TestClient["auth"] =
    kind === "confidential"
      ? { form: {}, headers: { authorization: basic(client.clientId, secret!) } }
      : { form: { client_id: client.clientId }, headers: {} };
  return { client, secret, auth };
}

/**
 * Rotates a refresh token through the sessions service the way the refresh grant does (the
 * pipeline's digest first, the signature when its session stored none).
 */
export async function rotateSession(t: TestApp, client: Client, refreshToken: string, sessions: SessionService = t.services.sessions) {
  const presented = await t.services.pipeline.present(refreshToken);
  return presented.vouched((sha256) => sessions.rotate({ claims: presented.claims, sha256, client, scope: undefined, graceSeconds: 0 }));
}

/** A session from the authorization-code flow: a grant row and its first session. */
export async function mintCodeSession(
  t: TestApp,
  c: TestClient,
  subject = "user-1",
  /** Another SessionService (e.g. one with a clock in the past); defaults to the app's. */
  sessions: SessionService = t.services.sessions,
): Promise<IssuedTokens & { grantId: string }> {
  const [grant] = await t.database.db
    .insert(authorizationGrants)
    .values({
      clientId: c.client.clientId,
      scope: "read",
      expiresAt: new Date(Date.now() + 60_000),
      redeemedAt: new Date(),
    })
    .returning({ id: authorizationGrants.id });
  const issued = await sessions.mint({
    client: c.client,
    subject,
    scope: "read",
    audience: [t.config.defaultAudience],
    grantId: grant!.id,
    withRefreshToken: true,
  });
  return { ...issued, grantId: grant!.id };
}

/** A client_credentials session: an access token only. */
export function mintClientSession(t: TestApp, c: TestClient): Promise<IssuedTokens> {
  return t.services.sessions.mint({
    client: c.client,
    subject: c.client.clientId,
    scope: "read",
    audience: [t.config.defaultAudience],
    withRefreshToken: false,
  });
}

/**
 * Counts the raw statements (`Database.rows` calls) run from now on whose SQL contains
 * `match`; `stop()` puts the original back and answers the count.
 */
export function countStatements(database: Database, match: string) {
  const original = database.rows;
  const dialect = new PgDialect();
  let count = 0;
  (database as { rows: Database["rows"] }).rows = ((query) => {
    if (dialect.sqlToQuery(query).sql.includes(match)) count++;
    return original(query);
  }) as Database["rows"];
  return {
    stop() {
      (database as { rows: Database["rows"] }).rows = original;
      return count;
    },
  };
}

/**
 * Holds back the raw statements whose SQL contains `match` until `release()`: `sent` resolves
 * once the first of them has been issued (and is waiting).
 */
export function holdStatements(database: Database, match: string) {
  const original = database.rows;
  const dialect = new PgDialect();
  const { promise: sent, resolve: issued } = Promise.withResolvers<void>();
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  (database as { rows: Database["rows"] }).rows = ((query) => {
    if (!dialect.sqlToQuery(query).sql.includes(match)) return original(query);
    issued();
    return released.then(() => original(query));
  }) as Database["rows"];
  return {
    sent,
    release() {
      (database as { rows: Database["rows"] }).rows = original;
      release();
    },
  };
}
