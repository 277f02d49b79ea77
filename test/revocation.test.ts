// POST /oauth/revoke (RFC 7009), black-box through the app on every backend: the token kind ×
// hint × client matrix with its effects, undecodable tokens, request and client-authentication
// errors, idempotency, rotated families, expired tokens, concurrency, races with refresh,
// database outages, CORS, and a scan of every log line for tokens and secrets.
import { afterAll, describe, expect, test } from "bun:test";
import type { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import { base64url, CompactSign, exportSPKI, generateKeyPair, importJWK } from "jose";
import type { Database } from "../db/client.ts";
import { openPostgres } from "../db/client.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import { SigningKeyStore } from "../db/stores/signing-keys.ts";
import { KeyStore } from "../src/oauth/keys.ts";
import { SessionService } from "../src/oauth/sessions.ts";
import { createTokenService, MAX_TOKEN_LENGTH } from "../src/oauth/tokens.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { allLogLines, basic, createClient, createTestApp, holdStatements, mintClientSession, mintCodeSession, post, request, rotateSession } from "./helpers/app.ts";
import type { Backend } from "./helpers/db.ts";
import { backends, createPostgresDatabase, openTestDatabase, TEST_DATABASE_URL } from "./helpers/db.ts";
import { tokenRequest } from "./helpers/grants.ts";
import { findLeaks } from "./helpers/log-scan.ts";
import { startTcpProxy } from "./helpers/tcp-proxy.ts";

const REVOKE = "/oauth/revoke";

// ---------------------------------------------------------------------------------------
// Fixtures

/** Every app, token and secret this file made: the log test looks for each of them. */
const apps: TestApp[] = [];
const secrets = new Set<string>();

/**
 * An app for a describe block, opened by its first test (not while tests are collected, so
 * the apps of a file do not all start at once) and closed after the block; its logs stay
 * for the log scan.
 */
function useApp(backend: Backend, env: Record<string, string> = {}) {
  let ready: Promise<TestApp> | undefined;
  afterAll(async () => (ready ? (await ready).close() : undefined));
  return () => (ready ??= createTestApp(backend, env).then((t) => (apps.push(t), t)));
}

/** A token family: its tokens, its owner, and where its sessions live. */
interface Family {
  owner: TestClient;
  accessToken: string;
  refreshToken: string | undefined;
  sessionId: string;
  /** The authorization grant (code families); client-credentials families have none. */
  grantId: string | undefined;
}

function remember<T extends { accessToken: string; refreshToken?: string | undefined }>(tokens: T): T {
  secrets.add(tokens.accessToken);
  if (tokens.refreshToken) secrets.add(tokens.refreshToken);
  return tokens;
}

async function client(t: TestApp, kind: "confidential" | "public", extra: Parameters<typeof createClient>[2] = {}) {
  const c = await createClient(t, kind, extra);
  if (c.secret) secrets.add(c.secret);
  return c;
}

async function codeFamily(t: TestApp, owner: TestClient, sessions?: SessionService): Promise<Family> {
  const s = remember(await mintCodeSession(t, owner, "user-1", sessions));
  return { owner, accessToken: s.accessToken, refreshToken: s.refreshToken, sessionId: s.sessionId, grantId: s.grantId };
}

async function clientFamily(t: TestApp, owner: TestClient): Promise<Family> {
  const s = remember(await mintClientSession(t, owner));
  return { owner, accessToken: s.accessToken, refreshToken: undefined, sessionId: s.sessionId, grantId: undefined };
}

/** POST /oauth/revoke as client `c` (its Basic header or its client_id). */
function revoke(t: TestApp, token: string, c: TestClient, hint?: string) {
  const form: Record<string, string> = { token, ...c.auth.form };
  if (hint !== undefined) form.token_type_hint = hint;
  return post(t, REVOKE, form, c.auth.headers);
}

async function jtiOf(t: TestApp, token: string): Promise<string> {
  return (await t.services.tokens.verify(token)).claims.jti;
}

/** Rotates the family's refresh token (the primitive under /oauth/token's refresh_token grant). */
async function rotate(t: TestApp, f: Family, refreshToken = f.refreshToken!) {
  const result = await rotateSession(t, f.owner.client, refreshToken);
  if (result.outcome === "rotated" || result.outcome === "replaced") remember(result.tokens);
  return result;
}

/** Live sessions of the family: of its grant, or the client-credentials session itself. */
async function liveSessions(t: TestApp, f: Family): Promise<number> {
  const where = f.grantId ? sql`grant_id = ${f.grantId}` : sql`id = ${f.sessionId}`;
  const [row] = await t.database.rows<{ live: number | string }>(
    sql`select count(*) as live from sessions where status = 'created' and ${where}`,
  );
  return Number(row!.live);
}

/** The family's owner refreshes at /oauth/token; new tokens are remembered for the log scan. */
async function refreshAtTokenEndpoint(t: TestApp, f: Family) {
  const [res, body] = await tokenRequest(t, f.owner, { grant_type: "refresh_token", refresh_token: f.refreshToken! });
  if (res.status === 200) remember({ accessToken: body.access_token, refreshToken: body.refresh_token });
  return [res, body] as const;
}

/** Both tokens of the family fail verification, the refresh is refused, no session is live. */
async function expectDead(t: TestApp, f: Family) {
  expect(await t.services.pipeline.verify(f.accessToken)).toMatchObject({ ok: false });
  if (f.refreshToken) {
    expect(await t.services.pipeline.verify(f.refreshToken)).toMatchObject({ ok: false });
    const [res, body] = await refreshAtTokenEndpoint(t, f);
    expect({ status: res.status, error: body.error }).toEqual({ status: 400, error: "invalid_grant" });
  }
  expect(await liveSessions(t, f)).toBe(0);
}

/** Both tokens verify and exactly one session of the family is live (nothing was touched). */
async function expectLive(t: TestApp, f: Family) {
  expect(await t.services.pipeline.verify(f.accessToken)).toMatchObject({ ok: true });
  if (f.refreshToken) expect(await t.services.pipeline.verify(f.refreshToken)).toMatchObject({ ok: true });
  expect(await liveSessions(t, f)).toBe(1);
}

/** A fingerprint of every session and revocation event: equal before and after = nothing changed. */
async function snapshot(t: TestApp) {
  const [row] = await t.database.rows<Record<string, unknown>>(sql`
    select (select count(*) from sessions) as sessions,
           (select count(*) from sessions where status = 'created') as live,
           (select max(updated_at)::text from sessions) as last_update,
           (select count(*) from revocation_events) as events`);
  return { ...row };
}

/** Log lines written from now on, parsed. */
function watchLogs(t: TestApp) {
  const from = t.logs.length;
  return () => t.logs.slice(from).map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * Counts Database.rows calls from now on: each ta_revoke_token call is one (client lookups go
 * through Drizzle; the coalesced NOTIFY after a revocation is sent on a timer, off the path).
 */
async function countRoundTrips(t: TestApp) {
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
function observable(res: Response, body: unknown) {
  const headers = Object.fromEntries([...res.headers].filter(([name]) => name !== "x-request-id"));
  return { status: res.status, headers, body };
}

function expectEmpty200(res: Response, body: unknown) {
  expect(res.status).toBe(200);
  expect(body).toBe("");
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(res.headers.get("content-type")).toBeNull();
}

function expectOAuthError(res: Response, body: unknown, status: number, error: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toStartWith("application/json");
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(body).toMatchObject({ error });
  expect(Object.keys(body as object).every((key) => key === "error" || key === "error_description")).toBe(true);
}

/** A validly signed token of this server whose jti names no session. */
async function unknownToken(t: TestApp): Promise<string> {
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
  secrets.add(token);
  return token;
}

// ---------------------------------------------------------------------------------------
// The matrix: token kind × hint × client

type Kind = "access token" | "refresh token" | "client-credentials access token";
type HintCase = "no hint" | "correct hint" | "wrong hint" | 'unrecognised hint "foo"';
type Role = "its owner (confidential)" | "its owner (public)" | "another confidential client" | "another public client";

const KINDS: readonly Kind[] = ["access token", "refresh token", "client-credentials access token"];
const HINTS: readonly HintCase[] = ["no hint", "correct hint", "wrong hint", 'unrecognised hint "foo"'];
const ROLES: readonly Role[] = ["its owner (confidential)", "its owner (public)", "another confidential client", "another public client"];

function hintFor(kind: Kind, hint: HintCase): string | undefined {
  const own = kind === "refresh token" ? "refresh_token" : "access_token";
  const other = own === "refresh_token" ? "access_token" : "refresh_token";
  return { "no hint": undefined, "correct hint": own, "wrong hint": other, 'unrecognised hint "foo"': "foo" }[hint];
}

const matrix = KINDS.flatMap((kind) =>
  HINTS.flatMap((hint) =>
    ROLES.filter((role) => !(kind === "client-credentials access token" && role === "its owner (public)")) // public clients have no client_credentials
      .map((role) => [kind, hint, role, role.startsWith("its owner") ? "family revoked" : "family untouched"] as const),
  ),
);

describe.each(backends)("revocation matrix [%s]", (backend) => {
  const ready = useApp(backend);
  let clients: Promise<Record<"ownerConfidential" | "ownerPublic" | "otherConfidential" | "otherPublic", TestClient>> | undefined;
  const matrixClients = () =>
    (clients ??= (async () => {
      const t = await ready();
      return {
        ownerConfidential: await client(t, "confidential"),
        ownerPublic: await client(t, "public"),
        otherConfidential: await client(t, "confidential"),
        otherPublic: await client(t, "public"),
      };
    })());

  test.each(matrix)("%s, %s, presented by %s: 200, %s", async (kind, hint, role) => {
    const t = await ready();
    const c = await matrixClients();
    const owner = role === "its owner (public)" ? c.ownerPublic : c.ownerConfidential;
    const presenter = {
      "its owner (confidential)": c.ownerConfidential,
      "its owner (public)": c.ownerPublic,
      "another confidential client": c.otherConfidential,
      "another public client": c.otherPublic,
    }[role];
    const f = kind === "client-credentials access token" ? await clientFamily(t, owner) : await codeFamily(t, owner);
    const token = kind === "refresh token" ? f.refreshToken! : f.accessToken;
    const [unknownRes, unknownBody] = await revoke(t, await unknownToken(t), presenter, hintFor(kind, hint));

    const logs = watchLogs(t);
    const roundTrips = await countRoundTrips(t);
    const [res, body] = await revoke(t, token, presenter, hintFor(kind, hint));
    // The hint only orders the search: a wrong one costs a second lookup, never a miss.
    expect(roundTrips.stop()).toBe(hint === "wrong hint" ? 2 : 1);

    expectEmpty200(res, body);
    const sentHint = hintFor(kind, hint);
    expect(logs()).toContainEqual(
      expect.objectContaining({
        event: "token.revocation.requested",
        client_id: presenter.client.clientId,
        hint: sentHint === "access_token" || sentHint === "refresh_token" ? sentHint : null,
      }),
    );
    if (presenter === owner) {
      expect(logs()).toContainEqual(
        expect.objectContaining({ event: "token.revocation.completed", session_id: f.sessionId, outcome: "revoked", family_revoked: 1 }),
      );
      await expectDead(t, f);
    } else {
      // RFC 7009 §2.1: the token is not revoked; the answer is exactly that for an unknown token.
      expect(observable(res, body)).toEqual(observable(unknownRes, unknownBody));
      expect(logs()).toContainEqual(
        expect.objectContaining({ event: "security.revocation.client_mismatch", client_id: presenter.client.clientId, session_id: f.sessionId }),
      );
      expect(logs().some((line) => line.event === "token.revocation.completed")).toBe(false);
      await expectLive(t, f);
      if (f.refreshToken) expect((await refreshAtTokenEndpoint(t, f))[0].status).toBe(200);
    }
  });

  test.each([
    ["access token", "another confidential client"],
    ["access token", "another public client"],
    ["refresh token", "another confidential client"],
    ["refresh token", "another public client"],
  ] as const)("a public client's %s presented by %s: 200, family untouched", async (kind, role) => {
    const t = await ready();
    const c = await matrixClients();
    const f = await codeFamily(t, c.ownerPublic);
    const presenter = role === "another confidential client" ? c.otherConfidential : c.otherPublic;
    const [res, body] = await revoke(t, kind === "refresh token" ? f.refreshToken! : f.accessToken, presenter);
    expectEmpty200(res, body);
    await expectLive(t, f);
  });

  test("its owner authenticating with client_secret_post revokes the family", async () => {
    const t = await ready();
    const owner = await client(t, "confidential", { tokenEndpointAuthMethod: "client_secret_post" });
    const f = await codeFamily(t, owner);
    const [res, body] = await post(t, REVOKE, { token: f.refreshToken!, client_id: owner.client.clientId, client_secret: owner.secret! });
    expectEmpty200(res, body);
    await expectDead(t, f);
  });

  test("an unknown token of this server: 200 after searching every kind, nothing changes", async () => {
    const t = await ready();
    const c = await matrixClients();
    const before = await snapshot(t);
    const roundTrips = await countRoundTrips(t);
    const [res, body] = await revoke(t, await unknownToken(t), c.ownerConfidential, "access_token");
    // RFC 7009 §2.1: the hinted lookup failed, so the search MUST extend to the other kind.
    expect(roundTrips.stop()).toBe(2);
    expectEmpty200(res, body);
    expect(await snapshot(t)).toEqual(before);
  });

  test("a hint longer than any known hint is ignored, not refused", async () => {
    const t = await ready();
    const c = await matrixClients();
    const f = await codeFamily(t, c.ownerConfidential);
    const [res, body] = await revoke(t, f.refreshToken!, c.ownerConfidential, "refresh_token".repeat(20));
    expectEmpty200(res, body);
    await expectDead(t, f);
  });
});

// ---------------------------------------------------------------------------------------
// Tokens that are not tokens of this server

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const b64json = (value: unknown) => base64url.encode(JSON.stringify(value));

function partsOf(token: string) {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  return {
    header: JSON.parse(decoder.decode(base64url.decode(header))) as Record<string, unknown>,
    claims: JSON.parse(decoder.decode(base64url.decode(payload))) as Record<string, unknown>,
    raw: { header, payload, signature },
  };
}

/** Signs `payload` with this server's active key, under any header it likes. */
function signWithOurKey(t: TestApp, payload: unknown, header: Record<string, unknown> = {}) {
  const { kid, alg, key } = t.services.keys.signingKey();
  return new CompactSign(encoder.encode(JSON.stringify(payload))).setProtectedHeader({ alg, kid, typ: "at+jwt", ...header }).sign(key);
}

type Forgery = (t: TestApp, f: Family, backend: Backend) => Promise<string> | string;

/** Each forgery names the live family's own jti, so that accepting it would revoke the family. */
const forgeries: ReadonlyArray<readonly [string, Forgery]> = [
  ["garbage", () => "not-a-token"],
  ["three dots of nothing", () => "..."],
  ["three parts that are not base64url JSON", () => "abc.def.ghi"],
  ["a header that is not JSON", (_t, f) => `${base64url.encode("{alg")}.${partsOf(f.accessToken).raw.payload}.${partsOf(f.accessToken).raw.signature}`],
  ["a bad signature", (_t, f) => {
    const { raw } = partsOf(f.accessToken);
    const signature = base64url.decode(raw.signature);
    signature[10]! ^= 0x01;
    return `${raw.header}.${raw.payload}.${base64url.encode(signature)}`;
  }],
  ["the signature of another token", async (t, f) => {
    const other = await clientFamily(t, f.owner);
    const { raw } = partsOf(f.accessToken);
    return `${raw.header}.${raw.payload}.${partsOf(other.accessToken).raw.signature}`;
  }],
  ["a tampered payload (the jti of this family in another token)", async (t, f) => {
    const other = await clientFamily(t, f.owner);
    const { raw: otherRaw, claims } = partsOf(other.accessToken);
    return `${otherRaw.header}.${b64json({ ...claims, jti: partsOf(f.accessToken).claims.jti })}.${otherRaw.signature}`;
  }],
  ["alg none", (_t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    return `${b64json({ ...header, alg: "none" })}.${raw.payload}.`;
  }],
  ["HS256 signed with the public key (JWK) as the secret", async (t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    const secret = encoder.encode(JSON.stringify(t.services.keys.jwks().keys[0]));
    return new CompactSign(base64url.decode(raw.payload)).setProtectedHeader({ ...header, alg: "HS256" }).sign(secret);
  }],
  ["HS256 signed with the public key (PEM) as the secret", async (t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    const pem = await exportSPKI(await importJWK(t.services.keys.jwks().keys[0]!, "ES256", { extractable: true }) as CryptoKey);
    return new CompactSign(base64url.decode(raw.payload)).setProtectedHeader({ ...header, alg: "HS256" }).sign(encoder.encode(pem));
  }],
  ["signed with our key for another issuer", async (t, f) => {
    const { claims } = partsOf(f.accessToken);
    const { iss: _iss, ...rest } = claims;
    return createTokenService(t.services.keys, "https://evil.example").sign("access_token", rest as never);
  }],
  ["signed with a fresh ES256 key under our kid", async (_t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    const { privateKey } = await generateKeyPair("ES256");
    return new CompactSign(base64url.decode(raw.payload)).setProtectedHeader(header as { alg: string }).sign(privateKey);
  }],
  ["signed by another server with the same issuer (its own keys and database)", async (t, f, backend) => {
    const database = await openTestDatabase(backend);
    try {
      const keys = await KeyStore.open(new SigningKeyStore(database), { maxTokenLifetime: async () => 3600 });
      const { iss: _iss, ...rest } = partsOf(f.accessToken).claims;
      return await createTokenService(keys, t.config.issuer).sign("access_token", rest as never);
    } finally {
      await database.close();
    }
  }],
  ["signed with our key without a kid", (t, f) => {
    const { kid: _kid, alg, key } = t.services.keys.signingKey();
    return new CompactSign(base64url.decode(partsOf(f.accessToken).raw.payload)).setProtectedHeader({ alg, typ: "at+jwt" }).sign(key);
  }],
  ["signed with our key with typ JWT (not a token type of this server)", (t, f) => signWithOurKey(t, partsOf(f.accessToken).claims, { typ: "JWT" })],
  ["signed with our key without a typ", (t, f) => signWithOurKey(t, partsOf(f.accessToken).claims, { typ: undefined })],
  ["signed with our key, a payload that is JSON null", (t) => signWithOurKey(t, null)],
  ["signed with our key, a payload that is a JSON array", (t, f) => signWithOurKey(t, [partsOf(f.accessToken).claims])],
  ["signed with our key, without a jti", (t, f) => {
    const { jti: _jti, ...rest } = partsOf(f.accessToken).claims;
    return signWithOurKey(t, rest);
  }],
  ["a JWE-shaped token of five parts", (_t, f) => `${b64json({ alg: "RSA-OAEP", enc: "A256GCM" })}.${partsOf(f.accessToken).raw.payload}.a.b.c`],
  ["garbage exactly MAX_TOKEN_LENGTH long", () => "a".repeat(MAX_TOKEN_LENGTH)],
];

describe.each(backends)("undecodable tokens [%s]", (backend) => {
  const ready = useApp(backend);

  test.each(forgeries)("%s: 400 unsupported_token_type, nothing changes", async (_name, forge) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    const forged = await forge(t, f, backend);
    secrets.add(forged);
    const before = await snapshot(t);
    for (const hint of [undefined, "access_token", "refresh_token"]) {
      const [res, body] = await revoke(t, forged, owner, hint);
      expectOAuthError(res, body, 400, "unsupported_token_type");
    }
    expect(await snapshot(t)).toEqual(before);
    await expectLive(t, f);
  });

  test("a token longer than MAX_TOKEN_LENGTH: 400 invalid_request, not processed", async () => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    expect(f.accessToken.length).toBeLessThan(MAX_TOKEN_LENGTH / 4);
    const logs = watchLogs(t);
    const [res, body] = await revoke(t, f.accessToken + "a".repeat(MAX_TOKEN_LENGTH), owner);
    expectOAuthError(res, body, 400, "invalid_request");
    expect(logs().some((line) => line.event === "token.revocation.requested")).toBe(false);
    await expectLive(t, f);
  });
});

// ---------------------------------------------------------------------------------------
// Malformed requests and failed client authentication

type Send = (t: TestApp, f: Family, c: TestClient) => Promise<[Response, any]>;

const badRequests: ReadonlyArray<readonly [string, number, string, Send]> = [
  ["no token parameter", 400, "invalid_request", (t, _f, c) => post(t, REVOKE, { token_type_hint: "access_token" }, c.auth.headers)],
  ["an empty token", 400, "invalid_request", (t, _f, c) => post(t, REVOKE, { token: "" }, c.auth.headers)],
  ["the token parameter twice", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, `token=${f.accessToken}&token=${f.accessToken}`, c.auth.headers)],
  ["the token_type_hint parameter twice", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, `token=${f.accessToken}&token_type_hint=access_token&token_type_hint=access_token`, c.auth.headers)],
  ["a JSON body", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: JSON.stringify({ token: f.accessToken }), headers: { ...c.auth.headers, "content-type": "application/json" } })],
  ["a multipart body", 400, "invalid_request", (t, f, c) => {
    const form = new FormData();
    form.set("token", f.accessToken);
    return request(t, "POST", REVOKE, { body: form, headers: c.auth.headers });
  }],
  ["a text/plain body", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: `token=${f.accessToken}`, headers: { ...c.auth.headers, "content-type": "text/plain" } })],
  ["a form body without Content-Type", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: encoder.encode(`token=${f.accessToken}`), headers: c.auth.headers })],
  ["a body that is not UTF-8", 400, "invalid_request", (t, f, c) =>
    request(t, "POST", REVOKE, { body: new Uint8Array([...encoder.encode(`token=${f.accessToken}&x=`), 0xff, 0xfe]), headers: { ...c.auth.headers, "content-type": "application/x-www-form-urlencoded" } })],
  ["a wrong secret (client_secret_basic)", 401, "invalid_client", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken }, { authorization: basic(c.client.clientId, "wrong") })],
  ["an unknown client (client_secret_basic)", 401, "invalid_client", (t, f) =>
    post(t, REVOKE, { token: f.accessToken }, { authorization: basic("no-such-client", "secret") })],
  ["malformed Basic credentials", 401, "invalid_client", (t, f) =>
    post(t, REVOKE, { token: f.accessToken }, { authorization: "Basic !!!" })],
  ["a wrong secret (client_secret_post)", 401, "invalid_client", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_id: c.client.clientId, client_secret: "wrong" })],
  ["a confidential client's id without its secret", 401, "invalid_client", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_id: c.client.clientId })],
  ["an unknown public client_id", 401, "invalid_client", (t, f) => post(t, REVOKE, { token: f.accessToken, client_id: "no-such-client" })],
  ["no client authentication at all", 401, "invalid_client", (t, f) => post(t, REVOKE, { token: f.accessToken })],
  ["two authentication methods at once (Basic and client_secret)", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_secret: c.secret! }, c.auth.headers)],
  ["a Basic client id that differs from the body's client_id", 400, "invalid_request", (t, f, c) =>
    post(t, REVOKE, { token: f.accessToken, client_id: "someone-else" }, c.auth.headers)],
];

const otherMethods = ["GET", "PUT", "DELETE", "PATCH"] as const;

describe.each(backends)("request errors [%s]", (backend) => {
  const ready = useApp(backend);

  test.each(badRequests)("%s: %d %s, nothing changes", async (name, status, error, send) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    const before = await snapshot(t);
    const [res, body] = await send(t, f, owner);
    expectOAuthError(res, body, status, error);
    expect(JSON.stringify(body)).not.toContain(f.accessToken);
    if (status === 401) {
      // RFC 6749 §5.2: a failed attempt through the Authorization header MUST get WWW-Authenticate.
      const viaBasic = /basic/i.test(name);
      expect(res.headers.get("www-authenticate")?.startsWith("Basic ") ?? false).toBe(viaBasic);
    }
    expect(await snapshot(t)).toEqual(before);
    await expectLive(t, f);
  });

  test.each(otherMethods)("%s: 405 with Allow: POST, nothing changes", async (method) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    const before = await snapshot(t);
    const [res, body] = await request(t, method, `${REVOKE}?token=${f.accessToken}`, {
      headers: owner.auth.headers,
      form: method === "GET" ? undefined : { token: f.accessToken },
    });
    expectOAuthError(res, body, 405, "method_not_allowed");
    expect(res.headers.get("allow")).toBe("POST");
    expect(await snapshot(t)).toEqual(before);
    await expectLive(t, f);
  });
});

// ---------------------------------------------------------------------------------------
// Families, idempotency, expiry, concurrency, races

describe.each(backends)("revoking families [%s]", (backend) => {
  const ready = useApp(backend);

  test("revoking twice: 200 both times, the second changes nothing", async () => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    expectEmpty200(...(await revoke(t, f.refreshToken!, owner)));
    const after = await snapshot(t);
    const logs = watchLogs(t);
    expectEmpty200(...(await revoke(t, f.refreshToken!, owner)));
    expectEmpty200(...(await revoke(t, f.accessToken, owner)));
    expect(await snapshot(t)).toEqual(after);
    const outcomes = logs().filter((line) => line.event === "token.revocation.completed").map((line) => line.outcome);
    expect(outcomes).toEqual(["already_revoked", "already_revoked"]);
    await expectDead(t, f);
  });

  test.each([
    ["the rotated-away refresh token", 1],
    ["the old access token", 1],
    ["the rotated-away refresh token", 3],
    ["the old access token", 3],
  ] as const)("revoking %s after %d rotation(s) kills the live pair", async (which, rotations) => {
    const t = await ready();
    const owner = await client(t, "public");
    const f = await codeFamily(t, owner);
    let current = f;
    for (let i = 0; i < rotations; i++) {
      const rotated = await rotate(t, current);
      if (rotated.outcome !== "rotated") throw new Error(`rotation failed: ${rotated.outcome}`);
      current = { ...f, accessToken: rotated.tokens.accessToken, refreshToken: rotated.tokens.refreshToken, sessionId: rotated.tokens.sessionId };
    }
    await expectLive(t, current);
    const logs = watchLogs(t);
    expectEmpty200(...(await revoke(t, which === "the old access token" ? f.accessToken : f.refreshToken!, owner)));
    expect(logs()).toContainEqual(expect.objectContaining({ event: "token.revocation.completed", session_id: f.sessionId, outcome: "revoked", family_revoked: 1 }));
    await expectDead(t, current);
  });

  test.each([
    ["no hint", undefined],
    ["hint access_token", "access_token"],
    ["hint refresh_token", "refresh_token"],
  ] as const)("an expired access token [%s] revokes its live family", async (_label, hint) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const twoHoursAgo = () => Date.now() - 2 * 3600_000;
    const pastSessions = new SessionService(t.services.stores.sessions, createTokenService(t.services.keys, t.config.issuer, twoHoursAgo), t.services.codes, t.config, twoHoursAgo);
    const f = await codeFamily(t, owner, pastSessions);
    expect(await t.services.pipeline.verify(f.accessToken)).toEqual({ ok: false, reason: "expired" });
    expect(await t.services.pipeline.verify(f.refreshToken!)).toMatchObject({ ok: true });
    expectEmpty200(...(await revoke(t, f.accessToken, owner, hint)));
    await expectDead(t, f);
  });

  test.each(["refresh token", "client-credentials access token"] as const)(
    "100 concurrent revocations of one %s: all 200, the family revoked once",
    async (kind) => {
      const t = await ready();
      const owner = await client(t, "confidential");
      const f = kind === "refresh token" ? await codeFamily(t, owner) : await clientFamily(t, owner);
      const token = f.refreshToken ?? f.accessToken;
      const logs = watchLogs(t);
      const responses = await Promise.all(Array.from({ length: 100 }, () => revoke(t, token, owner)));
      for (const [res, body] of responses) expectEmpty200(res, body);
      const completed = logs().filter((line) => line.event === "token.revocation.completed" && line.session_id === f.sessionId);
      expect(completed.filter((line) => line.outcome === "revoked")).toHaveLength(1);
      expect(completed.filter((line) => line.outcome === "already_revoked")).toHaveLength(99);
      // Each token of the family is announced once on the revocation feed.
      const [events] = await t.database.rows<{ count: number | string }>(
        sql`select count(*) as count from revocation_events where session_id = ${f.sessionId}`,
      );
      expect(Number(events!.count)).toBe(f.refreshToken ? 2 : 1);
      await expectDead(t, f);
    },
  );

  test("revocation racing a refresh of the same family never leaves a live session (30 rounds)", async () => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 30; round++) {
      const f = await codeFamily(t, owner);
      const token = round % 4 < 2 ? f.refreshToken! : f.accessToken;
      const presented = f.refreshToken!;
      const rotate = () => rotateSession(t, owner.client, presented);
      let rotation: ReturnType<typeof rotate> | undefined;
      if (round % 2 === 0) {
        // The refresh goes first (its tokens are signed before its statement leaves); the
        // revocation follows it closely.
        const held = holdStatements(t.database, "ta_rotate_sessions");
        rotation = rotate();
        await held.sent;
        held.release();
      } else {
        // The refresh leaves the moment the revocation's statement does: both are in flight at once.
        await t.services.notifier.flush();
        const original = t.database.rows;
        t.database.rows = ((query) => {
          t.database.rows = original;
          const revocation = original(query);
          rotation = rotate();
          return revocation;
        }) as Database["rows"];
      }
      const [res, body] = await revoke(t, token, owner);
      const rotated = await rotation!;
      expectEmpty200(res, body);
      outcomes.set(rotated.outcome, (outcomes.get(rotated.outcome) ?? 0) + 1);
      const [row] = await t.database.rows<{ live: number | string }>(
        sql`select count(*) as live from sessions where grant_id = ${f.grantId} and status = 'created'`,
      );
      expect({ round, live: Number(row!.live) }).toEqual({ round, live: 0 });
      if (rotated.outcome === "rotated") {
        remember(rotated.tokens);
        expect(await t.services.pipeline.verify(rotated.tokens.accessToken)).toMatchObject({ ok: false });
      }
    }
    // Either order is fine, but both must have happened for the test to mean something.
    expect(Object.fromEntries(outcomes)).toEqual({ rotated: expect.any(Number), reuse: expect.any(Number) });
  });
});

// ---------------------------------------------------------------------------------------
// The database goes away

interface Outage {
  t: TestApp;
  /** Takes the database away from the app. */
  cut(): void;
  /** Brings it back. */
  restore(): void;
}

/** An app whose database can be cut off: a TCP proxy before PostgreSQL; failing calls on PGlite. */
async function appWithOutage(backend: Backend): Promise<Outage> {
  if (backend === "pglite") {
    const database = (await openTestDatabase("pglite")) as Database & { pglite: PGlite };
    let down = false;
    for (const method of ["query", "exec", "transaction"] as const) {
      const original = database.pglite[method].bind(database.pglite) as (...args: unknown[]) => Promise<unknown>;
      Object.assign(database.pglite, {
        [method]: (...args: unknown[]) => (down ? Promise.reject(new Error("PGlite is closed")) : original(...args)),
      });
    }
    const t = await createTestApp(backend, {}, { database });
    apps.push(t);
    return { t, cut: () => void (down = true), restore: () => void (down = false) };
  }
  const created = await createPostgresDatabase();
  const upstream = new URL(TEST_DATABASE_URL!);
  const proxy = startTcpProxy({ hostname: upstream.hostname, port: Number(upstream.port || 5432) });
  const viaProxy = new URL(created.url);
  viaProxy.hostname = "127.0.0.1";
  viaProxy.port = String(proxy.port);
  // One connection, so none is half-way through its start-up when the cut comes (postgres.js
  // then rejects its internal type-fetch promise with nobody listening: an unhandled rejection).
  const database = openPostgres(viaProxy.toString(), { poolSize: 1, connectTimeout: 5, statementTimeout: 5 });
  const t = await createTestApp(backend, {}, {
    database: {
      ...database,
      async close() {
        await database.close();
        proxy.stop();
        await created.drop();
      },
    },
  });
  apps.push(t);
  return { t, cut: () => proxy.stop(), restore: () => proxy.start() };
}

describe.each(backends)("database outage [%s]", (backend) => {
  let opened: Promise<Outage> | undefined;
  const outage = () => (opened ??= appWithOutage(backend));
  // postgres.js may wait out its 5 s end() timeout on a connection that saw the outage.
  afterAll(async () => (opened ? (await opened).t.close() : undefined), 15_000);

  test.each(["a client already authenticated once (cached)", "a client not yet looked up"] as const)(
    "503 temporarily_unavailable with Retry-After for %s, and the token is still live once the database is back",
    async (which) => {
      const { t, cut, restore } = await outage();
      const owner = await client(t, "confidential");
      if (which.includes("cached")) expectEmpty200(...(await revoke(t, await unknownToken(t), owner)));
      const f = await codeFamily(t, owner);
      const logs = watchLogs(t);
      await t.services.notifier.flush(); // no statement of an earlier revocation in flight
      cut();
      try {
        for (const token of [f.refreshToken!, f.accessToken]) {
          const [res, body] = await revoke(t, token, owner);
          expectOAuthError(res, body, 503, "temporarily_unavailable");
          expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
        }
      } finally {
        restore();
      }
      expect(logs()).toContainEqual(expect.objectContaining({ level: "error", event: "db.unavailable" }));
      await expectLive(t, f);
      // The server recovers without a restart.
      expectEmpty200(...(await revoke(t, f.accessToken, owner)));
      await expectDead(t, f);
    },
  );

});

// ---------------------------------------------------------------------------------------
// CORS (TA_CORS_ORIGINS) for browser-based public clients

const SPA = "https://spa.example";

describe.each(backends)("CORS [%s]", (backend) => {
  const ready = useApp(backend, { TA_CORS_ORIGINS: `${SPA}, https://other.example` });
  const closed = useApp(backend);
  const preflight = (t: TestApp, origin: string) =>
    request(t, "OPTIONS", REVOKE, {
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
    });

  test("a preflight from an allowed origin is answered for that exact origin, without credentials", async () => {
    const t = await ready();
    const [res] = await preflight(t, SPA);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(SPA);
    expect(res.headers.get("access-control-allow-methods")).toBe("POST");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("content-type");
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    expect(res.headers.get("vary")).toContain("Origin");
  });

  test("a preflight from another origin gets no CORS grant", async () => {
    const t = await ready();
    for (const origin of ["https://evil.example", "https://spa.example.evil.example", "http://spa.example", "null"]) {
      const [res] = await preflight(t, origin);
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
      expect(res.status).not.toBe(204);
    }
  });

  test("a public client's revocation from an allowed origin carries that origin, never * and never credentials", async () => {
    const t = await ready();
    const owner = await client(t, "public");
    const f = await codeFamily(t, owner);
    const [bad, badBody] = await post(t, REVOKE, { token: "garbage", ...owner.auth.form }, { origin: SPA });
    expectOAuthError(bad, badBody, 400, "unsupported_token_type");
    const [res, body] = await post(t, REVOKE, { token: f.refreshToken!, ...owner.auth.form }, { origin: SPA });
    expectEmpty200(res, body);
    for (const r of [bad, res]) {
      expect(r.headers.get("access-control-allow-origin")).toBe(SPA);
      expect(r.headers.get("access-control-allow-credentials")).toBeNull();
      expect(r.headers.get("vary")).toContain("Origin");
    }
    await expectDead(t, f);
  });

  test("a request from another origin gets no Access-Control-Allow-Origin", async () => {
    const t = await ready();
    const owner = await client(t, "public");
    const [res] = await post(t, REVOKE, { token: await unknownToken(t), ...owner.auth.form }, { origin: "https://evil.example" });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("without TA_CORS_ORIGINS no origin is allowed", async () => {
    const t = await closed();
    const [res] = await preflight(t, SPA);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const [posted] = await post(t, REVOKE, { token: "x" }, { origin: SPA });
    expect(posted.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("other endpoints get no CORS headers", async () => {
    const t = await ready();
    const [res] = await request(t, "GET", "/healthz", { headers: { origin: SPA } });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });
});

test("TA_CORS_ORIGINS refuses * and anything that is not an exact origin", () => {
  for (const value of ["*", "https://spa.example/", "https://spa.example/path", "spa.example"]) {
    expect(() => loadConfig({ TA_CORS_ORIGINS: value })).toThrow(ConfigError);
  }
  expect(loadConfig({ TA_CORS_ORIGINS: "https://a.example, http://localhost:5173" }).corsOrigins).toEqual([
    "https://a.example",
    "http://localhost:5173",
  ]);
});

// ---------------------------------------------------------------------------------------
// Logs: never a token or a secret (runs last: it scans what every test above wrote)

describe("logs", () => {
  test("no log line contains a token, a secret, or anything shaped like a JWT", async () => {
    const lines = [...new Set([...allLogLines, ...apps.flatMap((t) => t.logs)])];
    expect(lines.some((line) => line.includes('"token.revocation.completed"'))).toBe(true);
    expect(secrets.size).toBeGreaterThan(10);
    const jwtShaped = /eyJ[\w-]+\.[\w-]+\.[\w-]*/;
    expect([...secrets].some((secret) => jwtShaped.test(secret))).toBe(true); // the pattern does catch our tokens
    expect(findLeaks(lines, secrets)).toEqual([]);
    expect(lines.filter((line) => jwtShaped.test(line))).toEqual([]);
  });
});
