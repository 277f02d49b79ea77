// Fixtures of the revocation tests (test/revocation-*.test.ts): token families (a code flow's
// session with its grant, or a client_credentials session), their effects checked everywhere a
// token is used (verification, the refresh grant, live sessions), and request helpers. Every
// token and secret made here joins issuedSecrets, which the run's log scan looks for.
import { afterAll, expect } from "bun:test";
import { sql } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import type { SessionService } from "../../src/oauth/sessions.ts";
import type { TestApp, TestClient } from "./app.ts";
import { createClient, createTestApp, issuedSecrets, mintClientSession, mintCodeSession, rotateSession } from "./app.ts";
import type { Backend } from "./db.ts";
import { tokenRequest } from "./grants.ts";

export const REVOKE = "/oauth/revoke";

/**
 * An app for a describe block, opened by its first test (not while tests are collected, so
 * the apps of a file do not all start at once) and closed after the block.
 */
export function useApp(backend: Backend, env: Record<string, string> = {}) {
  let ready: Promise<TestApp> | undefined;
  afterAll(async () => (ready ? (await ready).close() : undefined));
  return () => (ready ??= createTestApp(backend, env));
}

/** A token family: its tokens, its owner, and where its sessions live. */
export interface Family {
  owner: TestClient;
  accessToken: string;
  refreshToken: string | undefined;
  sessionId: string;
  /** The authorization grant (code families); client-credentials families have none. */
  grantId: string | undefined;
}

export function remember<T extends { accessToken: string; refreshToken?: string | undefined }>(tokens: T): T {
  issuedSecrets.add(tokens.accessToken);
  if (tokens.refreshToken) issuedSecrets.add(tokens.refreshToken);
  return tokens;
}

export async function client(t: TestApp, kind: "confidential" | "public", extra: Parameters<typeof createClient>[2] = {}) {
  const c = await createClient(t, kind, extra);
  if (c.secret) issuedSecrets.add(c.secret);
  return c;
}

export async function codeFamily(t: TestApp, owner: TestClient, sessions?: SessionService): Promise<Family> {
  const s = remember(await mintCodeSession(t, owner, "user-1", sessions));
  return { owner, accessToken: s.accessToken, refreshToken: s.refreshToken, sessionId: s.sessionId, grantId: s.grantId };
}

export async function clientFamily(t: TestApp, owner: TestClient): Promise<Family> {
  const s = remember(await mintClientSession(t, owner));
  return { owner, accessToken: s.accessToken, refreshToken: undefined, sessionId: s.sessionId, grantId: undefined };
}

export async function jtiOf(t: TestApp, token: string): Promise<string> {
  return (await t.services.tokens.verify(token)).claims.jti;
}

/** Rotates the family's refresh token (the primitive under /oauth/token's refresh_token grant). */
export async function rotate(t: TestApp, f: Family, refreshToken = f.refreshToken!) {
  const result = await rotateSession(t, f.owner.client, refreshToken);
  if (result.outcome === "rotated" || result.outcome === "replaced") remember(result.tokens);
  return result;
}

/** Live sessions of the family: of its grant, or the client-credentials session itself. */
export async function liveSessions(t: TestApp, f: Family): Promise<number> {
  const where = f.grantId ? sql`grant_id = ${f.grantId}` : sql`id = ${f.sessionId}`;
  const [row] = await t.database.rows<{ live: number | string }>(
    sql`select count(*) as live from sessions where status = 'created' and ${where}`,
  );
  return Number(row!.live);
}

/** The family's owner refreshes at /oauth/token; new tokens are remembered for the log scan. */
export async function refreshAtTokenEndpoint(t: TestApp, f: Family) {
  const [res, body] = await tokenRequest(t, f.owner, { grant_type: "refresh_token", refresh_token: f.refreshToken! });
  if (res.status === 200) remember({ accessToken: body.access_token, refreshToken: body.refresh_token });
  return [res, body] as const;
}

/** Both tokens of the family fail verification, the refresh is refused, no session is live. */
export async function expectDead(t: TestApp, f: Family) {
  expect(await t.services.pipeline.verify(f.accessToken)).toMatchObject({ ok: false });
  if (f.refreshToken) {
    expect(await t.services.pipeline.verify(f.refreshToken)).toMatchObject({ ok: false });
    const [res, body] = await refreshAtTokenEndpoint(t, f);
    expect({ status: res.status, error: body.error }).toEqual({ status: 400, error: "invalid_grant" });
  }
  expect(await liveSessions(t, f)).toBe(0);
}

/** Both tokens verify and exactly one session of the family is live (nothing was touched). */
export async function expectLive(t: TestApp, f: Family) {
  expect(await t.services.pipeline.verify(f.accessToken)).toMatchObject({ ok: true });
  if (f.refreshToken) expect(await t.services.pipeline.verify(f.refreshToken)).toMatchObject({ ok: true });
  expect(await liveSessions(t, f)).toBe(1);
}

/** A fingerprint of every session and revocation event: equal before and after = nothing changed. */
export async function snapshot(t: TestApp) {
  const [row] = await t.database.rows<Record<string, unknown>>(sql`
    select (select count(*) from sessions) as sessions,
           (select count(*) from sessions where status = 'created') as live,
           (select max(updated_at)::text from sessions) as last_update,
           (select count(*) from revocation_events) as events`);
  return { ...row };
}

/** Log lines written from now on, parsed. */
export function watchLogs(t: TestApp) {
  const from = t.logs.length;
  return () => t.logs.slice(from).map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * Counts Database.rows calls from now on: each ta_revoke_token call is one (client lookups go
 * through Drizzle; the coalesced NOTIFY after a revocation is sent on a timer, off the path).
 */
export async function countRoundTrips(t: TestApp) {
  await t.services.notifier.flush();
  const original = t.database.rows;
  let calls = 0;
  t.database.rows = ((query) => {
    calls++;
    return original(query);
  }) as Database["rows"];
  return {
    stop() {
      t.database.rows = original;
      return calls;
    },
  };
}

/** The part of a response a client can observe, minus the per-request id. */
export function observable(res: Response, body: unknown) {
  const headers = Object.fromEntries([...res.headers].filter(([name]) => name !== "x-request-id"));
  return { status: res.status, headers, body };
}

export function expectEmpty200(res: Response, body: unknown) {
  expect(res.status).toBe(200);
  expect(body).toBe("");
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(res.headers.get("content-type")).toBeNull();
}

export function expectOAuthError(res: Response, body: unknown, status: number, error: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toStartWith("application/json");
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(body).toMatchObject({ error });
  expect(Object.keys(body as object).every((key) => key === "error" || key === "error_description")).toBe(true);
}

/** A validly signed token of this server whose jti names no session. */
export async function unknownToken(t: TestApp): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const token = await t.services.tokens.sign("access_token", {
    sub: "nobody",
    aud: t.config.defaultAudience,
    exp: now + 60,
    iat: now,
    jti: crypto.randomUUID(),
    client_id: "nobody",
    scope: "read",
  });
  issuedSecrets.add(token);
  return token;
}
