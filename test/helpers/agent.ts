// A cookie-keeping client for the HTML pages (through app.handle), plus fixtures for users,
// PKCE and authorization requests.
import { createHash, randomBytes } from "node:crypto";
import { users } from "../../db/schema.ts";
import type { TestApp, TestClient } from "./app.ts";

export type Fields = Record<string, string> | [string, string][];

export interface Page {
  res: Response;
  text: string;
  location: string | null;
}

export class Agent {
  readonly cookies = new Map<string, string>();

  constructor(
    /** The app (through app.handle), or the base URL of a running server (over HTTP). */
    readonly t: TestApp | string,
    /** Sent with every request (e.g. a trusted proxy header). */
    readonly headers: Record<string, string> = {},
  ) {}

  private store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const eq = pair!.indexOf("=");
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      if (value === "" || /max-age=0/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async send(method: string, path: string, init: { form?: Fields | string; headers?: Record<string, string> } = {}): Promise<Page> {
    const headers: Record<string, string> = { ...this.headers, ...init.headers };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    let body: string | undefined;
    if (init.form !== undefined) {
      headers["content-type"] ??= "application/x-www-form-urlencoded";
      body = typeof init.form === "string" ? init.form : new URLSearchParams(init.form).toString();
    }
    const base = typeof this.t === "string" ? this.t : "http://localhost";
    const url = path.startsWith("http") ? path : `${base}${path}`;
    const res =
      typeof this.t === "string"
        ? await fetch(url, { method, headers, body, redirect: "manual" })
        : await this.t.app.handle(new Request(url, { method, headers, body }));
    this.store(res);
    return { res, text: await res.text(), location: res.headers.get("location") };
  }

  get(path: string, headers?: Record<string, string>): Promise<Page> {
    return this.send("GET", path, { headers });
  }

  post(path: string, form: Fields | string, headers?: Record<string, string>): Promise<Page> {
    return this.send("POST", path, { form, headers });
  }
}

const decodeEntities = (s: string) =>
  s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

/** The hidden fields of the form posting to `action` on a page. */
export function hiddenFields(html: string, action: string): [string, string][] {
  const start = html.indexOf(`action="${action}"`);
  if (start < 0) throw new Error(`no form posting to ${action}`);
  const form = html.slice(start, html.indexOf("</form>", start));
  return [...form.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)].map((m) => [
    decodeEntities(m[1]!),
    decodeEntities(m[2]!),
  ]);
}

export function csrfToken(html: string): string {
  const match = /name="csrf_token" value="([^"]+)"/.exec(html);
  if (!match) throw new Error("no csrf_token on the page");
  return match[1]!;
}

export const TEST_PASSWORD = "correct horse battery staple";

/** A built-in account (bcrypt cost 4 keeps the tests fast; Bun.password.verify reads any). */
export async function createUser(t: TestApp, username: string, password = TEST_PASSWORD): Promise<string> {
  const [row] = await t.database.db
    .insert(users)
    .values({ username, passwordHash: await Bun.password.hash(password, { algorithm: "bcrypt", cost: 4 }) })
    .returning({ id: users.id });
  return row!.id;
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

/** A valid authorization request for the client, with overrides (undefined removes a field). */
export function authorizeUrl(c: TestClient, overrides: Record<string, string | undefined> = {}, extra: [string, string][] = []): string {
  const params: Record<string, string | undefined> = {
    response_type: "code",
    client_id: c.client.clientId,
    redirect_uri: c.client.redirectUris[0],
    scope: "read",
    state: "st-123",
    code_challenge: pkce().challenge,
    code_challenge_method: "S256",
    ...overrides,
  };
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) query.append(k, v);
  for (const [k, v] of extra) query.append(k, v);
  return `/oauth/authorize?${query}`;
}

/** Signs the agent in through the login form. */
export async function signIn(agent: Agent, username: string, password = TEST_PASSWORD, returnTo = "/account/sessions"): Promise<Page> {
  const page = await agent.get(`/oauth/login?return_to=${encodeURIComponent(returnTo)}`);
  return agent.post("/oauth/login", { ...Object.fromEntries(hiddenFields(page.text, "/oauth/login")), username, password });
}

/**
 * Plays the user's browser through an authorization request: follows the redirects, signs in
 * when the sign-in page comes, approves when the consent page comes; answers the URL the server
 * finally sends the browser to (the client's redirect URI with the response).
 */
export async function authorizeAs(agent: Agent, authorizationUrl: string, username: string, clientRedirect: string): Promise<URL> {
  let page = await agent.get(authorizationUrl);
  for (let step = 0; step < 10; step++) {
    if (page.location?.startsWith(clientRedirect)) return new URL(page.location);
    if (page.location) {
      page = await agent.get(page.location);
    } else if (page.text.includes('action="/oauth/login"')) {
      page = await agent.post("/oauth/login", [...hiddenFields(page.text, "/oauth/login"), ["username", username], ["password", TEST_PASSWORD]]);
    } else if (page.text.includes('action="/oauth/consent"')) {
      page = await agent.post("/oauth/consent", [...hiddenFields(page.text, "/oauth/consent"), ["decision", "approve"]]);
    } else {
      throw new Error(`unexpected page (${page.res.status}): ${page.text.slice(0, 500)}`);
    }
  }
  throw new Error("too many steps");
}

/** The query parameters of a redirect Location. */
export function redirectParams(location: string | null): URLSearchParams {
  if (!location) throw new Error("no Location");
  return new URL(location).searchParams;
}
