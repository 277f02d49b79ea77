// Interoperability: an off-the-shelf OAuth client (oauth4webapi) drives the server over real
// HTTP, knowing nothing but the issuer: discovery → registration → tokens → revocation.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as oauth from "oauth4webapi";
import type { TestApp } from "./helpers/app.ts";
import { createTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { issueCode } from "./helpers/grants.ts";

setDefaultTimeout(30_000);

// The issuer is plain http on loopback; the library refuses that unless told otherwise.
const insecure = { [oauth.allowInsecureRequests]: true } as const;

describe.each(backends)("oauth4webapi interop [%s]", (backend) => {
  let app: TestApp | undefined;
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => app!.app.handle(req) });
  const issuer = new URL(`http://127.0.0.1:${server.port}`);
  const ready = createTestApp(backend, { TA_ISSUER: issuer.href, TA_SCOPES: "read,write" }).then((t) => (app = t));
  afterAll(async () => {
    server.stop(true);
    await (await ready).close();
  });

  async function discover(): Promise<oauth.AuthorizationServer> {
    await ready;
    return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...insecure, algorithm: "oauth2" }));
  }

  test("discovery → registration → client_credentials → revocation", async () => {
    const t = await ready;
    const as = await discover();
    expect(as.token_endpoint).toBe(`${t.config.issuer}/oauth/token`);

    const registered = await oauth.processDynamicClientRegistrationResponse(
      await oauth.dynamicClientRegistrationRequest(
        as,
        { client_name: "interop", grant_types: ["client_credentials"], token_endpoint_auth_method: "client_secret_basic", scope: "read" },
        insecure,
      ),
    );
    const client: oauth.Client = { client_id: registered.client_id };
    const auth = oauth.ClientSecretBasic(registered.client_secret as string);

    const tokens = await oauth.processClientCredentialsResponse(
      as,
      client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: "read" }, insecure),
    );
    expect(tokens.token_type).toBe("bearer"); // the library normalizes the case
    expect(tokens.scope).toBe("read");
    expect(tokens.refresh_token).toBeUndefined();
    expect((await t.services.pipeline.verify(tokens.access_token)).ok).toBe(true);

    await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, tokens.access_token, insecure));
    expect(await t.services.pipeline.verify(tokens.access_token)).toEqual({ ok: false, reason: "inactive" });
  });

  test("a public client: authorization code with PKCE → refresh → revocation of the refresh token", async () => {
    const t = await ready;
    const as = await discover();
    const registered = await oauth.processDynamicClientRegistrationResponse(
      await oauth.dynamicClientRegistrationRequest(
        as,
        {
          redirect_uris: ["http://127.0.0.1:8765/callback"],
          grant_types: ["authorization_code", "refresh_token"],
          token_endpoint_auth_method: "none",
        },
        insecure,
      ),
    );
    const client: oauth.Client = { client_id: registered.client_id, token_endpoint_auth_method: "none" };
    const auth = oauth.None();

    // The authorization endpoint is another issue's; issue the code as it would.
    const testClient = { client: (await t.services.clients.find(registered.client_id))!, secret: undefined, auth: { form: {}, headers: {} } };
    const verifier = oauth.generateRandomCodeVerifier();
    const code = await issueCode(t, testClient, { codeChallenge: await oauth.calculatePKCECodeChallenge(verifier), scope: "read write" });
    const callback = new URL(`http://127.0.0.1:8765/callback?code=${code.code}&iss=${encodeURIComponent(as.issuer)}`);
    const params = oauth.validateAuthResponse(as, client, callback, oauth.skipStateCheck);

    const first = await oauth.processAuthorizationCodeResponse(
      as,
      client,
      await oauth.authorizationCodeGrantRequest(as, client, auth, params, code.redirectUri, verifier, insecure),
    );
    expect(first.scope).toBe("read write");
    expect(first.refresh_token).toEqual(expect.any(String));

    const second = await oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, auth, first.refresh_token!, insecure),
    );
    expect((await t.services.pipeline.verify(second.access_token)).ok).toBe(true);
    expect((await t.services.pipeline.verify(first.access_token)).ok).toBe(false);

    await oauth.processRevocationResponse(
      await oauth.revocationRequest(as, client, auth, second.refresh_token!, { ...insecure, additionalParameters: { token_type_hint: "refresh_token" } }),
    );
    expect((await t.services.pipeline.verify(second.access_token)).ok).toBe(false);
    // The library surfaces the refused refresh as an OAuth error response.
    const refused = oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, auth, second.refresh_token!, insecure),
    );
    await expect(refused).rejects.toMatchObject({ error: "invalid_grant" });
  });
});
