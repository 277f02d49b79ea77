// DPoP with clients nobody here wrote, against the compiled executable on both backends, with
// server nonces required (TA_DPOP_NONCE): oauth4webapi (client_credentials, retried with the
// nonce it is given) and openid-client (authorization code + PKCE with dpop_jkt, signed in through
// the real pages, then refresh), each calling a resource server built on the library with its
// bound token — and refused when it presents that token as Bearer.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as oauth from "oauth4webapi";
import * as oidc from "openid-client";
import type { AccessTokenVerifier } from "@token-authority/resource-server";
import { createAccessTokenVerifier, protect } from "@token-authority/resource-server";
import { Agent, authorizeAs } from "./helpers/agent.ts";
import type { Executable } from "./helpers/binary.ts";
import { freePort, startExecutable } from "./helpers/binary.ts";
import { backends } from "./helpers/db.ts";

setDefaultTimeout(60_000);

const PASSWORD = "correct horse battery staple";
const insecure = { [oauth.allowInsecureRequests]: true } as const;

describe.each(backends)("DPoP interoperability at the executable [%s]", (backend) => {
  let executable: Executable;
  let issuer: string;
  let api: ReturnType<typeof Bun.serve>;
  let apiUrl: string;
  let verifier: AccessTokenVerifier;
  const redirectPort = freePort();
  const redirect = `http://127.0.0.1:${redirectPort}/callback`;

  const cli = (args: string[], stdin?: string) => executable.cli(args, stdin);

  beforeAll(async () => {
    executable = await startExecutable(backend, { TA_DPOP_NONCE: "true" });
    issuer = executable.issuer;
    await cli(["users", "create", "dpop-user", "--password-stdin"], `${PASSWORD}\n`);
    const rs = await cli(["clients", "create", "--name", "api", "--resource-server", `${issuer}/api`]);
    verifier = createAccessTokenVerifier({ issuer, audience: `${issuer}/api`, revocation: { mode: "feed", clientId: rs.client_id, clientSecret: rs.client_secret } });
    await verifier.ready();
    api = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: protect(verifier, (_request, claims) => Response.json({ sub: claims.sub, cnf: claims.cnf })) });
    apiUrl = `http://127.0.0.1:${api.port}/me`;
  }, 180_000);

  afterAll(async () => {
    api?.stop(true);
    await verifier?.close();
    await executable?.close();
  });

  test("oauth4webapi: client_credentials with DPoP, the nonce retry, then the resource server with the proof", async () => {
    const client = await cli(["clients", "create", "--name", "o4w", "--grant-type", "client_credentials", "--scope", "read"]);
    const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { ...insecure, algorithm: "oauth2" }));
    expect(as.dpop_signing_alg_values_supported).toContain("ES256");
    const c: oauth.Client = { client_id: client.client_id };
    const auth = oauth.ClientSecretBasic(client.client_secret);
    const DPoP = oauth.DPoP(c, await oauth.generateKeyPair("ES256"));
    const request = () => oauth.clientCredentialsGrantRequest(as, c, auth, { scope: "read" }, { ...insecure, DPoP });
    let tokens: oauth.TokenEndpointResponse;
    let retried = false;
    try {
      tokens = await oauth.processClientCredentialsResponse(as, c, await request());
    } catch (error) {
      // RFC 9449 §8: the first proof carried no nonce; the library keeps the one the server sent.
      expect(oauth.isDPoPNonceError(error)).toBe(true);
      retried = true;
      tokens = await oauth.processClientCredentialsResponse(as, c, await request());
    }
    expect(retried).toBe(true);
    expect(tokens.token_type).toBe("dpop");
    const ok = await oauth.protectedResourceRequest(tokens.access_token, "GET", new URL(apiUrl), undefined, undefined, { ...insecure, DPoP });
    expect(ok.status).toBe(200);
    expect((await ok.json()).cnf.jkt).toBeString();
    // The same token as a bearer token is refused (RFC 9449 §7.2).
    const bearer = await fetch(apiUrl, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(bearer.status).toBe(401);
    expect(bearer.headers.get("www-authenticate")).toStartWith("DPoP ");
  });

  test("openid-client: code + PKCE bound by dpop_jkt, refresh with the same key, the resource server, revocation", async () => {
    const client = await cli(["clients", "create", "--name", "oidc", "--public", "--redirect-uri", redirect, "--scope", "read"]);
    const config = await oidc.discovery(new URL(issuer), client.client_id, { token_endpoint_auth_method: "none" }, oidc.None(), {
      algorithm: "oauth2",
      execute: [oidc.allowInsecureRequests],
    });
    const keyPair = await oidc.randomDPoPKeyPair("ES256");
    const DPoP = oidc.getDPoPHandle(config, keyPair);
    const verifierCode = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirect,
      scope: "read",
      state,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifierCode),
      code_challenge_method: "S256",
      dpop_jkt: await DPoP.calculateThumbprint(),
    });
    const callback = await authorizeAs(new Agent(issuer), url.toString(), "dpop-user", redirect);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifierCode, expectedState: state }, undefined, { DPoP });
    expect(tokens.token_type).toBe("dpop");
    expect((await oidc.fetchProtectedResource(config, tokens.access_token, new URL(apiUrl), "GET", undefined, undefined, { DPoP })).status).toBe(200);

    // The refresh token is bound: openid-client refreshes with the same key.
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, undefined, { DPoP });
    expect(refreshed.token_type).toBe("dpop");
    // Another key cannot use it.
    const thief = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair("ES256"));
    const stolen = await oidc.refreshTokenGrant(config, refreshed.refresh_token!, undefined, { DPoP: thief }).catch((error) => error);
    expect(stolen).toBeInstanceOf(oidc.ResponseBodyError);
    expect((stolen as oidc.ResponseBodyError).error).toBe("invalid_grant");

    // A code bound by dpop_jkt (carried through sign-in and consent) is refused to another key (RFC 9449 §10).
    const state2 = oidc.randomState();
    const bound = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirect,
      scope: "read",
      state: state2,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifierCode),
      code_challenge_method: "S256",
      dpop_jkt: await DPoP.calculateThumbprint(),
    });
    const boundCallback = await authorizeAs(new Agent(issuer), bound.toString(), "dpop-user", redirect);
    const wrongKey = await oidc
      .authorizationCodeGrant(config, boundCallback, { pkceCodeVerifier: verifierCode, expectedState: state2 }, undefined, { DPoP: thief })
      .catch((error) => error);
    expect((wrongKey as oidc.ResponseBodyError).error).toBe("invalid_dpop_proof");

    await oidc.tokenRevocation(config, refreshed.refresh_token!, { token_type_hint: "refresh_token" });
    let status = 200;
    for (const started = Date.now(); status === 200 && Date.now() - started < 3000; ) {
      // The library throws on a challenge (401 with WWW-Authenticate).
      status = await oidc
        .fetchProtectedResource(config, refreshed.access_token, new URL(apiUrl), "GET", undefined, undefined, { DPoP })
        .then((response) => response.status, (error: { status?: number }) => error.status ?? 0);
      if (status === 200) await Bun.sleep(10);
    }
    expect(status).toBe(401);
    const again = await oidc.refreshTokenGrant(config, refreshed.refresh_token!, undefined, { DPoP }).catch((error) => error);
    expect((again as oidc.ResponseBodyError).error).toBe("invalid_grant");
  });
});
