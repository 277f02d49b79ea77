// The resource-server library with Shared Signals as its revocation source (ssf mode): a poll
// stream of its own, made with the backlog extension, long-polled and acknowledged; a revoked
// family (sid) or a disabled user (sub) is refused; the stream goes on close and comes back if
// deleted under it; too many streams of earlier processes do not keep it from starting.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { decodeJwt } from "jose";
import { createProtectedApi } from "../examples/protected-api.ts";
import type { AccessTokenVerifier } from "@token-authority/resource-server";
import { createAccessTokenVerifier } from "@token-authority/resource-server";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { admin, createClient, createTestApp, mintClientSession, mintCodeSession, post, request } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import type { ServedApp } from "./helpers/serve.ts";
import { serve } from "./helpers/serve.ts";

setDefaultTimeout(30_000);

describe.each(backends)("resource-server library, ssf mode [%s]", (backend) => {
  let t: TestApp;
  let served: ServedApp;
  let owner: TestClient;
  let rs: TestClient;
  const verifiers: AccessTokenVerifier[] = [];

  /** The issuer's URLs (http://localhost/…) reach the served app. */
  const rewrite = ((input: string | URL | Request, init?: RequestInit) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    return fetch(url.startsWith(t.config.issuer) ? served.url + url.slice(t.config.issuer.length) : url, init);
  }) as typeof fetch;

  function verifier(extra: { maxStalenessMs?: number } = {}): AccessTokenVerifier {
    const v = createAccessTokenVerifier({
      issuer: t.config.issuer,
      audience: t.config.defaultAudience,
      revocation: { mode: "ssf", clientId: rs.client.clientId, clientSecret: rs.secret!, ...extra },
      fetch: rewrite,
    });
    verifiers.push(v);
    return v;
  }

  const call = async (api: ReturnType<typeof createProtectedApi>, token: string) =>
    (await api.handle(new Request("http://api.local/me", { headers: { authorization: `Bearer ${token}` } }))).status;

  async function untilRefused(api: ReturnType<typeof createProtectedApi>, token: string): Promise<void> {
    const started = performance.now();
    while (performance.now() - started < 5000) {
      if ((await call(api, token)) === 401) return;
      await Bun.sleep(5);
    }
    throw new Error("the API still accepts the token");
  }

  /** The library's streams, as the receiver sees them. */
  async function streamsOfRs(): Promise<Array<{ stream_id: string; description?: string }>> {
    const [, body] = await post(t, "/oauth/token", { grant_type: "client_credentials", scope: "ssf" }, rs.auth.headers);
    const [, list] = await request(t, "GET", "/ssf/streams", { headers: { authorization: `Bearer ${body.access_token}` } });
    return list;
  }

  beforeAll(async () => {
    t = await createTestApp(backend, { TA_SSF_MAX_STREAMS: "2", TA_SSF_LONG_POLL: "2" });
    served = serve(t);
    owner = await createClient(t, "confidential");
    rs = await createClient(t, "confidential", { grantTypes: ["client_credentials"], scope: "ssf" });
  }, 60_000);

  afterAll(async () => {
    for (const v of verifiers) await v.close();
    await served.stop();
    await t.close();
  });

  test("knows revocations made before it started (backlog), and refuses a family revoked later within one long poll", async () => {
    const before = await mintCodeSession(t, owner);
    expect((await post(t, "/oauth/revoke", { token: before.refreshToken! }, owner.auth.headers))[0].status).toBe(200);
    const live = await mintCodeSession(t, owner);
    const v = verifier();
    await v.ready();
    const api = createProtectedApi(v);
    expect(await call(api, before.accessToken)).toBe(401);
    expect(await call(api, live.accessToken)).toBe(200);

    await post(t, "/oauth/revoke", { token: live.accessToken }, owner.auth.headers);
    await untilRefused(api, live.accessToken);
    // A client's own token (client_credentials) is a family of its own.
    const own = await mintClientSession(t, owner);
    expect(await call(api, own.accessToken)).toBe(200);
    expect(decodeJwt(own.accessToken).sid).toBeString();
    await post(t, "/oauth/revoke", { token: own.accessToken }, owner.auth.headers);
    await untilRefused(api, own.accessToken);
    expect(await call(api, (await mintCodeSession(t, owner)).accessToken)).toBe(200);
    await v.close();
  });

  test("a disabled user's tokens are refused (RISC account-disabled), and new ones after enabling accepted", async () => {
    const v = verifier();
    await v.ready();
    const api = createProtectedApi(v);
    const [, user] = await admin(t, "POST", "/users", { username: `rs-${crypto.randomUUID().slice(0, 8)}`, password: "a long password" });
    const first = await mintCodeSession(t, owner, user.id);
    const second = await mintCodeSession(t, owner, user.id);
    expect(await call(api, first.accessToken)).toBe(200);
    expect((await admin(t, "POST", `/users/${user.id}/disable`))[0].status).toBe(200);
    await untilRefused(api, first.accessToken);
    await untilRefused(api, second.accessToken);
    expect((await admin(t, "POST", `/users/${user.id}/enable`))[0].status).toBe(200);
    // Issued a second later than the disabling event (tokens carry iat in seconds).
    await Bun.sleep(1100);
    expect(await call(api, (await mintCodeSession(t, owner, user.id)).accessToken)).toBe(200);
    await v.close();
  });

  test("deletes its stream on close, makes it again when it disappears, and starts past streams left by earlier processes", async () => {
    const v = verifier();
    await v.ready();
    const api = createProtectedApi(v);
    const [mine] = await streamsOfRs();
    expect(mine!.description).toBe(`token-authority resource server for ${t.config.defaultAudience}`);
    // Deleted under it (by its receiver or an operator): it makes another, from the backlog.
    const [, token] = await post(t, "/oauth/token", { grant_type: "client_credentials", scope: "ssf" }, rs.auth.headers);
    await request(t, "DELETE", `/ssf/streams?stream_id=${mine!.stream_id}`, { headers: { authorization: `Bearer ${token.access_token}` } });
    let again = await streamsOfRs();
    for (const started = performance.now(); again.length === 0 && performance.now() - started < 10_000; again = await streamsOfRs()) await Bun.sleep(50);
    expect(again).toHaveLength(1);
    expect(again[0]!.stream_id).not.toBe(mine!.stream_id);
    const session = await mintCodeSession(t, owner);
    await post(t, "/oauth/revoke", { token: session.accessToken }, owner.auth.headers);
    await untilRefused(api, session.accessToken);
    await v.close();
    expect(await streamsOfRs()).toEqual([]);

    // Two processes that died without closing left their streams (TA_SSF_MAX_STREAMS is 2 here).
    const left = [];
    for (let i = 0; i < 2; i++) {
      const [res, stream] = await request(t, "POST", "/ssf/streams", {
        headers: { authorization: `Bearer ${token.access_token}`, "content-type": "application/json" },
        body: JSON.stringify({ description: mine!.description }),
      });
      expect(res.status).toBe(201);
      left.push(stream.stream_id);
    }
    const next = verifier();
    await next.ready();
    const now = (await streamsOfRs()).map((stream) => stream.stream_id);
    // The oldest left-over stream made room; the other is still there.
    expect(now).toHaveLength(2);
    expect(now).not.toContain(left[0]);
    expect(now).toContain(left[1]);
    await next.close();
  });

  test("answers 503 while the transmitter cannot be reached, rather than accept what may be revoked", async () => {
    const unreachable = createAccessTokenVerifier({
      issuer: t.config.issuer,
      audience: t.config.defaultAudience,
      revocation: { mode: "ssf", clientId: rs.client.clientId, clientSecret: rs.secret!, tokenEndpoint: "http://127.0.0.1:9/token" },
      fetch: rewrite,
    });
    verifiers.push(unreachable);
    const res = await createProtectedApi(unreachable).handle(
      new Request("http://api.local/me", { headers: { authorization: `Bearer ${(await mintCodeSession(t, owner)).accessToken}` } }),
    );
    expect(res.status).toBe(503);
    expect((await res.json()).error).toBe("temporarily_unavailable");
  });
});
