// Built-in accounts: the login form, its CSRF protection, the session cookie, no user
// enumeration, throttling per username and per IP, no open redirect, logout.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { LOGIN_FAILURE_LIMIT, LoginThrottle } from "../src/oauth/login-throttle.ts";
import type { TestApp } from "./helpers/app.ts";
import { createClient, createTestApp, useTestApp } from "./helpers/app.ts";
import { Agent, authorizeUrl, createUser, csrfToken, hiddenFields, signIn, TEST_PASSWORD } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";

setDefaultTimeout(30_000);

let counter = 0;
const uniqueName = (prefix: string) => `${prefix}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;

async function loginForm(agent: Agent, returnTo = "/account/sessions") {
  const page = await agent.get(`/oauth/login?return_to=${encodeURIComponent(returnTo)}`);
  return Object.fromEntries(hiddenFields(page.text, "/oauth/login"));
}

describe.each(backends)("login [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("renders an accessible form with a CSRF token and strict page headers", async () => {
    const t = await ready();
    const agent = new Agent(t);
    const page = await agent.get("/oauth/login");
    expect(page.res.status).toBe(200);
    expect(page.text).toContain('<label for="username">');
    expect(page.text).toContain('<label for="password">');
    expect(page.text).toContain('autocomplete="current-password"');
    expect(page.text).not.toContain("<script");
    expect(page.text).not.toMatch(/ style=/);
    const csp = page.res.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("unsafe-inline");
    expect(page.res.headers.get("x-frame-options")).toBe("DENY");
    expect(page.res.headers.get("cache-control")).toBe("no-store");
    const cookie = page.res.headers.getSetCookie().find((c) => c.startsWith("ta_csrf="))!;
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Lax");
    expect(csrfToken(page.text)).toBe(agent.cookies.get("ta_csrf")!);
  });

  test("signs in with a signed HttpOnly SameSite=Lax session cookie and goes back to return_to", async () => {
    const t = await ready();
    const username = uniqueName("alice");
    await createUser(t, username);
    const agent = new Agent(t);
    const c = await createClient(t, "public");
    const returnTo = authorizeUrl(c);
    const page = await signIn(agent, username, TEST_PASSWORD, returnTo);
    expect(page.res.status).toBe(303);
    expect(page.location).toBe(returnTo);
    const cookie = page.res.headers.getSetCookie().find((c) => c.startsWith("ta_session="))!;
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Lax");
    expect(cookie).not.toContain("Secure"); // the issuer is http here
    // The cookie really signs the user in: the account page opens.
    expect((await agent.get("/account/sessions")).res.status).toBe(200);
  });

  test("answers a wrong password and an unknown user with the same generic failure", async () => {
    const t = await ready();
    const username = uniqueName("bob");
    await createUser(t, username);
    const wrongPassword = await signIn(new Agent(t), username, "wrong password");
    const unknownUser = await signIn(new Agent(t), uniqueName("nobody"), "wrong password");
    for (const page of [wrongPassword, unknownUser]) {
      expect(page.res.status).toBe(401);
      expect(page.text).toContain("Invalid username or password.");
      expect(page.res.headers.getSetCookie().some((c) => c.includes("ta_session"))).toBe(false);
    }
    expect(wrongPassword.text.replace(/value="[^"]*"/g, "")).toBe(unknownUser.text.replace(/value="[^"]*"/g, ""));
  });

  test.each([
    ["no token", (form: Record<string, string>) => ({ ...form, csrf_token: "" }), {}],
    ["a token that is not the cookie's", (form: Record<string, string>) => ({ ...form, csrf_token: "x".repeat(43) }), {}],
    ["a cross-site Origin", (form: Record<string, string>) => form, { origin: "https://evil.example" }],
    ["Sec-Fetch-Site: cross-site", (form: Record<string, string>) => form, { "sec-fetch-site": "cross-site" }],
  ])("refuses a login post with %s (CSRF)", async (_name, tamper, headers) => {
    const t = await ready();
    const username = uniqueName("carol");
    await createUser(t, username);
    const agent = new Agent(t);
    const form = tamper(await loginForm(agent));
    const page = await agent.post("/oauth/login", { ...form, username, password: TEST_PASSWORD }, headers);
    expect(page.res.status).toBe(403);
    expect(agent.cookies.has("ta_session")).toBe(false);
  });

  test("refuses a login post from a browser without the CSRF cookie", async () => {
    const t = await ready();
    const username = uniqueName("dave");
    await createUser(t, username);
    const form = await loginForm(new Agent(t));
    const page = await new Agent(t).post("/oauth/login", { ...form, username, password: TEST_PASSWORD });
    expect(page.res.status).toBe(403);
  });

  test.each([
    ["an absolute URL", "https://evil.example/steal"],
    ["a protocol-relative URL", "//evil.example/steal"],
    ["a backslash trick", "/\\evil.example/steal"],
    ["another page of this server", "/oauth/revoke"],
  ])("never redirects to %s after signing in (no open redirect)", async (_name, returnTo) => {
    const t = await ready();
    const username = uniqueName("erin");
    await createUser(t, username);
    const agent = new Agent(t);
    const form = await loginForm(agent);
    const page = await agent.post("/oauth/login", { ...form, return_to: returnTo, username, password: TEST_PASSWORD });
    expect(page.res.status).toBe(303);
    expect(page.location).toBe("/account/sessions");
  });

  test(`locks a username after ${LOGIN_FAILURE_LIMIT} consecutive failures with 429 and Retry-After`, async () => {
    const t = await ready();
    const username = uniqueName("frank");
    await createUser(t, username);
    const agent = new Agent(t);
    const form = await loginForm(agent);
    for (let i = 0; i < LOGIN_FAILURE_LIMIT; i++) {
      const page = await agent.post("/oauth/login", { ...form, username, password: `wrong ${i}` });
      expect(page.res.status).toBe(401);
    }
    // Even the right password is refused now, without a session.
    const locked = await agent.post("/oauth/login", { ...form, username, password: TEST_PASSWORD });
    expect(locked.res.status).toBe(429);
    expect(Number(locked.res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(agent.cookies.has("ta_session")).toBe(false);
    // The lock is per username: another user signs in normally.
    const other = uniqueName("grace");
    await createUser(t, other);
    expect((await agent.post("/oauth/login", { ...form, username: other, password: TEST_PASSWORD })).res.status).toBe(303);
  });

  test("a success resets the count of consecutive failures", async () => {
    const t = await ready();
    const username = uniqueName("heidi");
    await createUser(t, username);
    const agent = new Agent(t);
    const form = await loginForm(agent);
    for (let i = 0; i < LOGIN_FAILURE_LIMIT - 1; i++) await agent.post("/oauth/login", { ...form, username, password: "wrong" });
    expect((await agent.post("/oauth/login", { ...form, username, password: TEST_PASSWORD })).res.status).toBe(303);
    for (let i = 0; i < LOGIN_FAILURE_LIMIT - 1; i++) {
      expect((await agent.post("/oauth/login", { ...form, username, password: "wrong" })).res.status).toBe(401);
    }
  });

  test("logout clears the session; without a CSRF token it is refused", async () => {
    const t = await ready();
    const username = uniqueName("ivan");
    await createUser(t, username);
    const agent = new Agent(t);
    await signIn(agent, username);
    const account = await agent.get("/account/sessions");
    expect(account.res.status).toBe(200);
    expect((await agent.post("/oauth/logout", { csrf_token: "forged" })).res.status).toBe(403);
    expect((await agent.get("/account/sessions")).res.status).toBe(200);
    const out = await agent.post("/oauth/logout", Object.fromEntries(hiddenFields(account.text, "/oauth/logout")));
    expect(out.res.status).toBe(303);
    expect(out.location).toStartWith("/oauth/login");
    expect(agent.cookies.has("ta_session")).toBe(false);
    const after = await agent.get("/account/sessions");
    expect(after.res.status).toBe(302);
    expect(after.location).toStartWith("/oauth/login");
  });

  test("a tampered session cookie signs nobody in", async () => {
    const t = await ready();
    const username = uniqueName("judy");
    await createUser(t, username);
    const agent = new Agent(t);
    await signIn(agent, username);
    const value = agent.cookies.get("ta_session")!;
    expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/); // random: it names a stored session, it holds no claim
    agent.cookies.set("ta_session", `${value.slice(0, -1)}${value.endsWith("A") ? "B" : "A"}`);
    expect((await agent.get("/account/sessions")).res.status).toBe(302);
    // An access token of this server is not a session cookie either.
    agent.cookies.set("ta_session", "eyJhbGciOiJub25lIn0.e30.");
    expect((await agent.get("/account/sessions")).res.status).toBe(302);
  });

  test("serves the stylesheet the pages link", async () => {
    const t = await ready();
    const page = await new Agent(t).get("/oauth/login");
    const href = /<link rel="stylesheet" href="([^"]+)">/.exec(page.text)![1]!;
    const css = await new Agent(t).get(href);
    expect(css.res.status).toBe(200);
    expect(css.res.headers.get("content-type")).toStartWith("text/css");
    expect(css.text).toContain("prefers-color-scheme");
  });
});

describe("login over https", () => {
  test("the session and CSRF cookies are Secure and __Host- prefixed when the issuer is https", async () => {
    const t = await createTestApp("pglite", { TA_ISSUER: "https://auth.example" });
    try {
      await createUser(t, "secure-user");
      const agent = new Agent(t);
      const page = await agent.get("https://auth.example/oauth/login");
      const form = Object.fromEntries(hiddenFields(page.text, "/oauth/login"));
      const res = await agent.post("https://auth.example/oauth/login", { ...form, username: "secure-user", password: TEST_PASSWORD });
      expect(res.res.status).toBe(303);
      const cookies = [...page.res.headers.getSetCookie(), ...res.res.headers.getSetCookie()];
      expect(cookies.map((c) => c.split("=")[0]).sort()).toEqual(["__Host-ta_csrf", "__Host-ta_session"]);
      for (const cookie of cookies) expect(cookie).toMatch(/; Path=\/; HttpOnly; SameSite=Lax; Secure/);
    } finally {
      await t.close();
    }
  });
});

describe("login throttling per IP", () => {
  let t: TestApp;
  test(`locks an IP after ${LOGIN_FAILURE_LIMIT} consecutive failures, whatever the usernames`, async () => {
    t = await createTestApp("pglite");
    t.app.listen({ port: 0, hostname: "127.0.0.1" });
    try {
      const base = `http://127.0.0.1:${t.app.server!.port}`;
      const agent = new Agent(t);
      const page = await agent.get("/oauth/login");
      const form: Record<string, string> = { ...Object.fromEntries(hiddenFields(page.text, "/oauth/login")), password: "wrong" };
      const post = (username: string) =>
        fetch(`${base}/oauth/login`, {
          method: "POST",
          redirect: "manual",
          headers: { "content-type": "application/x-www-form-urlencoded", cookie: `ta_csrf=${form.csrf_token}` },
          body: new URLSearchParams({ ...form, username }),
        });
      for (let i = 0; i < LOGIN_FAILURE_LIMIT; i++) expect((await post(`spray-${i}`)).status).toBe(401);
      const locked = await post("spray-fresh");
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      await t.app.stop();
      await t.close();
    }
  });
});

describe("login throttling per IP behind a proxy", () => {
  const ready = useTestApp("pglite", { TA_CLIENT_IP_HEADER: "X-Forwarded-For" });
  test("takes the client IP from the last X-Forwarded-For entry when configured", async () => {
    const t = await ready();
    const agent = new Agent(t);
    const form = await loginForm(agent);
    // The client may prepend anything; only the entry the proxy appended counts.
    const from = (ip: string) => ({ "x-forwarded-for": `${Math.random()}, ${ip}` });
    for (let i = 0; i < LOGIN_FAILURE_LIMIT; i++) {
      expect((await agent.post("/oauth/login", { ...form, username: `p-${i}`, password: "x" }, from("198.51.100.7"))).res.status).toBe(401);
    }
    expect((await agent.post("/oauth/login", { ...form, username: "p-new", password: "x" }, from("198.51.100.7"))).res.status).toBe(429);
    expect((await agent.post("/oauth/login", { ...form, username: "p-new", password: "x" }, from("198.51.100.8"))).res.status).toBe(401);
  });
});

describe("LoginThrottle", () => {
  test("unlocks after the lock and doubles the next lock", () => {
    let now = 1_000_000;
    const throttle = new LoginThrottle(() => now);
    const keys = ["user:x"];
    for (let i = 0; i < LOGIN_FAILURE_LIMIT - 1; i++) throttle.fail(keys);
    expect(throttle.retryAfter(keys)).toBe(0);
    throttle.fail(keys);
    const first = throttle.retryAfter(keys);
    expect(first).toBe(60);
    now += first * 1000;
    expect(throttle.retryAfter(keys)).toBe(0);
    for (let i = 0; i < LOGIN_FAILURE_LIMIT; i++) throttle.fail(keys);
    expect(throttle.retryAfter(keys)).toBe(120);
    throttle.succeed(keys);
    expect(throttle.retryAfter(keys)).toBe(0);
  });
});
