// The admin API (/admin/v1), black-box through the app on every backend: each operation and its
// effect, the one metadata validation path, paging, who may call (the local operator; remote
// bearer tokens with ta:admin when TA_ADMIN_REMOTE is on), bad input, refusals that keep the
// server administrable, and the audit log.
import { describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { decodeProtectedHeader } from "jose";
import { openPostgres } from "../db/client.ts";
import type { TestApp } from "./helpers/app.ts";
import { admin, basic, createClient, createTestApp, introspect, mintClientSession, mintCodeSession, post, useTestApp } from "./helpers/app.ts";
import { Agent, createUser, signIn, TEST_PASSWORD } from "./helpers/agent.ts";
import { backends, testDatabaseUrl } from "./helpers/db.ts";
import { refresh } from "./helpers/grants.ts";

const liveAt = async (t: TestApp, c: Parameters<typeof introspect>[1], token: string) => (await introspect(t, c, token))[1].active as boolean;

describe.each(backends)("admin API: clients [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("create shows the secret once; get and list never do; the client works at once", async () => {
    const t = await ready();
    const [res, created] = await admin(t, "POST", "/clients", { client_name: "svc", grant_types: ["client_credentials"], scope: "read" });
    expect(res.status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(created).toMatchObject({ client_name: "svc", client_type: "confidential", grant_types: ["client_credentials"], scope: "read" });
    expect(created.client_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const [, got] = await admin(t, "GET", `/clients/${created.client_id}`);
    expect(got.client_id).toBe(created.client_id);
    expect(JSON.stringify(got)).not.toContain(created.client_secret);
    const [token] = await post(t, "/oauth/token", { grant_type: "client_credentials" }, { authorization: basic(created.client_id, created.client_secret) });
    expect(token.status).toBe(200);
  });

  test.each([
    ["an unknown scope", { grant_types: ["client_credentials"], scope: "admin" }, "invalid_client_metadata"],
    ["a plain http redirect URI off loopback", { grant_types: ["authorization_code"], redirect_uris: ["http://example.com/cb"] }, "invalid_redirect_uri"],
    ["authorization_code without a redirect URI", { grant_types: ["authorization_code"] }, "invalid_redirect_uri"],
    ["client_credentials for a public client", { token_endpoint_auth_method: "none", grant_types: ["client_credentials"] }, "invalid_client_metadata"],
    ["a resource server that is not an absolute URI", { grant_types: ["client_credentials"], resource_server: "/api" }, "invalid_client_metadata"],
  ])("refuses %s, as registration does", async (_name, metadata, error) => {
    const t = await ready();
    const before = (await t.services.clients.list()).length;
    const [res, body] = await admin(t, "POST", "/clients", { client_name: "bad", ...metadata });
    expect(res.status).toBe(400);
    expect(body.error).toBe(error);
    expect((await t.services.clients.list()).length).toBe(before);
  });

  test("update validates the whole registration again; an id beginning with - is a path like any other", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const [ok, updated] = await admin(t, "PATCH", `/clients/${c.client.clientId}`, { client_name: "renamed", redirect_uris: ["https://app.example/new"] });
    expect(ok.status).toBe(200);
    expect(updated).toMatchObject({ client_name: "renamed", redirect_uris: ["https://app.example/new"] });
    expect((await t.services.clients.find(c.client.clientId))!.redirectUris).toEqual(["https://app.example/new"]);
    const [refused, body] = await admin(t, "PATCH", `/clients/${c.client.clientId}`, { redirect_uris: [] });
    expect(refused.status).toBe(400);
    expect(body.error).toBe("invalid_redirect_uri");
    expect((await admin(t, "PATCH", "/clients/-nosuch", { client_name: "x" }))[0].status).toBe(404);
  });

  test("delete revokes every session of the client before it goes: its tokens are dead at once", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const watcher = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
    const s = await mintClientSession(t, c);
    const family = await mintCodeSession(t, c);
    const [res, body] = await admin(t, "DELETE", `/clients/${c.client.clientId}`);
    expect(res.status).toBe(200);
    expect(body).toEqual({ sessions_revoked: 2 });
    expect(await liveAt(t, watcher, s.accessToken)).toBe(false);
    expect(await liveAt(t, watcher, family.accessToken)).toBe(false);
    expect((await post(t, "/oauth/token", { grant_type: "client_credentials" }, c.auth.headers))[0].status).toBe(401);
    expect((await admin(t, "GET", `/clients/${c.client.clientId}`))[0].status).toBe(404);
    expect((await admin(t, "DELETE", `/clients/${c.client.clientId}`))[0].status).toBe(404);
  });

  test("rotate-secret: the old secret is refused at once, tokens kept unless asked", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintClientSession(t, c);
    const [res, rotated] = await admin(t, "POST", `/clients/${c.client.clientId}/secret`, {});
    expect(res.status).toBe(200);
    expect(rotated).toMatchObject({ client_id: c.client.clientId, sessions_revoked: 0 });
    const mint = (secret: string) => post(t, "/oauth/token", { grant_type: "client_credentials" }, { authorization: basic(c.client.clientId, secret) });
    expect((await mint(c.secret!))[0].status).toBe(401);
    expect((await mint(rotated.client_secret))[0].status).toBe(200);
    const withNew = { ...c, secret: rotated.client_secret, auth: { form: {}, headers: { authorization: basic(c.client.clientId, rotated.client_secret) } } };
    expect(await liveAt(t, withNew, s.accessToken)).toBe(true);
    // With revoke_tokens the client's tokens die too.
    const [, again] = await admin(t, "POST", `/clients/${c.client.clientId}/secret`, { revoke_tokens: true });
    expect(again.sessions_revoked).toBeGreaterThanOrEqual(1);
    const latest = { ...c, auth: { form: {}, headers: { authorization: basic(c.client.clientId, again.client_secret) } } };
    expect(await liveAt(t, latest, s.accessToken)).toBe(false);
  });

  test("rotate-secret with a grace period: both secrets work until it ends", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, rotated] = await admin(t, "POST", `/clients/${c.client.clientId}/secret`, { grace_seconds: 600 });
    const mint = (secret: string) => post(t, "/oauth/token", { grant_type: "client_credentials" }, { authorization: basic(c.client.clientId, secret) });
    expect((await mint(c.secret!))[0].status).toBe(200);
    expect((await mint(rotated.client_secret))[0].status).toBe(200);
    expect((await admin(t, "GET", `/clients/${c.client.clientId}`))[1].secret_rotation_grace_until).not.toBeNull();
    // A public client has no secret to rotate.
    const pub = await createClient(t, "public");
    expect((await admin(t, "POST", `/clients/${pub.client.clientId}/secret`, {}))[1].error).toBe("invalid_request");
  });
});

// Five items of each list made one after another, then squeezed into one millisecond a microsecond
// apart (what a fast machine does now and then): a cursor that kept only the millisecond skipped
// the rest of it (CI saw it once).
type Lister = { path: string; make: (i: number) => Promise<string>; label: (item: any) => string };
const lists: [string, (t: TestApp) => Promise<Lister>][] = [
  ["clients", async (t) => ({
    path: "/clients?",
    make: async (i) => (await admin(t, "POST", "/clients", { client_name: `c${i}`, grant_types: ["client_credentials"] }))[1].client_name,
    label: (c) => c.client_name,
  })],
  ["users", async (t) => ({
    path: "/users?",
    make: async (i) => (await admin(t, "POST", "/users", { username: `u${i}`, password: TEST_PASSWORD }))[1].username,
    label: (u) => u.username,
  })],
  ["sessions", async (t) => {
    const c = await createClient(t, "confidential");
    return { path: `/sessions?client=${c.client.clientId}&`, make: async () => (await mintClientSession(t, c)).sessionId, label: (f) => f.family_id };
  }],
];

describe.each(backends)("admin API: paging [%s]", (backend) => {
  test.each(lists)("lists %s page by page, the newest first, each once, within one millisecond too", async (table, lister) => {
    const t = await createTestApp(backend);
    try {
      const { path, make, label } = await lister(t);
      const made: string[] = [];
      for (let i = 0; i < 5; i++) made.push(await make(i));
      await t.database.rows(sql`
        update ${sql.identifier(table)} x set created_at = '2026-01-01T00:00:00.000Z'::timestamptz + o.n * interval '1 microsecond'
          from (select id, row_number() over (order by created_at) as n from ${sql.identifier(table)}) o where x.id = o.id`);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const [res, page]: [Response, any] = await admin(t, "GET", `${path}limit=2${cursor ? `&cursor=${cursor}` : ""}`);
        expect(res.status).toBe(200);
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.items.map(label));
        cursor = page.next_cursor;
      } while (cursor);
      expect(seen).toEqual(made.toReversed());
      expect((await admin(t, "GET", `${path}cursor=junk`))[1].error).toBe("invalid_request");
    } finally {
      await t.close();
    }
  });
});

describe.each(backends)("admin API: users [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("create, get by username or id, list; a duplicate or a short password is refused", async () => {
    const t = await ready();
    const [res, user] = await admin(t, "POST", "/users", { username: `ada-${backend}`, password: "a long password" });
    expect(res.status).toBe(201);
    expect(user).toMatchObject({ username: `ada-${backend}`, disabled: false });
    expect(JSON.stringify(user)).not.toContain("a long password");
    expect((await admin(t, "GET", `/users/${user.username}`))[1].id).toBe(user.id);
    expect((await admin(t, "GET", `/users/${user.id}`))[1].username).toBe(user.username);
    expect((await admin(t, "GET", "/users"))[1].items.some((u: { id: string }) => u.id === user.id)).toBe(true);
    expect((await admin(t, "POST", "/users", { username: `ada-${backend}`, password: "a long password" }))[1].error).toBe("invalid_request");
    expect((await admin(t, "POST", "/users", { username: "bob", password: "short" }))[1].error).toBe("invalid_request");
    expect((await admin(t, "POST", "/users", { username: crypto.randomUUID(), password: "a long password" }))[1].error).toBe("invalid_request");
  });

  test("disable refuses sign-in with the generic failure and ends every session; enable lets the user back", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
    const username = `dora-${backend}`;
    const userId = await createUser(t, username);
    const agent = new Agent(t);
    await signIn(agent, username);
    const family = await mintCodeSession(t, c, userId);
    const [res, body] = await admin(t, "POST", `/users/${username}/disable`);
    expect(res.status).toBe(200);
    expect(body).toMatchObject({ disabled: true, sessions_revoked: 1, browser_sessions_ended: 1 });
    expect(await liveAt(t, c, family.accessToken)).toBe(false);
    expect((await agent.get("/account/sessions")).res.status).toBe(302);
    // The same answer as a wrong password: nothing tells that the account exists, or is disabled.
    const refused = await signIn(new Agent(t), username);
    const wrongPassword = await signIn(new Agent(t), username, "not the password");
    const errorOf = (text: string) => /<p[^>]*role="alert"[^>]*>([^<]*)</.exec(text)?.[1];
    expect([refused.res.status, errorOf(refused.text)]).toEqual([401, "Invalid username or password."]);
    expect([wrongPassword.res.status, errorOf(wrongPassword.text)]).toEqual([401, "Invalid username or password."]);
    expect(refused.text).not.toMatch(/disabled/i);
    expect((await admin(t, "POST", `/users/${username}/enable`))[1].disabled).toBe(false);
    expect((await signIn(new Agent(t), username)).res.status).toBe(303);
  });

  test("set-password: the old password stops working and the user's sessions end, unless keep_sessions", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
    const username = `pat-${backend}`;
    const userId = await createUser(t, username);
    const kept = await mintCodeSession(t, c, userId);
    const [, keptBody] = await admin(t, "PUT", `/users/${username}/password`, { password: "another long one", keep_sessions: true });
    expect(keptBody).toEqual({ sessions_revoked: 0, browser_sessions_ended: 0 });
    expect(await liveAt(t, c, kept.accessToken)).toBe(true);
    expect((await signIn(new Agent(t), username, TEST_PASSWORD)).res.status).toBe(401);
    expect((await signIn(new Agent(t), username, "another long one")).res.status).toBe(303);
    const [, ended] = await admin(t, "PUT", `/users/${username}/password`, { password: "a third long one" });
    expect(ended.sessions_revoked).toBe(1);
    expect(await liveAt(t, c, kept.accessToken)).toBe(false);
  });

  test("delete revokes the user's sessions and removes the user", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
    const userId = await createUser(t, `del-${backend}`);
    const family = await mintCodeSession(t, c, userId);
    const [res, body] = await admin(t, "DELETE", `/users/${userId}`);
    expect(res.status).toBe(200);
    expect(body.sessions_revoked).toBe(1);
    expect(await liveAt(t, c, family.accessToken)).toBe(false);
    expect((await admin(t, "GET", `/users/${userId}`))[0].status).toBe(404);
  });

  test("browser sessions are listed and ended one by one: a copied cookie stops working at once", async () => {
    const t = await ready();
    const username = `bea-${backend}`;
    await createUser(t, username);
    const laptop = new Agent(t);
    const phone = new Agent(t);
    await signIn(laptop, username);
    await signIn(phone, username);
    const [, list] = await admin(t, "GET", `/users/${username}/browser-sessions`);
    expect(list.items).toHaveLength(2);
    const copy = new Agent(t);
    copy.cookies.set("ta_session", phone.cookies.get("ta_session")!);
    expect((await copy.get("/account/sessions")).res.status).toBe(200);
    // The newest first: the phone's session.
    expect((await admin(t, "DELETE", `/browser-sessions/${list.items[0].id}`))[1]).toEqual({ ended: true });
    expect((await phone.get("/account/sessions")).res.status).toBe(302);
    expect((await copy.get("/account/sessions")).res.status).toBe(302);
    expect((await laptop.get("/account/sessions")).res.status).toBe(200);
    expect((await admin(t, "DELETE", `/browser-sessions/${list.items[0].id}`))[0].status).toBe(404);
  });
});

describe.each(backends)("admin API: sessions and keys [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("lists a user's families with status, client, created and last refresh; revokes one, then all", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const userId = await createUser(t, `sam-${backend}`);
    const first = await mintCodeSession(t, c, userId);
    await mintCodeSession(t, c, userId);
    expect((await refresh(t, c, first.refreshToken!))[0].status).toBe(200);
    const [, page] = await admin(t, "GET", `/sessions?user=sam-${backend}`);
    expect(page.items).toHaveLength(2);
    const refreshed = page.items.find((f: { family_id: string }) => f.family_id === first.grantId);
    expect(refreshed).toMatchObject({ client_id: c.client.clientId, subject: userId, status: "created" });
    expect(refreshed.last_refresh_at).not.toBeNull();
    expect((await admin(t, "DELETE", `/sessions/${refreshed.session_id}`))[1]).toEqual({ revoked: 1 });
    expect((await admin(t, "POST", "/sessions/revoke", { user: userId }))[1]).toEqual({ revoked: 1 });
    const [, after] = await admin(t, "GET", `/sessions?client=${c.client.clientId}`);
    expect(after.items.map((f: { status: string; revocation_reason: string }) => [f.status, f.revocation_reason])).toEqual([
      ["revoked", "revoked_by_operator"],
      ["revoked", "revoked_by_operator"],
    ]);
    expect((await admin(t, "GET", "/sessions"))[1].error).toBe("invalid_request");
    expect((await admin(t, "GET", "/sessions?user=nobody"))[0].status).toBe(404);
  });

  test("keys: the active key cannot be revoked; a retired one can, and leaves the JWKS with what it signed", async () => {
    const t = await createTestApp(backend);
    try {
      const c = await createClient(t, "confidential", { resourceServer: t.config.defaultAudience });
      const s = await mintClientSession(t, c);
      const [, keys] = await admin(t, "GET", "/keys");
      const active = keys.items[0];
      expect(active.status).toBe("active");
      const [refused, refusal] = await admin(t, "POST", `/keys/${active.kid}/revoke`);
      expect(refused.status).toBe(400);
      expect(refusal.error_description).toContain("rotate first");
      const [, rotated] = await admin(t, "POST", "/keys/rotate");
      expect(rotated.retired_kid).toBe(active.kid);
      const after = await mintClientSession(t, c);
      expect(await liveAt(t, c, s.accessToken)).toBe(true);
      const [, revoked] = await admin(t, "POST", `/keys/${active.kid}/revoke`);
      expect(revoked).toEqual({ kid: active.kid, sessions_revoked: 1 });
      const jwks = (await (await t.app.handle(new Request("http://localhost/.well-known/jwks.json"))).json()) as { keys: Array<{ kid: string }> };
      expect(jwks.keys.map((k) => k.kid)).toEqual([rotated.active_kid]);
      expect(await liveAt(t, c, s.accessToken)).toBe(false);
      expect(await liveAt(t, c, after.accessToken)).toBe(true);
      expect((await admin(t, "POST", `/keys/${active.kid}/revoke`))[0].status).toBe(404);
    } finally {
      await t.close();
    }
  });
});

describe.each(backends)("admin API: who may call [%s]", (backend) => {
  const off = useTestApp(backend);
  const on = useTestApp(backend, { TA_ADMIN_REMOTE: "true" });

  test("over HTTP it does not exist until TA_ADMIN_REMOTE is on", async () => {
    const t = await off();
    const [res, body] = await admin(t, "GET", "/users", undefined, "anything");
    expect(res.status).toBe(404);
    expect(body.error).toBe("not_found");
  });

  test("remote: 401 without a valid bearer token, 403 without ta:admin, 200 with it; before the body is read", async () => {
    const t = await on();
    const [none] = await admin(t, "POST", "/users", { username: 5 }, "");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toStartWith("Bearer");
    const [bad, badBody] = await admin(t, "POST", "/users", { username: 5 }, "not.a.token");
    expect([bad.status, badBody.error]).toEqual([401, "invalid_token"]);
    const plain = await createClient(t, "confidential");
    const weak = await mintClientSession(t, plain);
    const [forbidden, forbiddenBody] = await admin(t, "GET", "/users", undefined, weak.accessToken);
    expect([forbidden.status, forbiddenBody.error]).toEqual([403, "insufficient_scope"]);
    expect(forbidden.headers.get("www-authenticate")).toContain('scope="ta:admin"');
    // An admin client: made by the operator (registration refuses the scope).
    const [, registered] = await post(t, "/oauth/register", JSON.stringify({ grant_types: ["client_credentials"], scope: "ta:admin" }), { "content-type": "application/json" });
    expect(registered.error).toBe("invalid_client_metadata");
    const [, adminClient] = await admin(t, "POST", "/clients", { client_name: "ops", grant_types: ["client_credentials"], scope: "ta:admin" });
    const [tokenRes, token] = await post(t, "/oauth/token", { grant_type: "client_credentials", scope: "ta:admin" }, { authorization: basic(adminClient.client_id, adminClient.client_secret) });
    expect(tokenRes.status).toBe(200);
    const [ok] = await admin(t, "GET", "/users", undefined, token.access_token);
    expect(ok.status).toBe(200);
    // A revoked admin token is refused at once.
    await post(t, "/oauth/revoke", { token: token.access_token }, { authorization: basic(adminClient.client_id, adminClient.client_secret) });
    expect((await admin(t, "GET", "/users", undefined, token.access_token))[0].status).toBe(401);
    const line = t.logs.map((l) => JSON.parse(l)).find((l) => l.event === "admin.action" && l.actor === `client:${adminClient.client_id}`);
    expect(line).toMatchObject({ action: "users.list", target: null });
  });

  test("the last admin client cannot be deleted or lose its scope", async () => {
    const t = await on();
    const clients = await t.services.clients.list();
    for (const c of clients.filter((c) => c.scope.split(" ").includes("ta:admin"))) await t.services.stores.lifecycle.deleteClient(c.clientId);
    const [, only] = await admin(t, "POST", "/clients", { client_name: "only ops", grant_types: ["client_credentials"], scope: "ta:admin" });
    const [res, body] = await admin(t, "DELETE", `/clients/${only.client_id}`);
    expect(res.status).toBe(400);
    expect(body.error_description).toContain("last client with the ta:admin scope");
    expect((await admin(t, "PATCH", `/clients/${only.client_id}`, { scope: "read" }))[0].status).toBe(400);
    const [, second] = await admin(t, "POST", "/clients", { client_name: "more ops", grant_types: ["client_credentials"], scope: "ta:admin" });
    expect((await admin(t, "DELETE", `/clients/${only.client_id}`))[0].status).toBe(200);
    expect((await admin(t, "DELETE", `/clients/${second.client_id}`))[0].status).toBe(400);
  });

  test("bad input: unknown ids 404, malformed bodies 400 naming the field, every answer JSON and no-store", async () => {
    const t = await off();
    for (const [method, path] of [["GET", "/clients/nope"], ["GET", "/users/nope"], ["DELETE", "/sessions/nope"], ["POST", "/keys/nope/revoke"], ["DELETE", "/browser-sessions/nope"]] as const) {
      const [res, body] = await admin(t, method, path);
      expect([path, res.status, body.error]).toEqual([path, 404, "not_found"]);
      expect(res.headers.get("cache-control")).toBe("no-store");
    }
    const [res, body] = await admin(t, "POST", "/users", { username: "x" });
    expect([res.status, body]).toEqual([400, { error: "invalid_request", error_description: "invalid or missing parameter: password" }]);
    const [grace] = await admin(t, "POST", `/clients/${(await createClient(t, "confidential")).client.clientId}/secret`, { grace_seconds: -1 });
    expect(grace.status).toBe(400);
    // Nothing of a secret in the audit log.
    const [, created] = await admin(t, "POST", "/clients", { client_name: "audited", grant_types: ["client_credentials"] });
    const audit = t.logs.filter((l) => l.includes('"admin.action"'));
    expect(audit.some((l) => l.includes('"clients.create"'))).toBe(true);
    expect(audit.join("\n")).not.toContain(created.client_secret);
  });
});

describe.skipIf(!backends.includes("postgres"))("admin API across instances [postgres]", () => {
  test("a client changed and a key rotated at one instance take effect at the other at once, not after their cache or reload interval", async () => {
    const a = await createTestApp("postgres", { TA_CLIENT_CACHE_TTL: "3600", TA_KEY_RELOAD_INTERVAL: "3600" });
    const url = testDatabaseUrl(a.database)!;
    const b = await createTestApp("postgres", { TA_CLIENT_CACHE_TTL: "3600", TA_KEY_RELOAD_INTERVAL: "3600" }, {
      database: openPostgres(url, { poolSize: 2, connectTimeout: 5, statementTimeout: 10 }),
    });
    try {
      await b.services.invalidation.start();
      const c = await createClient(a, "confidential");
      const mintAt = (t: TestApp, secret: string) => post(t, "/oauth/token", { grant_type: "client_credentials" }, { authorization: basic(c.client.clientId, secret) });
      expect((await mintAt(b, c.secret!))[0].status).toBe(200); // b now caches the client for an hour
      const [, rotated] = await admin(a, "POST", `/clients/${c.client.clientId}/secret`, {});
      const eventually = async (check: () => Promise<boolean>) => {
        for (const began = performance.now(); !(await check()); await Bun.sleep(5)) {
          if (performance.now() - began > 5000) throw new Error("the other instance did not hear of the change");
        }
      };
      await eventually(async () => (await mintAt(b, c.secret!))[0].status === 401);
      expect((await mintAt(b, rotated.client_secret))[0].status).toBe(200);
      const [, key] = await admin(a, "POST", "/keys/rotate");
      const kidsAt = async (t: TestApp) =>
        ((await (await t.app.handle(new Request("http://localhost/.well-known/jwks.json"))).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
      await eventually(async () => (await kidsAt(b)).includes(key.active_kid));
      const after = await mintAt(b, rotated.client_secret);
      expect(decodeProtectedHeader(after[1].access_token).kid).toBe(key.active_kid);
    } finally {
      await b.services.invalidation.close();
      await b.close();
      await a.close();
    }
  }, 30_000);
});
