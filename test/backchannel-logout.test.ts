// OpenID Connect RP-Initiated Logout 1.0 and Back-Channel Logout 1.0, black-box through
// app.handle with a logout receiver that validates each logout token as §2.6 asks: the end of a
// browser sign-in — however it ends — reaches every client that had an openid grant in it and
// registered a backchannel_logout_uri, from the committed event log, with retries; no other client
// hears of it, nor of a change that rolled back.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { browserSessions, logoutDeliveries, revocationEvents } from "../db/schema.ts";
import { createClient, post, request, useTestApp } from "./helpers/app.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { Agent, authorizeAs, authorizeUrl, createUser, csrfToken, hiddenFields, pkce, signIn } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";

setDefaultTimeout(30_000);

const REDIRECT = "https://app.example/callback";
const AFTER_LOGOUT = "https://app.example/signed-out";
const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";

/** A relying party's back-channel logout endpoint: validates each logout token (§2.6) and answers as told. */
class LogoutReceiver {
  readonly received: Array<{ path: string; claims: Record<string, unknown> }> = [];
  readonly rejected: string[] = [];
  /** Statuses to answer, per path, one per request (then 200). */
  readonly script = new Map<string, number[]>();
  jwks: ReturnType<typeof createLocalJWKSet> | undefined;
  issuer = "";
  readonly server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (request) => {
      const path = new URL(request.url).pathname;
      const planned = this.script.get(path)?.shift();
      if (planned !== undefined && planned !== 200) return new Response(null, { status: planned });
      const form = new URLSearchParams(await request.text());
      const token = form.get("logout_token") ?? "";
      try {
        this.received.push({ path, claims: await this.validate(token, path.slice(1)) });
        return new Response(null, { status: 200, headers: { "cache-control": "no-store" } });
      } catch (error) {
        this.rejected.push(String(error));
        return new Response(null, { status: 400 });
      }
    },
  });

  get base(): string {
    return `http://127.0.0.1:${this.server.port}`;
  }

  /** Back-Channel Logout 1.0 §2.6 steps 1–7 (the receiver's part: its client_id is the path). */
  private async validate(token: string, clientId: string): Promise<Record<string, unknown>> {
    if (decodeProtectedHeader(token).typ !== "logout+jwt") throw new Error("typ is not logout+jwt");
    const { payload } = await jwtVerify(token, this.jwks!, { issuer: this.issuer, audience: clientId, requiredClaims: ["iat", "jti", "exp"] });
    const events = payload.events as Record<string, unknown> | undefined;
    if (!events || typeof events[BACKCHANNEL_LOGOUT_EVENT] !== "object") throw new Error("no backchannel-logout event");
    if (payload.sub === undefined && payload.sid === undefined) throw new Error("neither sub nor sid");
    if ("nonce" in payload) throw new Error("a logout token must not contain a nonce");
    return payload as Record<string, unknown>;
  }
}

const receiver = new LogoutReceiver();
afterAll(() => receiver.server.stop(true));
/** A port nothing listens on any more: a receiver that is down. */
const deadPort = (() => {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(null) });
  const port = server.port;
  server.stop(true);
  return port;
})();

describe.each(backends)("OpenID Connect logout [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_OUTBOUND_ALLOW_HOSTS: `127.0.0.1:${receiver.server.port},127.0.0.1:${deadPort}` });

  async function app(): Promise<TestApp> {
    const t = await ready();
    receiver.issuer = t.config.issuer;
    const [, jwks] = await request(t, "GET", "/.well-known/jwks.json");
    receiver.jwks = createLocalJWKSet(jwks);
    return t;
  }

  /** A confidential client whose back-channel logout endpoint is the receiver's /CLIENT_ID. */
  async function relyingParty(t: TestApp, options: { backchannel?: boolean; scope?: string } = {}): Promise<TestClient> {
    const c = await createClient(t, "confidential", { scope: options.scope ?? "openid profile read" });
    if (options.backchannel !== false) {
      await t.services.admin.updateClient(c.client.clientId, { backchannel_logout_uri: `${receiver.base}/${c.client.clientId}`, post_logout_redirect_uris: [AFTER_LOGOUT] });
    } else {
      await t.services.admin.updateClient(c.client.clientId, { post_logout_redirect_uris: [AFTER_LOGOUT] });
    }
    return { ...c, client: (await t.services.clients.find(c.client.clientId))! };
  }

  /** A user signed in, having signed in to `clients` with `scope`; answers the agent, ids and the last ID token. */
  async function signedInTo(t: TestApp, clients: TestClient[], scope = "openid") {
    const username = `bcl-${crypto.randomUUID().slice(0, 8)}`;
    const userId = await createUser(t, username);
    const agent = new Agent(t);
    await signIn(agent, username);
    let idToken: string | undefined;
    for (const c of clients) {
      const { verifier, challenge } = pkce();
      const back = await authorizeAs(agent, authorizeUrl(c, { scope, code_challenge: challenge }), username, REDIRECT);
      const [, body] = await post(t, "/oauth/token", { grant_type: "authorization_code", code: back.searchParams.get("code")!, redirect_uri: REDIRECT, code_verifier: verifier }, c.auth.headers);
      idToken = body.id_token;
    }
    const [row] = await t.database.db.select().from(browserSessions).where(eq(browserSessions.userId, userId));
    return { agent, userId, username, sid: row!.id, idToken };
  }

  const receivedFor = (sid: string) => receiver.received.filter((r) => r.claims.sid === sid);

  test("logout tells each client that had an openid grant in the sign-in, with a logout token §2.6 accepts — nobody else", async () => {
    const t = await app();
    const told = await relyingParty(t);
    const silent = await relyingParty(t, { backchannel: false });
    const notOpenId = await relyingParty(t);
    const user = await signedInTo(t, [told, silent]);
    // The same sign-in, but a grant without openid: that client is not an OpenID relying party of it.
    const { verifier, challenge } = pkce();
    const back = await authorizeAs(user.agent, authorizeUrl(notOpenId, { scope: "read", code_challenge: challenge }), user.username, REDIRECT);
    await post(t, "/oauth/token", { grant_type: "authorization_code", code: back.searchParams.get("code")!, redirect_uri: REDIRECT, code_verifier: verifier }, notOpenId.auth.headers);
    const page = await user.agent.get("/account/sessions");
    await user.agent.post("/oauth/logout", [["csrf_token", csrfToken(page.text)]]);
    await t.services.backchannelLogout.look();
    const tokens = receivedFor(user.sid);
    expect(tokens.map((r) => r.path)).toEqual([`/${told.client.clientId}`]);
    expect(tokens[0]!.claims).toMatchObject({ iss: t.config.issuer, aud: told.client.clientId, sub: user.userId, sid: user.sid, events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } });
    expect(await t.services.stores.logoutDeliveries.forSignIn(user.sid)).toEqual([{ client_id: told.client.clientId, status: "delivered", attempts: 1, last_status: 200 }]);
    // A second look sends nothing again.
    await t.services.backchannelLogout.look();
    expect(receivedFor(user.sid)).toHaveLength(1);
  });

  test.each([
    ["Sign out everywhere", async (t: TestApp, user: { agent: Agent; userId: string }) => {
      const page = await user.agent.get("/account/sessions");
      await user.agent.post("/account/sign-out-everywhere", [["csrf_token", csrfToken(page.text)]]);
    }],
    ["the user disabled", (t: TestApp, user: { userId: string }) => t.services.admin.disableUser(user.userId)],
    ["the user deleted", (t: TestApp, user: { userId: string }) => t.services.admin.deleteUser(user.userId)],
    ["a new password", (t: TestApp, user: { userId: string }) => t.services.admin.setPassword(user.userId, "another password entirely", { keepSessions: false })],
    ["an operator ending the sign-in", async (t: TestApp, user: { userId: string }) => {
      const [row] = await t.database.db.select().from(browserSessions).where(eq(browserSessions.userId, user.userId));
      await t.services.admin.endBrowserSession(row!.id);
    }],
  ] as const)("the sign-in ending by %s tells the client", async (_name, end) => {
    const t = await app();
    const c = await relyingParty(t);
    const user = await signedInTo(t, [c]);
    await end(t, user);
    await t.services.backchannelLogout.look();
    expect(receivedFor(user.sid).map((r) => r.claims)).toEqual([expect.objectContaining({ aud: c.client.clientId, sub: user.userId, sid: user.sid })]);
  });

  test("a change that rolls back logs nothing and tells nobody", async () => {
    const t = await app();
    const c = await relyingParty(t);
    const user = await signedInTo(t, [c]);
    await t.database.db
      .transaction(async (tx) => {
        await tx.update(browserSessions).set({ endedAt: sql`now()`, endReason: "logout" }).where(eq(browserSessions.id, user.sid));
        throw new Error("roll back");
      })
      .catch(() => undefined);
    await t.services.backchannelLogout.look();
    const logged = await t.database.db.select().from(revocationEvents).where(sql`${revocationEvents.event} = 'browser-session-ended' and ${revocationEvents.detail} ->> 'sid' = ${user.sid}`);
    expect(logged).toEqual([]);
    expect(receivedFor(user.sid)).toEqual([]);
  });

  test("a receiver that fails is tried again until it takes the token; one that refuses (4xx) is given up at once", async () => {
    const t = await app();
    const flaky = await relyingParty(t);
    const refusing = await relyingParty(t);
    receiver.script.set(`/${flaky.client.clientId}`, [503, 500]);
    receiver.script.set(`/${refusing.client.clientId}`, [400]);
    const user = await signedInTo(t, [flaky, refusing]);
    await t.services.admin.signOutEverywhere(user.userId);
    const due = () => t.database.db.update(logoutDeliveries).set({ nextAttemptAt: sql`now()` }).where(eq(logoutDeliveries.status, "pending"));
    await t.services.backchannelLogout.look();
    expect(await t.services.stores.logoutDeliveries.forSignIn(user.sid)).toEqual(
      [
        { client_id: flaky.client.clientId, status: "pending", attempts: 1, last_status: 503 },
        { client_id: refusing.client.clientId, status: "failed", attempts: 1, last_status: 400 },
      ].sort((a, b) => (a.client_id < b.client_id ? -1 : 1)),
    );
    // The retry waits its backoff: a look before then sends nothing.
    await t.services.backchannelLogout.look();
    expect(receivedFor(user.sid)).toEqual([]);
    await due();
    await t.services.backchannelLogout.look();
    await due();
    await t.services.backchannelLogout.look();
    expect(receivedFor(user.sid).map((r) => r.path)).toEqual([`/${flaky.client.clientId}`]);
    const settled = await t.services.stores.logoutDeliveries.forSignIn(user.sid);
    expect(settled.find((d) => d.client_id === flaky.client.clientId)).toEqual({ client_id: flaky.client.clientId, status: "delivered", attempts: 3, last_status: 200 });
    expect(settled.find((d) => d.client_id === refusing.client.clientId)!.attempts).toBe(1);
  });

  test("a receiver that is down is retried (the delivery stays pending)", async () => {
    const t = await app();
    const c = await relyingParty(t);
    await t.services.admin.updateClient(c.client.clientId, { backchannel_logout_uri: `http://127.0.0.1:${deadPort}/logout` });
    const user = await signedInTo(t, [c]);
    await t.services.admin.signOutEverywhere(user.userId);
    await t.services.backchannelLogout.look();
    expect(await t.services.stores.logoutDeliveries.forSignIn(user.sid)).toEqual([{ client_id: c.client.clientId, status: "pending", attempts: 1, last_status: null }]);
  });

  test("RP-Initiated Logout: a confirmed sign-out ends the sign-in, tells the clients and returns to the registered URI with state", async () => {
    const t = await app();
    const c = await relyingParty(t);
    const user = await signedInTo(t, [c]);
    const query = new URLSearchParams({ id_token_hint: user.idToken!, post_logout_redirect_uri: AFTER_LOGOUT, state: "bye-1" });
    const page = await user.agent.get(`/oauth/end-session?${query}`);
    expect(page.res.status).toBe(200);
    expect(page.text).toContain('action="/oauth/end-session"');
    expect(page.res.headers.get("content-security-policy")).toContain("form-action 'self' https://app.example");
    // Nothing ended yet: the user has not confirmed.
    expect((await user.agent.get("/account/sessions")).res.status).toBe(200);
    const done = await user.agent.post("/oauth/end-session", [...hiddenFields(page.text, "/oauth/end-session"), ["decision", "logout"]]);
    expect(done.res.status).toBe(303);
    expect(done.location).toBe(`${AFTER_LOGOUT}?state=bye-1`);
    // The sign-in is over: the account page asks to sign in again.
    expect((await user.agent.get("/account/sessions")).res.status).toBe(302);
    const [row] = await t.database.db.select().from(browserSessions).where(eq(browserSessions.id, user.sid));
    expect(row!.endedAt).not.toBeNull();
    await t.services.backchannelLogout.look();
    expect(receivedFor(user.sid)).toHaveLength(1);
  });

  test("RP-Initiated Logout: staying signed in changes nothing; with nobody signed in the browser goes straight back", async () => {
    const t = await app();
    const c = await relyingParty(t);
    const user = await signedInTo(t, [c]);
    const query = new URLSearchParams({ client_id: c.client.clientId, post_logout_redirect_uri: AFTER_LOGOUT });
    const page = await user.agent.get(`/oauth/end-session?${query}`);
    const stay = await user.agent.post("/oauth/end-session", [...hiddenFields(page.text, "/oauth/end-session"), ["decision", "stay"]]);
    expect(stay.location).toBe(AFTER_LOGOUT);
    expect((await user.agent.get("/account/sessions")).res.status).toBe(200);
    const nobody = await new Agent(t).get(`/oauth/end-session?${query}`);
    expect(nobody.res.status).toBe(302);
    expect(nobody.location).toBe(AFTER_LOGOUT);
  });

  test.each([
    ["an unregistered post_logout_redirect_uri", (c: TestClient, _other: TestClient, idToken: string) => ({ id_token_hint: idToken, post_logout_redirect_uri: "https://evil.example/" })],
    ["a post_logout_redirect_uri with no client named", () => ({ post_logout_redirect_uri: AFTER_LOGOUT })],
    ["an id_token_hint for another client than client_id", (_c: TestClient, other: TestClient, idToken: string) => ({ id_token_hint: idToken, client_id: other.client.clientId })],
    ["an id_token_hint not signed by this server", () => ({ id_token_hint: "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2ln" })],
  ] as const)("RP-Initiated Logout refuses %s on a page, without redirecting, and the user stays signed in", async (_name, params) => {
    const t = await app();
    const c = await relyingParty(t);
    const other = await relyingParty(t);
    const user = await signedInTo(t, [c]);
    const page = await user.agent.get(`/oauth/end-session?${new URLSearchParams(params(c, other, user.idToken!))}`);
    expect(page.res.status).toBe(400);
    expect(page.location).toBeNull();
    expect(page.text).toContain("not valid");
    expect((await user.agent.get("/account/sessions")).res.status).toBe(200);
  });

  test("the confirmation form is CSRF-protected", async () => {
    const t = await app();
    const c = await relyingParty(t);
    const user = await signedInTo(t, [c]);
    const res = await user.agent.post("/oauth/end-session", [["client_id", c.client.clientId], ["decision", "logout"], ["csrf_token", "forged".padEnd(43, "x")]]);
    expect(res.res.status).toBe(403);
    expect((await user.agent.get("/account/sessions")).res.status).toBe(200);
  });

  test("client metadata: post_logout_redirect_uris and backchannel_logout_uri are checked like redirect URIs (https, no fragment)", async () => {
    const t = await app();
    for (const metadata of [
      { backchannel_logout_uri: "http://rp.example/logout" },
      { backchannel_logout_uri: "https://rp.example/logout#frag" },
      { backchannel_logout_uri: "not a url" },
      { post_logout_redirect_uris: ["javascript:alert(1)"] },
      { post_logout_redirect_uris: ["https://rp.example/bye#x"] },
    ]) {
      const [res, body] = await request(t, "POST", "/oauth/register", { headers: { "content-type": "application/json" }, body: JSON.stringify({ redirect_uris: [REDIRECT], ...metadata }) });
      expect({ metadata, status: res.status, error: body.error }).toEqual({ metadata, status: 400, error: "invalid_client_metadata" });
    }
    const [res, body] = await request(t, "POST", "/oauth/register", {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ redirect_uris: [REDIRECT], backchannel_logout_uri: "https://rp.example/logout", backchannel_logout_session_required: true, post_logout_redirect_uris: [AFTER_LOGOUT] }),
    });
    expect(res.status).toBe(201);
    expect(body).toMatchObject({ backchannel_logout_uri: "https://rp.example/logout", backchannel_logout_session_required: true, post_logout_redirect_uris: [AFTER_LOGOUT] });
  });

  test("Discovery names the logout endpoints", async () => {
    const t = await app();
    const [, op] = await request(t, "GET", "/.well-known/openid-configuration");
    expect(op).toMatchObject({ end_session_endpoint: `${t.config.issuer}/oauth/end-session`, backchannel_logout_supported: true, backchannel_logout_session_supported: true });
  });
});
