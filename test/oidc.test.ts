// OpenID Connect Core 1.0 for the authorization code flow: ID tokens (claims, signature,
// at_hash, nonce, auth_time, sid), refresh (§12.2), UserInfo (§5.3, Bearer and DPoP), the
// authentication request parameters (prompt, max_age, login_hint, id_token_hint, request) and
// Discovery 1.0 — black-box through app.handle.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash } from "node:crypto";
import { createLocalJWKSet, decodeJwt, generateKeyPair, jwtVerify, SignJWT } from "jose";
import { eq } from "drizzle-orm";
import { browserSessions, users } from "../db/schema.ts";
import { createClient, introspect, post, request, useTestApp } from "./helpers/app.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { Agent, authorizeAs, authorizeUrl, createUser, pkce, redirectParams, signIn } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";
import { dpopKey } from "./helpers/dpop.ts";

setDefaultTimeout(30_000);

const REDIRECT = "https://app.example/callback";

interface SignedIn {
  agent: Agent;
  userId: string;
  username: string;
}

async function signedInUser(t: TestApp): Promise<SignedIn> {
  const username = `oidc-${crypto.randomUUID().slice(0, 8)}`;
  const userId = await createUser(t, username);
  const agent = new Agent(t);
  await signIn(agent, username);
  return { agent, userId, username };
}

/** Runs an authorization request as the user (signing in and approving as needed) and redeems its code. */
async function codeFlow(t: TestApp, c: TestClient, who: SignedIn, overrides: Record<string, string | undefined> = {}, extra: Record<string, string> = {}) {
  const { verifier, challenge } = pkce();
  const url = authorizeUrl(c, { scope: "openid profile email read", code_challenge: challenge, nonce: "n-0S6_WzA2Mj", ...overrides });
  const back = await authorizeAs(who.agent, url, who.username, REDIRECT);
  const code = back.searchParams.get("code");
  if (!code) throw new Error(`no code: ${back}`);
  const [res, body] = await post(t, "/oauth/token", { grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: verifier, ...c.auth.form, ...extra }, c.auth.headers);
  return { res, body, back };
}

async function verifyIdToken(t: TestApp, idToken: string) {
  const [, jwks] = await request(t, "GET", "/.well-known/jwks.json");
  return jwtVerify(idToken, createLocalJWKSet(jwks), { issuer: t.config.issuer });
}

const atHash = (accessToken: string) => createHash("sha256").update(accessToken).digest().subarray(0, 16).toString("base64url");

async function userinfo(t: TestApp, method: "GET" | "POST", headers: Record<string, string>): Promise<[Response, any]> {
  const res = await t.app.handle(new Request(`${t.config.issuer}/oauth/userinfo`, { method, headers }));
  return [res, await res.json()];
}

describe.each(backends)("OpenID Connect [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_SCOPES: "profile,email,offline_access,read,write", TA_CORS_ORIGINS: "https://spa.example" });

  async function setup(kind: "confidential" | "public" = "confidential") {
    const t = await ready();
    const c = await createClient(t, kind, { scope: "openid profile email read" });
    return { t, c, who: await signedInUser(t) };
  }

  test("a code exchange of scope openid answers an ID token for the client: signed, with nonce, auth_time, amr, at_hash and sid", async () => {
    const { t, c, who } = await setup();
    const { res, body } = await codeFlow(t, c, who);
    expect(res.status).toBe(200);
    const { payload, protectedHeader } = await verifyIdToken(t, body.id_token);
    expect(protectedHeader).toMatchObject({ alg: "ES256", typ: "JWT" });
    const [sessionRow] = await t.database.db.select().from(browserSessions).where(eq(browserSessions.userId, who.userId));
    expect(payload).toMatchObject({
      iss: t.config.issuer,
      sub: who.userId,
      aud: c.client.clientId,
      nonce: "n-0S6_WzA2Mj",
      amr: ["pwd"],
      at_hash: atHash(body.access_token),
      sid: sessionRow!.id,
      auth_time: Math.floor(sessionRow!.authenticatedAt.getTime() / 1000),
    });
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(3600);
    // The access token says how the user signed in too (RFC 9068 §2.2.1), and is still an access token.
    expect(decodeJwt(body.access_token)).toMatchObject({ auth_time: payload.auth_time, amr: ["pwd"] });
    expect((await introspect(t, c, body.access_token))[1].active).toBe(true);
  });

  test("an ID token is no access token: introspection and UserInfo refuse it", async () => {
    const { t, c, who } = await setup();
    const { body } = await codeFlow(t, c, who);
    expect((await introspect(t, c, body.id_token))[1]).toEqual({ active: false });
    const [res] = await userinfo(t, "GET", { authorization: `Bearer ${body.id_token}` });
    expect(res.status).toBe(401);
  });

  test("without openid there is no ID token", async () => {
    const { t, c, who } = await setup();
    const { res, body } = await codeFlow(t, c, who, { scope: "profile read" });
    expect(res.status).toBe(200);
    expect(body.id_token).toBeUndefined();
    // …and UserInfo refuses its access token (Core §5.3: the token of an OpenID request).
    const [info, error] = await userinfo(t, "GET", { authorization: `Bearer ${body.access_token}` });
    expect(info.status).toBe(403);
    expect(error.error).toBe("insufficient_scope");
    expect(info.headers.get("www-authenticate")).toContain('error="insufficient_scope", scope="openid"');
  });

  test("a token request that narrows the scope without openid gets no ID token", async () => {
    const { t, c, who } = await setup();
    const { body } = await codeFlow(t, c, who, {}, { scope: "read" });
    expect(body.scope).toBe("read");
    expect(body.id_token).toBeUndefined();
  });

  test("refresh issues a new ID token as Core §12.2 says: same iss, sub, aud, auth_time and sid, a new iat, no nonce", async () => {
    const { t, c, who } = await setup("public");
    const { body } = await codeFlow(t, c, who);
    const first = (await verifyIdToken(t, body.id_token)).payload;
    await Bun.sleep(1100);
    const [res, refreshed] = await post(t, "/oauth/token", { grant_type: "refresh_token", refresh_token: body.refresh_token, client_id: c.client.clientId });
    expect(res.status).toBe(200);
    const second = (await verifyIdToken(t, refreshed.id_token)).payload;
    expect(second).toMatchObject({ iss: first.iss, sub: first.sub, aud: first.aud, auth_time: first.auth_time, sid: first.sid, at_hash: atHash(refreshed.access_token) });
    expect(second.nonce).toBeUndefined();
    expect(second.iat!).toBeGreaterThan(first.iat!);
    // And again from the child (the sign-in travels with the refresh tokens).
    const [, again] = await post(t, "/oauth/token", { grant_type: "refresh_token", refresh_token: refreshed.refresh_token, client_id: c.client.clientId });
    expect((await verifyIdToken(t, again.id_token)).payload).toMatchObject({ sub: first.sub, auth_time: first.auth_time, sid: first.sid });
  });

  test("UserInfo answers the claims the scopes release, to GET and POST, with no-store", async () => {
    const { t, c, who } = await setup();
    await t.database.db.update(users).set({ profile: { name: "Ada Lovelace", email: "ada@example.com", email_verified: true, phone_number: "+44 20 7946 0000" } }).where(eq(users.id, who.userId));
    const { body } = await codeFlow(t, c, who, { scope: "openid email read" });
    for (const method of ["GET", "POST"] as const) {
      const [res, claims] = await userinfo(t, method, { authorization: `Bearer ${body.access_token}` });
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      // email only: no name (profile was not granted), never the phone (no phone scope).
      expect(claims).toEqual({ sub: who.userId, email: "ada@example.com", email_verified: true });
    }
    const withProfile = await codeFlow(t, c, who, { scope: "openid profile" });
    const [, claims] = await userinfo(t, "GET", { authorization: `Bearer ${withProfile.body.access_token}` });
    expect(claims).toMatchObject({ sub: who.userId, name: "Ada Lovelace", preferred_username: who.username });
    expect(typeof claims.updated_at).toBe("number");
    expect(claims.email).toBeUndefined();
  });

  test("UserInfo refuses a missing, malformed or revoked token with the RFC 6750 challenge", async () => {
    const { t, c, who } = await setup();
    const [none] = await userinfo(t, "GET", {});
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="userinfo"');
    const [junk, junkBody] = await userinfo(t, "GET", { authorization: "Bearer not-a-token" });
    expect(junk.status).toBe(401);
    expect(junkBody.error).toBe("invalid_token");
    expect(junk.headers.get("www-authenticate")).toContain('error="invalid_token"');
    const { body } = await codeFlow(t, c, who);
    await post(t, "/oauth/revoke", { token: body.access_token }, c.auth.headers);
    const [revoked] = await userinfo(t, "GET", { authorization: `Bearer ${body.access_token}` });
    expect(revoked.status).toBe(401);
  });

  test("UserInfo takes a DPoP-bound token with a proof by its key (ath checked), and refuses it as Bearer", async () => {
    const { t, c, who } = await setup("public");
    const key = await dpopKey();
    const tokenUrl = `${t.config.issuer}/oauth/token`;
    const { body } = await codeFlow(t, c, who, { dpop_jkt: key.jkt }, {});
    // The code is bound by dpop_jkt: redeeming it without the proof fails — redo it with one.
    expect(body.error).toBe("invalid_dpop_proof");
    const { verifier, challenge } = pkce();
    const back = await authorizeAs(who.agent, authorizeUrl(c, { scope: "openid read", code_challenge: challenge, dpop_jkt: key.jkt }), who.username, REDIRECT);
    const tokenRes = await t.app.handle(
      new Request(tokenUrl, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", dpop: await key.proof({ htu: tokenUrl }) },
        body: new URLSearchParams({ grant_type: "authorization_code", code: back.searchParams.get("code")!, redirect_uri: REDIRECT, code_verifier: verifier, client_id: c.client.clientId }),
      }),
    );
    const bound = await tokenRes.json();
    expect(bound.token_type).toBe("DPoP");
    expect(bound.id_token).toBeString();
    const htu = `${t.config.issuer}/oauth/userinfo`;
    const [ok, claims] = await userinfo(t, "GET", { authorization: `DPoP ${bound.access_token}`, dpop: await key.proof({ htm: "GET", htu, accessToken: bound.access_token }) });
    expect(ok.status).toBe(200);
    expect(claims.sub).toBe(who.userId);
    const [asBearer] = await userinfo(t, "GET", { authorization: `Bearer ${bound.access_token}` });
    expect(asBearer.status).toBe(401);
    const [noAth, noAthBody] = await userinfo(t, "GET", { authorization: `DPoP ${bound.access_token}`, dpop: await key.proof({ htm: "GET", htu }) });
    expect(noAth.status).toBe(401);
    expect(noAthBody.error).toBe("invalid_token");
    expect(noAth.headers.get("www-authenticate")).toContain('error="invalid_dpop_proof"');
    expect(noAth.headers.get("www-authenticate")).toContain("DPoP algs=");
    const other = await dpopKey();
    const [wrongKey] = await userinfo(t, "GET", { authorization: `DPoP ${bound.access_token}`, dpop: await other.proof({ htm: "GET", htu, accessToken: bound.access_token }) });
    expect(wrongKey.status).toBe(401);
  });

  test("prompt=none: login_required without a sign-in, consent_required without consent, a code with both — never a page", async () => {
    const { t, c, who } = await setup();
    const anonymous = new Agent(t);
    const page = await anonymous.get(authorizeUrl(c, { scope: "openid", prompt: "none" }));
    expect(page.res.status).toBe(302);
    expect(Object.fromEntries(redirectParams(page.location))).toMatchObject({ error: "login_required", state: "st-123", iss: t.config.issuer });
    const noConsent = await who.agent.get(authorizeUrl(c, { scope: "openid", prompt: "none" }));
    expect(Object.fromEntries(redirectParams(noConsent.location))).toMatchObject({ error: "consent_required", state: "st-123" });
    await codeFlow(t, c, who, { scope: "openid" });
    const silent = await who.agent.get(authorizeUrl(c, { scope: "openid", prompt: "none" }));
    expect(redirectParams(silent.location).get("code")).toBeString();
    const combined = await who.agent.get(authorizeUrl(c, { scope: "openid", prompt: "none login" }));
    expect(redirectParams(combined.location).get("error")).toBe("invalid_request");
  });

  test("prompt=consent shows the consent page even when consent is remembered", async () => {
    const { t, c, who } = await setup();
    await codeFlow(t, c, who, { scope: "openid" });
    const page = await who.agent.get(authorizeUrl(c, { scope: "openid", prompt: "consent" }));
    expect(page.res.status).toBe(200);
    expect(page.text).toContain('action="/oauth/consent"');
  });

  test("prompt=login and max_age=0 make the user sign in again: auth_time moves on, the sid stays", async () => {
    const { t, c, who } = await setup();
    const first = (await verifyIdToken(t, (await codeFlow(t, c, who)).body.id_token)).payload;
    for (const overrides of [{ prompt: "login" }, { max_age: "0" }]) {
      await Bun.sleep(1100);
      const page = await who.agent.get(authorizeUrl(c, { scope: "openid", ...overrides }));
      expect(page.location).toStartWith("/oauth/login?");
      expect(new URL(page.location!, t.config.issuer).searchParams.get("prompt")).toBe("login");
      const login = await who.agent.get(page.location!);
      expect(login.text).toContain('action="/oauth/login"');
      const { body } = await codeFlow(t, c, who, { scope: "openid", ...overrides });
      const again = (await verifyIdToken(t, body.id_token)).payload;
      expect(again.auth_time!).toBeGreaterThan(first.auth_time as number);
      expect(again.sid).toBe(first.sid);
    }
  });

  test("max_age: a recent sign-in satisfies it, and auth_time is in the ID token", async () => {
    const { t, c, who } = await setup();
    await codeFlow(t, c, who, { scope: "openid" });
    const page = await who.agent.get(authorizeUrl(c, { scope: "openid", max_age: "3600" }));
    expect(redirectParams(page.location).get("code")).toBeString();
    const bad = await who.agent.get(authorizeUrl(c, { scope: "openid", max_age: "-1" }));
    expect(redirectParams(bad.location).get("error")).toBe("invalid_request");
  });

  test("login_hint fills in the username on the sign-in page", async () => {
    const { t, c } = await setup();
    const agent = new Agent(t);
    const page = await agent.get(authorizeUrl(c, { scope: "openid", login_hint: "ada" }));
    const login = await agent.get(page.location!);
    expect(login.text).toContain('value="ada"');
  });

  test("id_token_hint: the signed-in user's passes; another user's asks to sign in; another client's or issuer's is invalid_request", async () => {
    const { t, c, who } = await setup();
    const { body } = await codeFlow(t, c, who, { scope: "openid" });
    const silent = await who.agent.get(authorizeUrl(c, { scope: "openid", prompt: "none", id_token_hint: body.id_token }));
    expect(redirectParams(silent.location).get("code")).toBeString();
    const someoneElse = await signedInUser(t);
    const mismatch = await someoneElse.agent.get(authorizeUrl(c, { scope: "openid", prompt: "none", id_token_hint: body.id_token }));
    expect(redirectParams(mismatch.location).get("error")).toBe("login_required");
    const other = await createClient(t, "confidential", { scope: "openid" });
    const wrongClient = await who.agent.get(authorizeUrl(other, { scope: "openid", id_token_hint: body.id_token }));
    expect(Object.fromEntries(redirectParams(wrongClient.location))).toMatchObject({ error: "invalid_request", error_description: expect.stringContaining("id_token_hint") });
    const { privateKey } = await generateKeyPair("ES256");
    const forged = await new SignJWT({ sub: who.userId, aud: c.client.clientId }).setProtectedHeader({ alg: "ES256", typ: "JWT", kid: decodeJwtHeaderKid(body.id_token) }).setIssuer(t.config.issuer).setIssuedAt().setExpirationTime("5m").sign(privateKey);
    const forgedPage = await who.agent.get(authorizeUrl(c, { scope: "openid", id_token_hint: forged }));
    expect(redirectParams(forgedPage.location).get("error")).toBe("invalid_request");
  });

  test("request objects, request_uri and registration are refused with the errors Core §3.1.2.6 names", async () => {
    const { t, c, who } = await setup();
    for (const [name, error] of [["request", "request_not_supported"], ["request_uri", "request_uri_not_supported"], ["registration", "registration_not_supported"]]) {
      const page = await who.agent.get(authorizeUrl(c, { scope: "openid", [name!]: "x" }));
      expect(redirectParams(page.location).get("error")).toBe(error!);
    }
  });

  test("a claims request (unsupported, claims_parameter_supported false) is ignored, unknown claims included: nothing more is released", async () => {
    const { t, c, who } = await setup();
    const claims = JSON.stringify({ userinfo: { no_such_claim: { essential: true }, email: null }, id_token: { acr: { essential: true } } });
    const { res, body } = await codeFlow(t, c, who, { scope: "openid", claims });
    expect(res.status).toBe(200);
    const [, info] = await userinfo(t, "GET", { authorization: `Bearer ${body.access_token}` });
    expect(info).toEqual({ sub: who.userId });
    expect(decodeJwt(body.id_token).acr).toBeUndefined();
  });

  test("login_hint says nothing of who exists: the sign-in page is the same for a user and for nobody", async () => {
    const { t, c, who } = await setup();
    const pageFor = async (hint: string) => {
      const agent = new Agent(t);
      const start = await agent.get(authorizeUrl(c, { scope: "openid", login_hint: hint }));
      const page = await agent.get(start.location!);
      return page.text.replace(/value="[A-Za-z0-9_-]{43}"/g, "").replaceAll(hint, "HINT").replace(/return_to" value="[^"]*"/, "");
    };
    expect(await pageFor(who.username)).toBe(await pageFor("nobody-by-this-name"));
  });

  test("the ID token of a sign-in through the login page after the request names the new sign-in", async () => {
    const { t, c } = await setup();
    const username = `late-${crypto.randomUUID().slice(0, 8)}`;
    const userId = await createUser(t, username);
    const agent = new Agent(t);
    const { body } = await codeFlow(t, c, { agent, userId, username }, { prompt: "login" });
    const { payload } = await verifyIdToken(t, body.id_token);
    expect(payload.sub).toBe(userId);
    expect(payload.sid).toBeString();
  });

  test("UserInfo answers a browser client's preflight from an allowed origin for GET and POST, with the Authorization and DPoP headers", async () => {
    const t = await ready();
    const preflight = await t.app.handle(
      new Request(`${t.config.issuer}/oauth/userinfo`, { method: "OPTIONS", headers: { origin: "https://spa.example", "access-control-request-method": "GET", "access-control-request-headers": "authorization" } }),
    );
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://spa.example");
    expect(preflight.headers.get("access-control-allow-methods")).toBe("GET, POST");
    expect(preflight.headers.get("access-control-allow-headers")).toContain("DPoP");
    const other = await t.app.handle(new Request(`${t.config.issuer}/oauth/userinfo`, { method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "GET" } }));
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("Discovery: /.well-known/openid-configuration is the RFC 8414 document, with the OpenID Provider metadata", async () => {
    const t = await ready();
    const [res, op] = await request(t, "GET", "/.well-known/openid-configuration");
    const [, as] = await request(t, "GET", "/.well-known/oauth-authorization-server");
    expect(res.status).toBe(200);
    expect(op).toEqual(as);
    expect(op).toMatchObject({
      issuer: t.config.issuer,
      userinfo_endpoint: `${t.config.issuer}/oauth/userinfo`,
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["ES256"],
      scopes_supported: expect.arrayContaining(["openid", "profile", "email"]),
    });
    expect(op.claims_supported).toEqual(expect.arrayContaining(["sub", "name", "email", "email_verified", "auth_time", "nonce", "sid"]));
    // Every endpoint it names is routed.
    for (const key of ["userinfo_endpoint", "authorization_endpoint", "token_endpoint", "jwks_uri"]) {
      const [routed] = await request(t, "GET", new URL(op[key]).pathname);
      expect({ key, status: routed.status }).not.toEqual({ key, status: 404 });
    }
  });
});

function decodeJwtHeaderKid(jwt: string): string {
  return JSON.parse(Buffer.from(jwt.split(".")[0]!, "base64url").toString()).kid;
}

describe.each(backends)("OpenID Connect behind a trusted sign-in proxy [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_TRUSTED_USER_HEADER: "X-Forwarded-User" });

  test("the ID token says the proxy authenticated the request: auth_time is its time, no sid, no amr", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { scope: "openid read" });
    const agent = new Agent(t, { "x-forwarded-user": `proxied-${crypto.randomUUID().slice(0, 8)}` });
    const { verifier, challenge } = pkce();
    const before = Math.floor(Date.now() / 1000);
    const back = await authorizeAs(agent, authorizeUrl(c, { scope: "openid", code_challenge: challenge, nonce: "n-proxy" }), "unused", REDIRECT);
    const [, body] = await post(t, "/oauth/token", { grant_type: "authorization_code", code: back.searchParams.get("code")!, redirect_uri: REDIRECT, code_verifier: verifier }, c.auth.headers);
    const { payload } = await verifyIdToken(t, body.id_token);
    expect(payload.nonce).toBe("n-proxy");
    expect(payload.auth_time).toBeWithin(before, Math.floor(Date.now() / 1000) + 1);
    expect(payload.sid).toBeUndefined();
    expect(payload.amr).toBeUndefined();
  });
});
