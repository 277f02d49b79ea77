// OpenID Connect Core with relying-party libraries nobody here wrote, against the compiled
// executable on both backends: openid-client v6 (OIDC discovery, code + PKCE + nonce through the
// real sign-in and consent pages, the ID token validated with its signature, UserInfo, refresh's new
// ID token, a wrong nonce refused; prompt=none answered login_required, or a code for a signed-in
// user) and oauth4webapi's OIDC helpers (a public client, requireIdToken, UserInfo's subject check).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as oauth from "oauth4webapi";
import * as oidc from "openid-client";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { Agent, authorizeAs, hiddenFields } from "./helpers/agent.ts";
import type { Executable } from "./helpers/binary.ts";
import { freePort, startExecutable } from "./helpers/binary.ts";
import { backends } from "./helpers/db.ts";

setDefaultTimeout(60_000);

const PASSWORD = "correct horse battery staple";
const USERNAME = "ada";
const PROFILE = { name: "Ada Lovelace", email: "ada@example.com", email_verified: true };
const SCOPE = "openid profile email";
const insecure = { [oauth.allowInsecureRequests]: true } as const;

describe.each(backends)("OpenID Connect interoperability at the executable [%s]", (backend) => {
  let executable: Executable;
  let issuer: string;
  let userId: string;
  /** A confidential client (client_secret_basic) and a public one, both allowed openid. */
  let confidential: { client_id: string; client_secret: string };
  let publicClient: { client_id: string };
  const redirect = `http://127.0.0.1:${freePort()}/callback`;

  const cli = (args: string[], stdin?: string) => executable.cli(args, stdin);
  const receiver = new LogoutReceiver();

  /** openid-client configured from /.well-known/openid-configuration, checking ID token signatures against the JWKS. */
  const discover = () =>
    oidc.discovery(new URL(issuer), confidential.client_id, confidential.client_secret, oidc.ClientSecretBasic(confidential.client_secret), {
      execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
    });

  /** An authorization request built by openid-client with PKCE S256, a nonce and a state. */
  async function authorizationRequest(config: oidc.Configuration, extra: Record<string, string> = {}) {
    const verifier = oidc.randomPKCECodeVerifier();
    const nonce = oidc.randomNonce();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirect,
      scope: SCOPE,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      nonce,
      state,
      ...extra,
    });
    return { url, verifier, nonce, state };
  }

  /** Signs the user in through the pages for `config`'s client and redeems the code with the library's checks (state, nonce, ID token). */
  async function signInWith(config: oidc.Configuration, agent: Agent) {
    const request = await authorizationRequest(config);
    const callback = await authorizeAs(agent, request.url.toString(), USERNAME, redirect);
    return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: request.verifier, expectedNonce: request.nonce, expectedState: request.state });
  }

  beforeAll(async () => {
    executable = await startExecutable(backend, { TA_OUTBOUND_ALLOW_HOSTS: receiver.host });
    receiver.trust(executable.issuer);
    issuer = executable.issuer;
    ({ id: userId } = await cli(["users", "create", USERNAME, "--password-stdin"], `${PASSWORD}\n`));
    await cli(["users", "set-profile", USERNAME, "--set", `name=${PROFILE.name}`, "--set", `email=${PROFILE.email}`, "--set", "email_verified=true"]);
    const codeGrants = ["--grant-type", "authorization_code", "--grant-type", "refresh_token"];
    confidential = await cli(["clients", "create", "--name", "rp", "--redirect-uri", redirect, ...codeGrants, "--scope", `${SCOPE} read`]);
    publicClient = await cli(["clients", "create", "--name", "spa", "--public", "--redirect-uri", redirect, "--scope", `${SCOPE} read`]);
  }, 180_000);

  afterAll(async () => {
    await executable?.close();
    receiver.stop();
  });

  test("openid-client: discovery, code + PKCE + nonce, a validated ID token, UserInfo, a new ID token at refresh; a wrong nonce refused", async () => {
    const config = await discover();
    expect(config.serverMetadata()).toMatchObject({ issuer, userinfo_endpoint: `${issuer}/oauth/userinfo`, jwks_uri: `${issuer}/.well-known/jwks.json` });
    const agent = new Agent(issuer);
    const first = await authorizationRequest(config);
    const callback = await authorizeAs(agent, first.url.toString(), USERNAME, redirect);
    const signedInBy = Math.floor(Date.now() / 1000);
    // The library checks the response's iss and state, then the ID token: signature (jwks), iss,
    // aud, exp, iat, nonce and at_hash (Core §3.1.3.7, §3.1.3.8).
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: first.verifier, expectedNonce: first.nonce, expectedState: first.state });
    const claims = tokens.claims()!;
    expect(claims).toMatchObject({ iss: issuer, sub: userId, aud: confidential.client_id, nonce: first.nonce, amr: ["pwd"] });
    expect(claims.auth_time).toBeWithin(signedInBy - 60, signedInBy + 1);
    expect(claims.sid).toBeString();
    expect(tokens.scope!.split(" ").sort()).toEqual(SCOPE.split(" ").sort());

    // UserInfo (Core §5.3): the profile's claims for the scopes granted, for the same subject.
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    expect(info).toMatchObject({ sub: userId, ...PROFILE, preferred_username: USERNAME });

    // Refresh (Core §12.2): a new ID token, validated again, for the same user and sign-in, without a nonce.
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.id_token).not.toBe(tokens.id_token);
    const again = refreshed.claims()!;
    expect(again).toMatchObject({ iss: issuer, sub: userId, aud: confidential.client_id, auth_time: claims.auth_time, sid: claims.sid });
    expect(again.nonce).toBeUndefined();
    expect((await oidc.fetchUserInfo(config, refreshed.access_token, userId)).email).toBe(PROFILE.email);

    // Another authorization in the same browser, redeemed expecting another nonce: the library refuses the ID token.
    const second = await authorizationRequest(config);
    const secondCallback = await authorizeAs(agent, second.url.toString(), USERNAME, redirect);
    const refused = await oidc
      .authorizationCodeGrant(config, secondCallback, { pkceCodeVerifier: second.verifier, expectedNonce: oidc.randomNonce(), expectedState: second.state })
      .catch((error) => error);
    expect(refused).toBeInstanceOf(oidc.ClientError);
    expect(refused.code).toBe("OAUTH_JWT_CLAIM_COMPARISON_FAILED");
    expect(refused.cause.cause).toMatchObject({ claim: "nonce", expected: expect.any(String) });
  });

  test("oauth4webapi: OIDC discovery, a public client's code exchange with requireIdToken and a signed ID token, UserInfo with the subject check", async () => {
    const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { ...insecure, algorithm: "oidc" }));
    expect(as.scopes_supported).toEqual(expect.arrayContaining(SCOPE.split(" ")));
    expect(as.id_token_signing_alg_values_supported).toContain("ES256");
    const client: oauth.Client = { client_id: publicClient.client_id, token_endpoint_auth_method: "none" };
    const verifier = oauth.generateRandomCodeVerifier();
    const nonce = oauth.generateRandomNonce();
    const state = oauth.generateRandomState();
    const url = new URL(as.authorization_endpoint!);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: client.client_id,
      redirect_uri: redirect,
      scope: SCOPE,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      nonce,
      state,
    }).toString();
    const callback = await authorizeAs(new Agent(issuer), url.toString(), USERNAME, redirect);
    const parameters = oauth.validateAuthResponse(as, client, callback, state);
    const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, redirect, verifier, insecure);
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: nonce, requireIdToken: true });
    // The same response's ID token, verified with a key from the server's jwks_uri.
    await oauth.validateApplicationLevelSignature(as, response, insecure);
    const claims = oauth.getValidatedIdTokenClaims(tokens)!;
    expect(claims).toMatchObject({ iss: issuer, sub: userId, aud: publicClient.client_id, nonce });
    expect(claims.auth_time).toBeNumber();
    expect(claims.sid).toBeString();

    const info = await oauth.processUserInfoResponse(as, client, claims.sub, await oauth.userInfoRequest(as, client, tokens.access_token, insecure));
    expect(info).toMatchObject({ sub: userId, ...PROFILE });
    // UserInfo's sub is checked against the ID token's (Core §5.3.4): another subject is refused.
    const mismatch = await oauth
      .processUserInfoResponse(as, client, crypto.randomUUID(), await oauth.userInfoRequest(as, client, tokens.access_token, insecure))
      .catch((error) => error);
    expect(mismatch).toBeInstanceOf(oauth.OperationProcessingError);
    expect(mismatch.code).toBe(oauth.JSON_ATTRIBUTE_COMPARISON);
  });

  test("openid-client: prompt=none answers login_required to a browser with no sign-in, and a code to one signed in and consented", async () => {
    const config = await discover();
    const silent = await authorizationRequest(config, { prompt: "none" });
    const callback = await authorizeAs(new Agent(issuer), silent.url.toString(), USERNAME, redirect);
    // Core §3.1.2.6: the error comes back to the client (with its state and iss), no page is shown.
    expect(callback.searchParams.get("error")).toBe("login_required");
    const error = await oidc
      .authorizationCodeGrant(config, callback, { pkceCodeVerifier: silent.verifier, expectedNonce: silent.nonce, expectedState: silent.state })
      .catch((e) => e);
    expect(error).toBeInstanceOf(oidc.AuthorizationResponseError);
    expect((error as oidc.AuthorizationResponseError).error).toBe("login_required");

    // A browser that signed in and approved once gets a code without any page, for the same sign-in.
    const agent = new Agent(issuer);
    const first = await signInWith(config, agent);
    const quiet = await authorizationRequest(config, { prompt: "none" });
    const page = await agent.get(quiet.url.toString());
    expect(page.location).toStartWith(redirect);
    const tokens = await oidc.authorizationCodeGrant(config, new URL(page.location!), {
      pkceCodeVerifier: quiet.verifier,
      expectedNonce: quiet.nonce,
      expectedState: quiet.state,
    });
    expect(tokens.claims()).toMatchObject({ sub: userId, nonce: quiet.nonce, sid: first.claims()!.sid, auth_time: first.claims()!.auth_time });
  });

  test("openid-client: RP-initiated logout ends the sign-in and returns with state; the back channel delivers a logout token that §2.6 validation accepts, after the receiver's failure", async () => {
    const afterLogout = redirect.replace("/callback", "/signed-out");
    const rp = await cli([
      "clients", "create", "--name", "rp-logout", "--redirect-uri", redirect, "--grant-type", "authorization_code", "--scope", SCOPE,
      "--post-logout-redirect-uri", afterLogout, "--backchannel-logout-uri", `${receiver.base}/logout`, "--backchannel-logout-session-required",
    ]);
    const config = await oidc.discovery(new URL(issuer), rp.client_id, rp.client_secret, oidc.ClientSecretBasic(rp.client_secret), {
      execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
    });
    expect(config.serverMetadata()).toMatchObject({ end_session_endpoint: `${issuer}/oauth/end-session`, backchannel_logout_supported: true, backchannel_logout_session_supported: true });
    const agent = new Agent(issuer);
    const tokens = await signInWith(config, agent);
    const { sid } = tokens.claims()!;
    expect(sid).toBeString();
    // The receiver is down for the first attempt: the delivery is retried from the committed entry.
    receiver.failNext(1);
    const delivered = receiver.next();
    const endSession = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: afterLogout, state: "bye-42" });
    const confirm = await agent.get(endSession.toString());
    expect(confirm.res.status).toBe(200);
    const done = await agent.post("/oauth/end-session", [...hiddenFields(confirm.text, "/oauth/end-session"), ["decision", "logout"]]);
    expect(done.location).toBe(`${afterLogout}?state=bye-42`);
    expect((await agent.get("/account/sessions")).res.status).toBe(302);
    const logout = await delivered;
    expect(logout).toMatchObject({ iss: issuer, aud: rp.client_id, sub: userId, sid });
    expect(receiver.failures).toBe(1);
  }, 60_000);

  test("a logout committed while the receiver is down reaches it after the server was killed (SIGKILL) and restarted", async () => {
    const rp = await cli([
      "clients", "create", "--name", "rp-crash", "--redirect-uri", redirect, "--grant-type", "authorization_code", "--scope", SCOPE,
      "--backchannel-logout-uri", `${receiver.base}/logout`,
    ]);
    const config = await oidc.discovery(new URL(issuer), rp.client_id, rp.client_secret, oidc.ClientSecretBasic(rp.client_secret), { execute: [oidc.allowInsecureRequests] });
    const agent = new Agent(issuer);
    const tokens = await signInWith(config, agent);
    receiver.failNext(1_000);
    const failuresBefore = receiver.failures;
    const page = await agent.get("/account/sessions");
    await agent.post("/oauth/logout", hiddenFields(page.text, "/oauth/logout"));
    // The first attempt failed: the entry is committed, the delivery waits for its retry — when the process dies.
    for (const deadline = Date.now() + 20_000; receiver.failures === failuresBefore; ) {
      if (Date.now() > deadline) throw new Error("no delivery attempt within 20 s");
      await Bun.sleep(50);
    }
    // (Killed between the failed attempt and its settling, the delivery is retried once its 10 s lease ends: within next()'s 20 s.)
    await executable.restart("SIGKILL");
    receiver.failNext(0);
    const logout = await receiver.next();
    expect(logout).toMatchObject({ aud: rp.client_id, sub: userId, sid: tokens.claims()!.sid });
  }, 60_000);
});

/**
 * A relying party's back-channel logout endpoint, validating each logout token as Back-Channel
 * Logout 1.0 §2.6 says: a JWS of the OP's keys (its jwks_uri), typ logout+jwt, iss, aud, iat and
 * exp, a jti, the backchannel-logout member of events, sub or sid, and no nonce.
 */
class LogoutReceiver {
  private readonly server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => this.receive(request) });
  private issuer = "";
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  private toFail = 0;
  private waiting: Array<(claims: Record<string, unknown>) => void> = [];
  failures = 0;

  get host(): string {
    return `127.0.0.1:${this.server.port}`;
  }

  get base(): string {
    return `http://${this.host}`;
  }

  trust(issuer: string): void {
    this.issuer = issuer;
    this.jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
  }

  failNext(count: number): void {
    this.toFail = count;
  }

  /** The claims of the next logout token accepted (within 20 s). */
  next(): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no logout token within 20 s")), 20_000);
      this.waiting.push((claims) => {
        clearTimeout(timer);
        resolve(claims);
      });
    });
  }

  stop(): void {
    this.server.stop(true);
  }

  private async receive(request: Request): Promise<Response> {
    if (this.toFail > 0) {
      this.toFail--;
      this.failures++;
      return new Response(null, { status: 503 });
    }
    const token = new URLSearchParams(await request.text()).get("logout_token") ?? "";
    try {
      if (decodeProtectedHeader(token).typ !== "logout+jwt") throw new Error("typ");
      const { payload } = await jwtVerify(token, this.jwks!, { issuer: this.issuer, requiredClaims: ["aud", "iat", "exp", "jti"] });
      const events = payload.events as Record<string, unknown> | undefined;
      if (typeof events?.["http://schemas.openid.net/event/backchannel-logout"] !== "object") throw new Error("events");
      if (payload.sub === undefined && payload.sid === undefined) throw new Error("neither sub nor sid");
      if ("nonce" in payload) throw new Error("nonce");
      this.waiting.shift()?.(payload as Record<string, unknown>);
      return new Response(null, { status: 200, headers: { "cache-control": "no-store" } });
    } catch {
      return new Response(null, { status: 400 });
    }
  }
}
