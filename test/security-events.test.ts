// Revocation on every security event, one matrix on every backend: each event × what a user or a
// client holds (access token, refresh token, browser session, remembered consent) × every place
// that reads it (introspection, the resource-server library in feed and in introspection mode,
// the refresh grant, the account page, the authorization endpoint).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { decodeJwt } from "jose";
import type { AccessTokenVerifier } from "@token-authority/resource-server";
import { createAccessTokenVerifier } from "@token-authority/resource-server";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { admin, basic, createClient, createTestApp, introspect, mintClientSession, mintCodeSession, revoke } from "./helpers/app.ts";
import { Agent, authorizeUrl, createUser, signIn } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";
import { refresh } from "./helpers/grants.ts";
import type { ServedApp } from "./helpers/serve.ts";
import { serve } from "./helpers/serve.ts";

type Fate = "dead" | "live";

interface Holdings {
  user: { id: string; username: string };
  client: TestClient;
  accessToken: string;
  refreshToken: string;
  browser: Agent;
}

interface Event {
  name: string;
  /** Applies the event to what `h` holds. */
  apply(t: TestApp, h: Holdings): Promise<void>;
  access: Fate;
  refresh: Fate;
  browser: Fate;
  consent: "kept" | "gone";
  /** The feed entries' reason, where tokens die. */
  reason?: string;
}

/** Rotates the client's secret; the client then authenticates with the new one. */
async function rotateSecret(t: TestApp, h: Holdings, revokeTokens: boolean): Promise<void> {
  const [res, body] = await admin(t, "POST", `/clients/${h.client.client.clientId}/secret`, { revoke_tokens: revokeTokens });
  expect(res.status).toBe(200);
  h.client = { ...h.client, secret: body.client_secret, auth: { form: {}, headers: { authorization: basic(h.client.client.clientId, body.client_secret) } } };
}

const EVENTS: Event[] = [
  { name: "user disabled", access: "dead", refresh: "dead", browser: "dead", consent: "kept", reason: "user_disabled",
    apply: async (t, h) => void (await admin(t, "POST", `/users/${h.user.id}/disable`)) },
  { name: "user deleted", access: "dead", refresh: "dead", browser: "dead", consent: "gone", reason: "user_deleted",
    apply: async (t, h) => void (await admin(t, "DELETE", `/users/${h.user.id}`)) },
  { name: "password changed", access: "dead", refresh: "dead", browser: "dead", consent: "kept", reason: "password_changed",
    apply: async (t, h) => void (await admin(t, "PUT", `/users/${h.user.id}/password`, { password: "a brand new password" })) },
  { name: "password changed with --keep-sessions", access: "live", refresh: "live", browser: "live", consent: "kept",
    apply: async (t, h) => void (await admin(t, "PUT", `/users/${h.user.id}/password`, { password: "a brand new password", keep_sessions: true })) },
  { name: "client deleted", access: "dead", refresh: "dead", browser: "live", consent: "gone", reason: "client_deleted",
    apply: async (t, h) => void (await admin(t, "DELETE", `/clients/${h.client.client.clientId}`)) },
  { name: "client secret rotated", access: "live", refresh: "live", browser: "live", consent: "kept",
    apply: (t, h) => rotateSecret(t, h, false) },
  { name: "client secret rotated, tokens revoked", access: "dead", refresh: "dead", browser: "live", consent: "kept", reason: "secret_rotated",
    apply: (t, h) => rotateSecret(t, h, true) },
  { name: "signing key revoked", access: "dead", refresh: "dead", browser: "live", consent: "kept", reason: "key_revoked",
    apply: async (t) => {
      const { retired_kid } = (await admin(t, "POST", "/keys/rotate"))[1];
      await admin(t, "POST", `/keys/${retired_kid}/revoke`);
    } },
  { name: "consent withdrawn", access: "dead", refresh: "dead", browser: "live", consent: "gone", reason: "consent_withdrawn",
    apply: async (t, h) => void (await t.services.consents.withdraw(h.user.id, h.client.client.clientId)) },
  { name: "Sign out everywhere", access: "dead", refresh: "dead", browser: "dead", consent: "kept", reason: "signed_out",
    apply: async (_t, h) => {
      const page = await h.browser.get("/account/sessions");
      const csrf = /name="csrf_token" value="([^"]+)"/.exec(page.text)![1]!;
      const done = await h.browser.post("/account/sign-out-everywhere", { csrf_token: csrf });
      expect(done.res.status).toBe(303);
    } },
];

describe.each(backends)("security events [%s]", (backend) => {
  let t: TestApp;
  let served: ServedApp;
  let api: TestClient;
  let feed: AccessTokenVerifier;
  let introspecting: AccessTokenVerifier;
  let sentinelOwner: TestClient;

  beforeAll(async () => {
    t = await createTestApp(backend);
    served = serve(t);
    api = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
    sentinelOwner = await createClient(t, "confidential");
    const verifier = (mode: "feed" | "introspection") =>
      createAccessTokenVerifier({
        issuer: t.config.issuer,
        audience: t.config.defaultAudience,
        jwksUri: `${served.url}/.well-known/jwks.json`,
        // A key rotated by an event is fetched at once, not after the default cooldown.
        jwksRefreshCooldownSeconds: 0,
        revocation:
          mode === "feed"
            ? { mode, url: `${served.url}/oauth/revocations`, clientId: api.client.clientId, clientSecret: api.secret! }
            : { mode, url: `${served.url}/oauth/introspect`, clientId: api.client.clientId, clientSecret: api.secret!, cacheTtlMs: 1 },
      });
    feed = verifier("feed");
    introspecting = verifier("introspection");
    await feed.ready();
  }, 60_000);
  afterAll(async () => {
    feed.close();
    introspecting.close();
    await served.stop();
    await t.close();
  });

  const accepted = (verifier: AccessTokenVerifier, token: string) =>
    verifier.verifyToken(token).then(
      () => true,
      () => false,
    );

  /** Revokes a token of its own and waits until the feed refuses it: everything committed before has reached the feed. */
  async function feedCaughtUp(): Promise<void> {
    const sentinel = await mintClientSession(t, sentinelOwner);
    expect(await accepted(feed, sentinel.accessToken)).toBe(true);
    await revoke(t, sentinelOwner, sentinel.accessToken);
    for (const started = performance.now(); await accepted(feed, sentinel.accessToken); ) {
      if (performance.now() - started > 5000) throw new Error("the feed did not deliver the sentinel's revocation");
      await Bun.sleep(5);
    }
  }

  async function holdings(name: string): Promise<Holdings> {
    const username = `${name.replace(/\W+/g, "-")}-${crypto.randomUUID().slice(0, 8)}`;
    const id = await createUser(t, username);
    const client = await createClient(t, "confidential", { scope: "read" });
    const family = await mintCodeSession(t, client, id);
    await t.services.consents.remember(id, client.client.clientId, ["read"]);
    const browser = new Agent(t);
    await signIn(browser, username);
    return { user: { id, username }, client, accessToken: family.accessToken, refreshToken: family.refreshToken!, browser };
  }

  test.each(EVENTS.map((event) => [event.name, event] as const))("%s", async (_name, event) => {
    const h = await holdings(event.name);
    // Before: everything is live everywhere.
    expect((await introspect(t, api, h.accessToken))[1].active).toBe(true);
    expect(await accepted(feed, h.accessToken)).toBe(true);
    expect(await accepted(introspecting, h.accessToken)).toBe(true);

    await event.apply(t, h);
    await feedCaughtUp();

    const live = (fate: Fate) => fate === "live";
    // The access token: introspection, the library in feed mode and in introspection mode.
    expect({ introspection: (await introspect(t, api, h.accessToken))[1].active }).toEqual({ introspection: live(event.access) });
    expect({ feed: await accepted(feed, h.accessToken) }).toEqual({ feed: live(event.access) });
    expect({ libraryIntrospection: await accepted(introspecting, h.accessToken) }).toEqual({ libraryIntrospection: live(event.access) });
    // The refresh token: the refresh grant (a refresh token of an ended session never mints again).
    const [refreshed, refreshedBody] = await refresh(t, h.client, h.refreshToken);
    if (event.refresh === "live") expect(refreshed.status).toBe(200);
    else if (event.name === "client deleted") expect(refreshedBody.error).toBe("invalid_client");
    else expect([refreshed.status, refreshedBody.error]).toEqual([400, "invalid_grant"]);
    // The browser session: the account page — which, while it is open, counts the client's live sessions.
    const account = await h.browser.get("/account/sessions");
    expect({ browser: account.res.status }).toEqual({ browser: live(event.browser) ? 200 : 302 });
    if (account.res.status === 200) {
      const listed = account.text.split("<li>").find((item) => item.includes(h.client.client.name));
      const count = listed === undefined ? 0 : Number(/Active sessions<\/dt><dd>(\d+)/.exec(listed)![1]);
      expect({ accountPageLiveSessions: count }).toEqual({ accountPageLiveSessions: live(event.access) ? 1 : 0 });
    }
    // The remembered consent.
    expect({ consent: await t.services.consents.covers(h.user.id, h.client.client.clientId, ["read"]) }).toEqual({ consent: event.consent === "kept" });
    if (event.browser === "live" && event.consent === "kept" && event.name !== "client deleted") {
      // Still remembered where it is used: a repeat authorization skips the consent page.
      const again = await h.browser.get(authorizeUrl(h.client));
      expect(again.res.status).toBe(302);
      expect(new URL(again.location!).searchParams.get("code")).not.toBeNull();
    }
    // The feed's entries say why.
    if (event.reason) {
      const entries = await t.services.stores.revocationEvents.after(0, 10_000);
      const { jti } = decodeJwt(h.accessToken); // (its key may be gone: read it without one)
      expect(entries.find((entry) => entry.jti === jti)?.reason).toBe(event.reason);
      // And the metrics count it by that reason.
      const counted = (await t.services.metrics.sessionsRevoked.get()).values.find((value) => value.labels.reason === event.reason);
      expect(counted?.value ?? 0).toBeGreaterThan(0);
    }
  }, 30_000);
});
