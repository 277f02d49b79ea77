// The sign-in flow in a real headless browser (Debian's chromium driven by playwright-core),
// with JavaScript turned off: authorize → login → consent → redirect with a code, then the
// account page's "Revoke access". Screenshots of the pages go to test-output/ for a person.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import type { BrowserContext, Page } from "playwright-core";
import { chromium } from "playwright-core";
import { authorizationGrants } from "../db/schema.ts";
import { hashAuthorizationCode as hashCode } from "../src/oauth/authorization-codes.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { createClient, createTestApp } from "./helpers/app.ts";
import { authorizeUrl, createUser, pkce } from "./helpers/agent.ts";

setDefaultTimeout(60_000);

const CHROMIUM = "/usr/bin/chromium";
const OUTPUT = join(import.meta.dir, "..", "test-output");
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`SKIP browser test: ${CHROMIUM} is absent (install Debian's chromium package)`);

describe.skipIf(!haveChromium)("sign-in flow in headless chromium", () => {
  let t: TestApp;
  let server: ReturnType<typeof Bun.serve>;
  let clientApp: ReturnType<typeof Bun.serve>;
  let context: BrowserContext;
  let userDataDir: string;
  let c: TestClient;
  let base: string;
  const cspViolations: string[] = [];

  beforeAll(async () => {
    // The issuer must be the address the browser uses, so the server starts before the app.
    let handle: (request: Request) => Response | Promise<Response> = () => new Response("starting", { status: 503 });
    server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (request) => handle(request) });
    base = `http://127.0.0.1:${server.port}`;
    t = await createTestApp("pglite", { TA_ISSUER: base });
    handle = (request) => t.app.handle(request);
    // The client: a native-style app listening on a loopback port of its choosing (RFC 8252 §7.3).
    clientApp = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => new Response("<!doctype html><title>Client</title><p>Back at the client", { headers: { "content-type": "text/html" } }),
    });
    c = await createClient(t, "public", {
      name: "Photo Printer",
      redirectUris: ["http://127.0.0.1/callback"],
      scope: "read write offline_access",
      metadata: { client_uri: "https://printer.example/" },
    });
    await createUser(t, "alice", "a long enough password");
    mkdirSync(OUTPUT, { recursive: true });
    userDataDir = mkdtempSync(join(tmpdir(), "ta-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      javaScriptEnabled: false, // the pages must work without JavaScript
      viewport: { width: 1024, height: 760 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    context.on("console", (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
    });
  });

  afterAll(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    clientApp?.stop(true);
    server?.stop(true);
    await t?.close();
  });

  async function shoot(page: Page, name: string) {
    await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
  }

  test("authorize → login → consent → redirect with code, then Revoke access on the account page", async () => {
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    const { challenge } = pkce();
    const redirectUri = `http://127.0.0.1:${clientApp.port}/callback`;
    const start = authorizeUrl(c, { redirect_uri: redirectUri, scope: "read write offline_access", state: "xyz", code_challenge: challenge });

    await page.goto(base + start);
    expect(new URL(page.url()).pathname).toBe("/oauth/login");
    await expect(page.title()).resolves.toBe("Sign in · TokenAuthority");
    // Focus order: username, password, then the button.
    await page.getByLabel("Username").focus();
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("password");
    await shoot(page, "login");

    await page.getByLabel("Username").fill("alice");
    await page.getByLabel("Password").fill("wrong password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").textContent()).resolves.toBe("Invalid username or password.");
    await shoot(page, "login-failed");

    await page.getByLabel("Password").fill("a long enough password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL((url) => url.pathname === "/oauth/authorize");
    await expect(page.getByRole("heading", { level: 1 }).textContent()).resolves.toBe("Authorize Photo Printer");
    await expect(page.getByText("Keep access while you are not using it").count()).resolves.toBe(1);
    await shoot(page, "consent");
    await page.setViewportSize({ width: 375, height: 740 });
    await shoot(page, "consent-mobile");
    await page.setViewportSize({ width: 1024, height: 760 });

    await page.getByRole("button", { name: "Approve" }).click();
    await page.waitForURL((url) => url.origin === new URL(redirectUri).origin);
    const callback = new URL(page.url());
    expect(callback.pathname).toBe("/callback");
    expect(callback.searchParams.get("state")).toBe("xyz");
    expect(callback.searchParams.get("iss")).toBe(base);
    const code = callback.searchParams.get("code")!;
    const [grant] = await t.database.db.select().from(authorizationGrants).where(eq(authorizationGrants.codeHash, hashCode(code)));
    expect(grant).toMatchObject({ codeChallenge: challenge, redirectUri, scope: "read write offline_access" });

    // Until the token endpoint lands, the session the code would produce is minted directly.
    const session = await t.services.sessions.mint({
      client: c.client,
      subject: grant!.userId!,
      scope: grant!.scope,
      audience: [t.config.defaultAudience],
      grantId: grant!.id,
      withRefreshToken: true,
    });
    expect((await t.services.verifier.verify(session.accessToken)).ok).toBe(true);

    await page.goto(`${base}/account/sessions`);
    await expect(page.getByRole("heading", { level: 2, name: "Photo Printer" }).count()).resolves.toBe(1);
    await shoot(page, "sessions");

    // Sign out, then sign in again: consent is remembered, so the login form leads straight
    // back to the client (the login page's CSP must allow that redirect chain).
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL((url) => url.pathname === "/oauth/login");
    await page.goto(base + start);
    await page.getByLabel("Username").fill("alice");
    await page.getByLabel("Password").fill("a long enough password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL((url) => url.origin === new URL(redirectUri).origin);
    expect(new URL(page.url()).searchParams.get("code")).toMatch(/^[A-Za-z0-9_-]{43}$/);

    await page.goto(`${base}/account/sessions`);
    await page.getByRole("button", { name: "Revoke access for Photo Printer" }).click();
    await page.waitForURL((url) => url.searchParams.has("revoked"));
    await expect(page.getByRole("status").textContent()).resolves.toBe("Access revoked: 1 session ended.");
    await shoot(page, "sessions-revoked");
    expect((await t.services.verifier.verify(session.accessToken)).ok).toBe(false);
    const refresh = await t.services.tokens.verify(session.refreshToken!);
    const rotated = await t.services.sessions.rotate({ refreshJti: refresh.claims.jti, client: c.client, scope: undefined, graceSeconds: 0 });
    expect(rotated.outcome).not.toBe("rotated");

    // Consent was withdrawn: authorizing again shows the consent page.
    await page.goto(base + start);
    expect(new URL(page.url()).pathname).toBe("/oauth/authorize");
    await expect(page.getByRole("button", { name: "Approve" }).count()).resolves.toBe(1);
    expect(cspViolations).toEqual([]);
  });
});
