// DPoP at the resource server (RFC 9449 §7): the library accepts a DPoP-bound token only with
// `Authorization: DPoP` and a proof by its key for this method, URL and token, once; refuses it
// as Bearer; answers with DPoP challenges naming the algorithms — in feed and introspection mode,
// through the example API. A bound token revoked (RFC 7009, no proof needed) is refused too.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createProtectedApi } from "../examples/protected-api.ts";
import type { AccessTokenVerifier } from "@token-authority/resource-server";
import { createAccessTokenVerifier, protect } from "@token-authority/resource-server";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, createTestApp, introspect, post } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import type { DpopKey } from "./helpers/dpop.ts";
import { dpopKey } from "./helpers/dpop.ts";
import type { ServedApp } from "./helpers/serve.ts";
import { serve } from "./helpers/serve.ts";

const ME = "http://api.local/me";

describe.each(backends)("resource-server library with DPoP [%s]", (backend) => {
  let t: TestApp;
  let served: ServedApp;
  let owner: TestClient;
  let api: TestClient;
  const verifiers: AccessTokenVerifier[] = [];

  beforeAll(async () => {
    t = await createTestApp(backend);
    served = serve(t);
    owner = await createClient(t, "confidential");
    api = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
  }, 60_000);
  afterAll(async () => {
    for (const v of verifiers) await v.close();
    await served.stop();
    await t.close();
  });

  /** A DPoP-bound access token of `owner`, minted with a proof by `key`. */
  async function boundToken(key: DpopKey): Promise<string> {
    const proof = await key.proof({ htu: `${t.config.issuer}/oauth/token` });
    const res = await t.app.handle(
      new Request("http://localhost/oauth/token", {
        method: "POST",
        headers: { ...owner.auth.headers, "content-type": "application/x-www-form-urlencoded", dpop: proof },
        body: new URLSearchParams({ grant_type: "client_credentials", scope: "read" }),
      }),
    );
    const body = await res.json();
    expect(body.token_type).toBe("DPoP");
    return body.access_token;
  }

  const call = async (app: ReturnType<typeof createProtectedApi>, headers: Record<string, string | string[]>) => {
    const h = new Headers();
    for (const [name, value] of Object.entries(headers)) for (const v of Array.isArray(value) ? value : [value]) h.append(name, v);
    const res = await app.handle(new Request(ME, { headers: h }));
    return { status: res.status, challenge: res.headers.get("www-authenticate"), body: await res.json().catch(() => undefined) };
  };

  describe.each(["feed", "introspection"] as const)("%s mode", (mode) => {
    let app: ReturnType<typeof createProtectedApi>;
    let verifier: AccessTokenVerifier;
    beforeAll(async () => {
      const credentials = { clientId: api.client.clientId, clientSecret: api.secret! };
      verifier = createAccessTokenVerifier({
        issuer: t.config.issuer,
        audience: t.config.defaultAudience,
        jwksUri: `${served.url}/.well-known/jwks.json`,
        revocation:
          mode === "feed"
            ? { mode, url: `${served.url}/oauth/revocations`, ...credentials }
            : { mode, url: `${served.url}/oauth/introspect`, cacheTtlMs: 0, ...credentials },
      });
      verifiers.push(verifier);
      await verifier.ready();
      app = createProtectedApi(verifier);
    });

    test("accepts a bound token with a proof by its key, once; refuses it as Bearer, without a proof, replayed, for another URL or token", async () => {
      const key = await dpopKey();
      const token = await boundToken(key);
      const proof = await key.proof({ htm: "GET", htu: ME, accessToken: token });
      const ok = await call(app, { authorization: `DPoP ${token}`, dpop: proof });
      expect(ok.status).toBe(200);
      expect(ok.body.sub).toBe(owner.client.clientId);

      const refusals: Array<[string, Record<string, string | string[]>, string]> = [
        ["replayed", { authorization: `DPoP ${token}`, dpop: proof }, "invalid_dpop_proof"],
        ["as Bearer", { authorization: `Bearer ${token}` }, "invalid_token"],
        ["without a proof", { authorization: `DPoP ${token}` }, "invalid_dpop_proof"],
        ["with two proofs", { authorization: `DPoP ${token}`, dpop: [await key.proof({ htm: "GET", htu: ME, accessToken: token }), await key.proof({ htm: "GET", htu: ME, accessToken: token })] }, "invalid_dpop_proof"],
        ["for another URL", { authorization: `DPoP ${token}`, dpop: await key.proof({ htm: "GET", htu: "http://api.local/notes", accessToken: token }) }, "invalid_dpop_proof"],
        ["for another method", { authorization: `DPoP ${token}`, dpop: await key.proof({ htm: "POST", htu: ME, accessToken: token }) }, "invalid_dpop_proof"],
        ["for another token (ath)", { authorization: `DPoP ${token}`, dpop: await key.proof({ htm: "GET", htu: ME, accessToken: "another" }) }, "invalid_dpop_proof"],
        ["stale", { authorization: `DPoP ${token}`, dpop: await key.proof({ htm: "GET", htu: ME, accessToken: token, iat: Math.floor(Date.now() / 1000) - 600 }) }, "invalid_dpop_proof"],
        ["by another key", { authorization: `DPoP ${token}`, dpop: await (await dpopKey()).proof({ htm: "GET", htu: ME, accessToken: token }) }, "invalid_token"],
      ];
      for (const [name, headers, error] of refusals) {
        const refused = await call(app, headers);
        expect([name, refused.status, refused.body?.error]).toEqual([name, 401, error]);
        expect(refused.challenge).toStartWith(`DPoP realm="api", error="${error}"`);
        expect(refused.challenge).toContain('algs="ES256');
      }
    });

    test("protect() (the MCP example's form) checks the proof too", async () => {
      const key = await dpopKey();
      const token = await boundToken(key);
      const handler = protect(verifier, (_request, claims) => Response.json({ sub: claims.sub }));
      const url = "http://mcp.local/mcp";
      const ok = await handler(new Request(url, { method: "POST", headers: { authorization: `DPoP ${token}`, dpop: await key.proof({ htm: "POST", htu: url, accessToken: token }) } }));
      expect(ok.status).toBe(200);
      const bearer = await handler(new Request(url, { method: "POST", headers: { authorization: `Bearer ${token}` } }));
      expect(bearer.status).toBe(401);
      expect(bearer.headers.get("www-authenticate")).toStartWith("DPoP ");
    });

    test("an unbound token is refused with the DPoP scheme, and still accepted as Bearer", async () => {
      const [, body] = await post(t, "/oauth/token", { grant_type: "client_credentials", scope: "read" }, owner.auth.headers);
      const key = await dpopKey();
      const asDpop = await call(app, { authorization: `DPoP ${body.access_token}`, dpop: await key.proof({ htm: "GET", htu: ME, accessToken: body.access_token }) });
      expect([asDpop.status, asDpop.body.error]).toEqual([401, "invalid_token"]);
      expect((await call(app, { authorization: `Bearer ${body.access_token}` })).status).toBe(200);
    });

    test("a bound token revoked by its client (no proof needed, RFC 7009) is refused, and introspects inactive", async () => {
      const key = await dpopKey();
      const token = await boundToken(key);
      expect((await post(t, "/oauth/revoke", { token }, owner.auth.headers))[0].status).toBe(200);
      const [, introspected] = await introspect(t, api, token);
      expect(introspected).toEqual({ active: false });
      const started = performance.now();
      let status = 200;
      while (status === 200 && performance.now() - started < 3000) {
        status = (await call(app, { authorization: `DPoP ${token}`, dpop: await key.proof({ htm: "GET", htu: ME, accessToken: token }) })).status;
        if (status === 200) await Bun.sleep(10);
      }
      expect(status).toBe(401);
    });
  });
});
