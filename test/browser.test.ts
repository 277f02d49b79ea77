// The whole sign-in flow against the compiled executable (copied alone into an empty directory,
// embedded PGlite), in a real headless browser: Debian's chromium driven by playwright-core,
// JavaScript turned off. authorize → login → consent → redirect with a code → token exchange
// with the PKCE verifier → refresh (rotation) → "Revoke access" on the account page → every
// refresh token refused and the access tokens dead. Screenshots go to test-output/.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { chromium } from "playwright-core";
import { openPglite } from "../db/client.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/log.ts";
import { createServices } from "../src/services.ts";
import { pkce } from "./helpers/agent.ts";
import type { ServerProcess } from "./helpers/binary.ts";
import { buildBinary, emptyDirWithBinary, freePort, runCli, startServer } from "./helpers/binary.ts";

setDefaultTimeout(60_000);

const CHROMIUM = "/usr/bin/chromium";
const OUTPUT = join(import.meta.dir, "..", "test-output");
const PASSWORD = "a long enough password";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`SKIP browser test: ${CHROMIUM} is absent (install Debian's chromium package)`);

describe.skipIf(!haveChromium)("sign-in flow in headless chromium against the executable", () => {
  let dir = "";
  let base = "";
  let server: ServerProcess | undefined;
  let clientApp: ReturnType<typeof Bun.serve>;
  /** Every request the client's redirect URI (/callback) received. */
  const callbacks: URL[] = [];
  let clientId = "";
  let context: BrowserContext;
  let userDataDir = "";
  const cspViolations: string[] = [];

  beforeAll(async () => {
    await buildBinary();
    dir = emptyDirWithBinary().dir;
    // The client: a native-style app listening on a loopback port of its choosing (RFC 8252 §7.3).
    clientApp = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(request) {
        const url = new URL(request.url);
        if (url.pathname !== "/callback") return new Response("not found", { status: 404 }); // favicon.ico
        callbacks.push(url);
        return new Response("<!doctype html><title>Client</title><p>Back at the client", { headers: { "content-type": "text/html" } });
      },
    });
    // With PGlite the CLI cannot open the data directory while the server holds it: set up first.
    const created = await runCli(dir, [
      "clients", "create", "--name", "Photo Printer", "--public",
      "--redirect-uri", "http://127.0.0.1/callback",
      "--grant-type", "authorization_code", "--grant-type", "refresh_token",
      "--scope", "read write offline_access",
    ]);
    expect(created.code).toBe(0);
    clientId = JSON.parse(created.stdout).client_id;
    const user = await runCli(dir, ["users", "create", "alice", "--password-stdin"], {}, `${PASSWORD}\n`);
    expect(user.code).toBe(0);
    // The issuer is the address the browser uses (CSRF checks Origin against it).
    const port = freePort();
    base = `http://127.0.0.1:${port}`;
    server = await startServer(dir, { TA_ISSUER: base }, ["--port", String(port)]);

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
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    clientApp?.stop(true);
    if (server && server.proc.exitCode === null) await server.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function shoot(page: Page, name: string) {
    await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
  }

  async function token(form: Record<string, string>): Promise<[number, any]> {
    const res = await fetch(`${base}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: clientId, ...form }),
    });
    return [res.status, await res.json()];
  }

  /** Waits for the browser to land on the client and returns what the client received. */
  async function callbackOf(page: Page): Promise<URLSearchParams> {
    await page.waitForURL((url) => url.origin === `http://127.0.0.1:${clientApp.port}`);
    const received = callbacks.at(-1)!;
    expect(received.href).toBe(page.url());
    return received.searchParams;
  }

  test("authorize → login → consent → code → tokens → refresh → Revoke access → tokens refused", async () => {
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const redirectUri = `http://127.0.0.1:${clientApp.port}/callback`;
    const authorize = (challenge: string) =>
      `${base}/oauth/authorize?${new URLSearchParams({
        response_type: "code",
        client_id: clientId,
        redirect_uri: redirectUri,
        scope: "read write offline_access",
        state: "xyz",
        code_challenge: challenge,
        code_challenge_method: "S256",
      })}`;
    const first = pkce();

    await page.goto(authorize(first.challenge));
    expect(new URL(page.url()).pathname).toBe("/oauth/login");
    await expect(page.title()).resolves.toBe("Sign in · TokenAuthority");
    // Focus order: username, password, then the button.
    await page.getByLabel("Username").focus();
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("password");
    await shoot(page, "login");

    await page.getByLabel("Username").fill("alice");
    await page.getByLabel("Password").fill("wrong password");
    const [failed] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/oauth/login"),
      page.getByRole("button", { name: "Sign in" }).click(),
    ]);
    expect(failed.status(), `failed sign-in answered ${failed.status()}: ${(await failed.text()).slice(0, 300)}`).toBe(401);
    await expect(page.getByRole("alert").textContent()).resolves.toBe("Invalid username or password.");
    await shoot(page, "login-failed");

    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL((url) => url.pathname === "/oauth/authorize");
    await expect(page.getByRole("heading", { level: 1 }).textContent()).resolves.toBe("Authorize Photo Printer");
    await expect(page.getByText("Keep access while you are not using it").count()).resolves.toBe(1);
    await shoot(page, "consent");
    await page.setViewportSize({ width: 375, height: 740 });
    await shoot(page, "consent-mobile");
    await page.setViewportSize({ width: 1024, height: 760 });

    await page.getByRole("button", { name: "Approve" }).click();
    const callback = await callbackOf(page);
    expect(callback.get("state")).toBe("xyz");
    expect(callback.get("iss")).toBe(base);
    const code = callback.get("code")!;
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]+$/);

    // The client redeems the code with its PKCE verifier (a wrong verifier is refused first).
    const [wrongStatus, wrongBody] = await token({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: pkce().verifier });
    expect([wrongStatus, wrongBody.error]).toEqual([400, "invalid_grant"]);
    const [issuedStatus, issued] = await token({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: first.verifier });
    expect(issuedStatus).toBe(200);
    expect(issued).toMatchObject({ token_type: "Bearer", scope: "read write offline_access" });
    expect(typeof issued.refresh_token).toBe("string");

    // Refresh rotates: a new refresh token, and the old one is retired.
    const [rotatedStatus, rotated] = await token({ grant_type: "refresh_token", refresh_token: issued.refresh_token });
    expect(rotatedStatus).toBe(200);
    expect(rotated.refresh_token).not.toBe(issued.refresh_token);
    expect(rotated.access_token).not.toBe(issued.access_token);

    await page.goto(`${base}/account/sessions`);
    await expect(page.getByRole("heading", { level: 2, name: "Photo Printer" }).count()).resolves.toBe(1);
    await shoot(page, "sessions");

    // Sign out, then sign in again: consent is remembered, so the login form leads straight
    // back to the client with a second code (the login page's CSP must allow that redirect).
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await page.waitForURL((url) => url.pathname === "/oauth/login");
    const second = pkce();
    await page.goto(authorize(second.challenge));
    await page.getByLabel("Username").fill("alice");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    const pendingCode = (await callbackOf(page)).get("code")!;
    expect(pendingCode).toMatch(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]+$/);
    expect(pendingCode).not.toBe(code);

    await page.goto(`${base}/account/sessions`);
    await page.getByRole("button", { name: "Revoke access for Photo Printer" }).click();
    await page.waitForURL((url) => url.searchParams.has("revoked"));
    await expect(page.getByRole("status").textContent()).resolves.toBe("Access revoked: 1 session ended.");
    await shoot(page, "sessions-revoked");

    // Every refresh token of the family is refused: the latest, and the one it replaced.
    for (const refreshToken of [rotated.refresh_token, issued.refresh_token]) {
      const [status, body] = await token({ grant_type: "refresh_token", refresh_token: refreshToken });
      expect([status, body.error]).toEqual([400, "invalid_grant"]);
    }
    // The code issued before the revocation, not yet redeemed, is dead too.
    const [pendingStatus, pendingBody] = await token({ grant_type: "authorization_code", code: pendingCode, redirect_uri: redirectUri, code_verifier: second.verifier });
    expect([pendingStatus, pendingBody.error]).toEqual([400, "invalid_grant"]);

    // Consent was withdrawn: authorizing again shows the consent page.
    await page.goto(authorize(pkce().challenge));
    expect(new URL(page.url()).pathname).toBe("/oauth/authorize");
    await expect(page.getByRole("button", { name: "Approve" }).count()).resolves.toBe(1);
    expect(cspViolations).toEqual([]);

    // The log holds no token, code or password.
    expect(await server!.stop()).toBe(0);
    const log = server!.lines.join("\n");
    for (const secret of [PASSWORD, code, issued.access_token, issued.refresh_token, rotated.refresh_token]) expect(log).not.toContain(secret);

    // With the server stopped, its data directory shows the live access token dead.
    const database = await openPglite({ dataDir: join(dir, "data") });
    try {
      const config = loadConfig({ TA_ISSUER: base, TA_LOG_LEVEL: "silent" });
      const services = await createServices({ config, database, log: createLogger("silent") });
      expect(await services.pipeline.verify(rotated.access_token)).toEqual({ ok: false, reason: "inactive" });
    } finally {
      await database.close();
    }
  }, 120_000);
});
