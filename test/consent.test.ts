// Consent: the page, Approve (a stored one-time code) and Deny, CSRF, consent remembered and
// withdrawn from the account page (sessions really revoked), and the trusted-header mode.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { and, eq, sql } from "drizzle-orm";
import { authorizationGrants, consents } from "../db/schema.ts";
import { hashAuthorizationCode as hashCode } from "../src/oauth/authorization-codes.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, useTestApp, rotateSession } from "./helpers/app.ts";
import { Agent, authorizeUrl, createUser, csrfToken, hiddenFields, pkce, redirectParams, signIn } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";

setDefaultTimeout(30_000);

let counter = 0;
const uniqueName = (prefix: string) => `${prefix}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;

async function signedIn(t: TestApp): Promise<{ agent: Agent; userId: string }> {
  const username = uniqueName("user");
  const userId = await createUser(t, username);
  const agent = new Agent(t);
  await signIn(agent, username);
  return { agent, userId };
}

async function grantOf(t: TestApp, code: string) {
  const [grant] = await t.database.db.select().from(authorizationGrants).where(eq(authorizationGrants.codeHash, hashCode(code)));
  return grant;
}

/** Walks authorize → consent → Approve and returns the code. */
async function approveFlow(t: TestApp, agent: Agent, c: TestClient, overrides: Record<string, string> = {}) {
  const consent = await agent.get(authorizeUrl(c, overrides));
  expect(consent.res.status).toBe(200);
  const done = await agent.post("/oauth/consent", [...hiddenFields(consent.text, "/oauth/consent"), ["decision", "approve"]]);
  expect(done.res.status).toBe(303);
  return redirectParams(done.location).get("code")!;
}

describe.each(backends)("consent [%s]", (backend) => {
  const ready = useTestApp(backend, {
    TA_RESOURCES: JSON.stringify([{ resource: "https://api.example/", scopes: ["read", "write"] }]),
  });

  test("shows the client, its URI and logo, and the scopes with their descriptions", async () => {
    const t = await ready();
    const c = await createClient(t, "public", {
      name: "Photo <Printer>",
      metadata: { client_uri: "https://printer.example/", logo_uri: "https://cdn.printer.example/logo.png" },
    });
    const { agent } = await signedIn(t);
    const page = await agent.get(authorizeUrl(c, { scope: "read write" }, [["resource", "https://api.example/"]]));
    expect(page.res.status).toBe(200);
    expect(page.text).toContain("Authorize Photo &lt;Printer&gt;");
    expect(page.text).not.toContain("<Printer>");
    expect(page.text).toContain('href="https://printer.example/"');
    expect(page.text).toContain('<img src="https://cdn.printer.example/logo.png"');
    expect(page.text).toContain("Read your data");
    expect(page.text).toContain("Create, change and delete your data");
    expect(page.text).toContain("https://api.example/");
    expect(page.text).toContain('name="decision" value="approve"');
    expect(page.text).toContain('name="decision" value="deny"');
    const csp = page.res.headers.get("content-security-policy")!;
    // The form's redirect to the client must be allowed; the logo's host may serve images.
    expect(csp).toContain("form-action 'self' https://app.example;");
    expect(csp).toContain("img-src https://cdn.printer.example;");
  });

  test("Approve redirects with a one-time code stored with PKCE, redirect URI, scopes, resources and user", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const { challenge } = pkce();
    const consent = await agent.get(authorizeUrl(c, { scope: "write read", code_challenge: challenge }, [["resource", "https://api.example/"]]));
    const done = await agent.post("/oauth/consent", [...hiddenFields(consent.text, "/oauth/consent"), ["decision", "approve"]]);
    expect(done.res.status).toBe(303);
    const params = redirectParams(done.location);
    expect(done.location).toStartWith("https://app.example/callback?");
    expect(params.get("state")).toBe("st-123");
    expect(params.get("iss")).toBe(t.config.issuer);
    const code = params.get("code")!;
    // 256 random bits, then what it grants sealed (src/oauth/authorization-codes.ts): the
    // browser carrying it reads neither the user nor the scope.
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]+$/);
    const sealed = Buffer.from(code.split(".")[1]!, "base64url").toString("latin1");
    for (const secret of [userId, "write read", "https://api.example/"]) expect(sealed).not.toContain(secret);
    const grant = (await grantOf(t, code))!;
    expect(grant).toBeDefined();
    expect(grant.codeHash).not.toBe(code);
    expect(grant).toMatchObject({
      clientId: c.client.clientId,
      userId,
      codeChallenge: challenge,
      codeChallengeMethod: "S256",
      redirectUri: "https://app.example/callback",
      scope: "write read",
      resources: ["https://api.example/"],
      redeemedAt: null,
    });
    const lifetime = grant.expiresAt.getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(0);
    expect(lifetime).toBeLessThanOrEqual(t.config.authorizationCodeTtl * 1000 + 2000);
  });

  test("Deny redirects with access_denied, state and iss, and issues no code", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const consent = await agent.get(authorizeUrl(c));
    const done = await agent.post("/oauth/consent", [...hiddenFields(consent.text, "/oauth/consent"), ["decision", "deny"]]);
    expect(done.res.status).toBe(303);
    const params = redirectParams(done.location);
    expect(params.get("error")).toBe("access_denied");
    expect(params.get("state")).toBe("st-123");
    expect(params.get("iss")).toBe(t.config.issuer);
    expect(params.has("code")).toBe(false);
    expect(await t.database.db.select().from(authorizationGrants).where(eq(authorizationGrants.userId, userId))).toEqual([]);
    // Nothing is remembered: the next request asks again.
    expect((await agent.get(authorizeUrl(c))).res.status).toBe(200);
  });

  test.each([
    ["without a CSRF token", (fields: [string, string][]) => fields.filter(([n]) => n !== "csrf_token"), {}],
    ["with a forged CSRF token", (fields: [string, string][]) => fields.map(([n, v]): [string, string] => [n, n === "csrf_token" ? "f".repeat(43) : v]), {}],
    ["from another origin", (fields: [string, string][]) => fields, { origin: "https://evil.example" }],
  ])("refuses an Approve posted %s and issues no code", async (_name, tamper, headers) => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const consent = await agent.get(authorizeUrl(c));
    const done = await agent.post("/oauth/consent", [...tamper(hiddenFields(consent.text, "/oauth/consent")), ["decision", "approve"]], headers);
    expect(done.res.status).toBe(403);
    expect(done.location).toBeNull();
    expect(await t.database.db.select().from(authorizationGrants).where(eq(authorizationGrants.userId, userId))).toEqual([]);
    expect(await t.database.db.select().from(consents).where(eq(consents.userId, userId))).toEqual([]);
  });

  test("a consent post without a decision issues nothing", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const consent = await agent.get(authorizeUrl(c));
    const done = await agent.post("/oauth/consent", hiddenFields(consent.text, "/oauth/consent"));
    expect(done.res.status).toBe(400);
    expect(done.location).toBeNull();
    expect(await t.database.db.select().from(authorizationGrants).where(eq(authorizationGrants.userId, userId))).toEqual([]);
  });

  test("validates the consent form again: a scope added to it is refused", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const consent = await agent.get(authorizeUrl(c));
    const fields = hiddenFields(consent.text, "/oauth/consent").map(([n, v]): [string, string] => [n, n === "scope" ? "read admin" : v]);
    const done = await agent.post("/oauth/consent", [...fields, ["decision", "approve"]]);
    expect(redirectParams(done.location).get("error")).toBe("invalid_scope");
    expect(await t.database.db.select().from(authorizationGrants).where(eq(authorizationGrants.userId, userId))).toEqual([]);
  });

  test("a consent post whose redirect URI was swapped is shown, not redirected", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent } = await signedIn(t);
    const consent = await agent.get(authorizeUrl(c));
    const fields = hiddenFields(consent.text, "/oauth/consent").map(([n, v]): [string, string] => [
      n,
      n === "redirect_uri" ? "https://evil.example/cb" : v,
    ]);
    const done = await agent.post("/oauth/consent", [...fields, ["decision", "approve"]]);
    expect(done.res.status).toBe(400);
    expect(done.location).toBeNull();
  });

  test("a consent post from a signed-out browser goes to the login page", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const agent = new Agent(t);
    const login = await agent.get("/oauth/login"); // gives the browser its CSRF cookie
    const fields: [string, string][] = [...new URL(authorizeUrl(c), "http://x").searchParams];
    const done = await agent.post("/oauth/consent", [...fields, ["csrf_token", hiddenFields(login.text, "/oauth/login")[0]![1]], ["decision", "approve"]]);
    expect(done.res.status).toBe(303);
    expect(done.location).toStartWith("/oauth/login?return_to=%2Foauth%2Fauthorize");
  });

  test("remembers consent: a repeat request for covered scopes skips the page, a wider one asks again", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const first = await approveFlow(t, agent, c, { scope: "read" });
    const again = await agent.get(authorizeUrl(c, { scope: "read", state: "second" }));
    expect(again.res.status).toBe(302);
    const params = redirectParams(again.location);
    expect(params.get("state")).toBe("second");
    expect(params.get("iss")).toBe(t.config.issuer);
    const code = params.get("code")!;
    expect(code).not.toBe(first);
    expect((await grantOf(t, code))!.userId).toBe(userId);
    // A wider request shows the page again; approving it remembers the union.
    expect((await agent.get(authorizeUrl(c, { scope: "read write" }))).res.status).toBe(200);
    await approveFlow(t, agent, c, { scope: "write" });
    const [row] = await t.database.db.select().from(consents).where(and(eq(consents.userId, userId), eq(consents.clientId, c.client.clientId)));
    expect(row!.scope.split(" ").sort()).toEqual(["read", "write"]);
    expect((await agent.get(authorizeUrl(c, { scope: "read write" }))).res.status).toBe(302);
  });

  test("consent is per user: another user is asked", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const first = await signedIn(t);
    await approveFlow(t, first.agent, c);
    const second = await signedIn(t);
    expect((await second.agent.get(authorizeUrl(c))).res.status).toBe(200);
  });
});

describe.each(backends)("account page [%s]", (backend) => {
  const ready = useTestApp(backend);

  async function sessionFor(t: TestApp, c: TestClient, code: string, userId: string) {
    const grant = (await grantOf(t, code))!;
    return t.services.sessions.mint({
      client: c.client,
      subject: userId,
      scope: grant.scope,
      audience: [t.config.defaultAudience],
      grantId: grant.id,
      withRefreshToken: true,
    });
  }

  test("sends a signed-out browser to the login page", async () => {
    const t = await ready();
    const page = await new Agent(t).get("/account/sessions");
    expect(page.res.status).toBe(302);
    expect(page.location).toBe("/oauth/login?return_to=%2Faccount%2Fsessions");
  });

  test("lists the authorized clients with their scopes, when, and live sessions", async () => {
    const t = await ready();
    const c = await createClient(t, "public", { name: "Calendar Sync", metadata: { client_uri: "https://calendar.example/" } });
    const { agent, userId } = await signedIn(t);
    const code = await approveFlow(t, agent, c, { scope: "read write" });
    await sessionFor(t, c, code, userId);
    const page = await agent.get("/account/sessions");
    expect(page.res.status).toBe(200);
    expect(page.text).toContain("<h2>Calendar Sync</h2>");
    expect(page.text).toContain("https://calendar.example/");
    expect(page.text).toContain("<dd>read, write</dd>");
    expect(page.text).toContain("<dt>Active sessions</dt><dd>1</dd>");
    expect(page.text).toMatch(/<time datetime="\d{4}-/);
    expect(hiddenFields(page.text, "/account/sessions/revoke")).toContainEqual(["client_id", c.client.clientId]);
  });

  test("Revoke access kills every live session of the user for that client and withdraws consent", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const other = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const a = await sessionFor(t, c, await approveFlow(t, agent, c), userId);
    // Consent is remembered now: the second code comes without the page.
    const b = await sessionFor(t, c, redirectParams((await agent.get(authorizeUrl(c))).location).get("code")!, userId);
    const pendingCode = (await agent.get(authorizeUrl(c))).location!; // remembered: a code not yet redeemed
    const keep = await sessionFor(t, other, await approveFlow(t, agent, other), userId);
    const neighbour = await signedIn(t);
    const theirs = await sessionFor(t, c, await approveFlow(t, neighbour.agent, c), neighbour.userId);

    const page = await agent.get("/account/sessions");
    expect(page.text).toContain(`name="client_id" value="${other.client.clientId}"`);
    const done = await agent.post("/account/sessions/revoke", { csrf_token: csrfToken(page.text), client_id: c.client.clientId });
    expect(done.res.status).toBe(303);
    expect(done.location).toBe("/account/sessions?revoked=2");

    for (const session of [a, b]) {
      expect((await t.services.pipeline.verify(session.accessToken)).ok).toBe(false);
      const presented = session.refreshToken!;
      const rotated = await rotateSession(t, c.client, presented);
      expect(rotated.outcome).not.toBe("rotated");
    }
    // The code issued before the revocation can no longer be redeemed.
    const pending = (await grantOf(t, redirectParams(pendingCode).get("code")!))!;
    expect(pending.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    // Other clients of the user, and other users of the client, are untouched.
    expect((await t.services.pipeline.verify(keep.accessToken)).ok).toBe(true);
    expect((await t.services.pipeline.verify(theirs.accessToken)).ok).toBe(true);
    // Consent is withdrawn: the next authorization asks again, and the page no longer lists it.
    expect((await agent.get(authorizeUrl(c))).res.status).toBe(200);
    const after = await agent.get(done.location!);
    expect(after.text).toContain("Access revoked: 2 sessions ended.");
    expect(after.text).not.toContain(`name="client_id" value="${c.client.clientId}"`);
    expect(after.text).toContain(`name="client_id" value="${other.client.clientId}"`);
  });

  test("refuses Revoke access without a valid CSRF token and revokes nothing", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const { agent, userId } = await signedIn(t);
    const session = await sessionFor(t, c, await approveFlow(t, agent, c), userId);
    const done = await agent.post("/account/sessions/revoke", { client_id: c.client.clientId, csrf_token: "forged" });
    expect(done.res.status).toBe(403);
    expect((await t.services.pipeline.verify(session.accessToken)).ok).toBe(true);
    expect((await agent.get(authorizeUrl(c))).res.status).toBe(302); // consent still remembered
  });
});

describe.each(backends)("trusted upstream header [%s]", (backend) => {
  const ready = useTestApp(backend, { TA_TRUSTED_USER_HEADER: "X-Forwarded-User" });

  test("refuses a request the proxy did not identify", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const page = await new Agent(t).get(authorizeUrl(c));
    expect(page.res.status).toBe(403);
    expect(page.location).toBeNull();
    expect(page.text).toContain("x-forwarded-user");
  });

  test("takes the user from the header, without a login page, through consent to a code", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const username = uniqueName("proxied");
    const agent = new Agent(t, { "x-forwarded-user": username });
    const consent = await agent.get(authorizeUrl(c));
    expect(consent.res.status).toBe(200);
    expect(consent.text).toContain(`your account <strong>${username}</strong>`);
    expect(consent.text).not.toContain("/oauth/logout"); // the proxy owns signing out
    const code = await approveFlow(t, agent, c);
    const user = await t.database.rows<{ id: string }>(sql`select id from users where username = ${username}`);
    expect((await grantOf(t, code))!.userId).toBe(user[0]!.id);
    expect((await agent.get("/account/sessions")).res.status).toBe(200);
  });

  test("ignores session cookies and disables the login form", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const username = uniqueName("local");
    await createUser(t, username);
    const agent = new Agent(t);
    expect((await agent.get("/oauth/login")).res.status).toBe(404);
    expect((await agent.post("/oauth/login", { username, password: "x" })).res.status).toBe(404);
    expect((await agent.get(authorizeUrl(c))).res.status).toBe(403);
  });

  test("a header naming another user does not reuse the first user's consent", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const first = new Agent(t, { "x-forwarded-user": uniqueName("p1") });
    await approveFlow(t, first, c);
    expect((await first.get(authorizeUrl(c))).res.status).toBe(302);
    expect((await new Agent(t, { "x-forwarded-user": uniqueName("p2") }).get(authorizeUrl(c))).res.status).toBe(200);
  });
});
