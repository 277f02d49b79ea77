// Browser plumbing shared by the HTML endpoints: cookies, CSRF protection, who is signed in
// (session cookie or trusted proxy header), and page/redirect responses with their security
// headers (CSP without script, no framing, no caching).
import { randomBytes, timingSafeEqual } from "node:crypto";
import { OAuthError } from "../errors.ts";
import type { User } from "../oauth/accounts.ts";
import type { Accounts } from "../oauth/accounts.ts";
import type { BrowserSessions } from "../oauth/browser-sessions.ts";
import { BROWSER_SESSION_TTL } from "../oauth/browser-sessions.ts";
import type { Services } from "../services.ts";
import type { Html } from "./pages/html.ts";
import { messagePage } from "./pages/views.ts";
import { FORM_CONTENT_TYPE } from "./form.ts";
import { NO_STORE } from "./responses.ts";

export interface PageOptions {
  status?: number;
  /** Set-Cookie values. */
  cookies?: string[];
  /** Where the page's forms may lead, redirects included (CSP form-action), besides 'self'. */
  formTargets?: string[];
  imageSources?: string[];
  headers?: Record<string, string>;
}

export function pageResponse(body: Html, options: PageOptions = {}): Response {
  const formAction = ["'self'", ...new Set(options.formTargets ?? [])].join(" ");
  const images = options.imageSources?.length ? [...new Set(options.imageSources)].join(" ") : "'none'";
  const headers = new Headers({
    ...NO_STORE,
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": `default-src 'none'; style-src 'self'; img-src ${images}; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    // same-origin keeps the Origin header on our own form posts and sends no referrer elsewhere.
    "Referrer-Policy": "same-origin",
    ...options.headers,
  });
  for (const cookie of options.cookies ?? []) headers.append("Set-Cookie", cookie);
  return new Response(body.value, { status: options.status ?? 200, headers });
}

export function redirectResponse(location: string, status: 302 | 303, cookies: string[] = []): Response {
  const headers = new Headers({ ...NO_STORE, Location: location, "Referrer-Policy": "same-origin" });
  for (const cookie of cookies) headers.append("Set-Cookie", cookie);
  return new Response(null, { status, headers });
}

export function notIdentifiedPage(header: string): Response {
  return pageResponse(
    messagePage(
      "You are not signed in",
      "The sign-in proxy in front of this server did not say who you are.",
      `The server expects the ${header} header from the proxy. Contact your administrator.`,
    ),
    { status: 403 },
  );
}

export function csrfFailurePage(): Response {
  return pageResponse(
    messagePage("This form has expired", "The form could not be accepted: it was not sent from this site, or it is too old.", "Go back, reload the page and try again."),
    { status: 403 },
  );
}

/**
 * A CSP source expression allowing navigation to `uri`: its origin, or only its scheme for a
 * custom scheme (native apps) or an IPv6 literal, which CSP host sources cannot express.
 */
export function cspSource(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if ((url.protocol === "http:" || url.protocol === "https:") && !url.hostname.startsWith("[")) return url.origin;
  return /^[a-z][a-z0-9+.-]*:$/i.test(url.protocol) ? url.protocol : undefined;
}

/** Elysia `parse` hook for the HTML forms: urlencoded, bounded, repeated names kept. */
export function htmlFormParser(maxBytes: number) {
  return async ({ request, contentType }: { request: Request; contentType: string }): Promise<URLSearchParams> => {
    if (contentType !== FORM_CONTENT_TYPE) throw OAuthError.invalidRequest(`the body must be ${FORM_CONTENT_TYPE}`);
    const bytes = await request.arrayBuffer();
    if (bytes.byteLength > maxBytes) throw new OAuthError("payload_too_large", "the form is too large");
    return new URLSearchParams(new TextDecoder().decode(bytes));
  };
}

function readCookies(header: string | null): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface SignedInUser {
  user: User;
  /** "header" when a trusted proxy named the user (no sign-out here). */
  source: "session" | "header";
  /** The browser session (source "session"). */
  browserSessionId?: string;
  /** When the user last proved who they are (seconds): OpenID Connect auth_time. */
  authTime: number;
}

export interface CsrfToken {
  token: string;
  /** Set-Cookie to send when the browser had no token yet. */
  cookies: string[];
}

export class Browser {
  readonly accounts: Accounts;
  readonly sessions: BrowserSessions;
  /** Cookies are Secure (and __Host- prefixed, RFC 6265bis §4.1.3.2) when the issuer is https. */
  readonly secure: boolean;
  readonly origin: string;
  readonly trustedUserHeader: string | undefined;
  private readonly sessionCookie: string;
  private readonly csrfCookie: string;

  private readonly now: () => number;

  constructor(services: Pick<Services, "config" | "accounts" | "browserSessions" | "now">) {
    const { config } = services;
    this.now = services.now;
    this.accounts = services.accounts;
    this.sessions = services.browserSessions;
    const issuer = new URL(config.issuer);
    this.secure = issuer.protocol === "https:";
    this.origin = issuer.origin;
    this.trustedUserHeader = config.trustedUserHeader;
    const prefix = this.secure ? "__Host-" : "";
    this.sessionCookie = `${prefix}ta_session`;
    this.csrfCookie = `${prefix}ta_csrf`;
  }

  private cookie(name: string, value: string, maxAge?: number): string {
    return `${name}=${value}; Path=/; HttpOnly; SameSite=Lax${this.secure ? "; Secure" : ""}${
      maxAge === undefined ? "" : `; Max-Age=${maxAge}`
    }`;
  }

  /** The browser's CSRF token (double-submit cookie), minted when it has none. */
  csrf(request: Request): CsrfToken {
    const existing = readCookies(request.headers.get("cookie")).get(this.csrfCookie);
    if (existing && /^[A-Za-z0-9_-]{43}$/.test(existing)) return { token: existing, cookies: [] };
    const token = randomBytes(32).toString("base64url");
    return { token, cookies: [this.cookie(this.csrfCookie, token)] };
  }

  /**
   * A state-changing form post is accepted only with the token of the browser's CSRF cookie
   * (SameSite=Lax, so a cross-site post does not even carry it) and, when the browser says
   * where the post comes from, only from this server's own origin.
   */
  csrfValid(request: Request, form: URLSearchParams): boolean {
    const origin = request.headers.get("origin");
    if (origin !== null && origin !== this.origin) return false;
    if (request.headers.get("sec-fetch-site") === "cross-site") return false;
    const cookie = readCookies(request.headers.get("cookie")).get(this.csrfCookie);
    const submitted = form.getAll("csrf_token");
    return cookie !== undefined && submitted.length === 1 && sameToken(cookie, submitted[0]!);
  }

  /** Who is signed in: the trusted header when configured, otherwise the session cookie. */
  async currentUser(request: Request): Promise<SignedInUser | undefined> {
    if (this.trustedUserHeader) {
      const name = request.headers.get(this.trustedUserHeader)?.trim();
      const user = name ? await this.accounts.fromTrustedHeader(name) : undefined;
      // The proxy authenticates every request it forwards: as of now.
      return user ? { user, source: "header", authTime: Math.floor(this.now() / 1000) } : undefined;
    }
    const signedIn = await this.sessions.find(readCookies(request.headers.get("cookie")).get(this.sessionCookie));
    return signedIn
      ? { user: signedIn.user, source: "session", browserSessionId: signedIn.session.id, authTime: Math.floor(signedIn.session.authenticatedAt.getTime() / 1000) }
      : undefined;
  }

  /**
   * Signs the user in; answers the Set-Cookie to send. Signing in again as the user of the
   * browser's live sign-in re-authenticates it (its auth_time moves on, its sid stays, no
   * cookie); as someone else, that sign-in ends first.
   */
  async signIn(userId: string, request: Request): Promise<string[]> {
    const current = await this.currentUser(request);
    if (current?.browserSessionId) {
      if (current.user.id === userId && (await this.sessions.reauthenticated(current.browserSessionId, userId))) return [];
      await this.sessions.end(current.browserSessionId, "signed_in_as_another_user", current.user.id);
    }
    const { cookieValue } = await this.sessions.start(userId, request.headers.get("user-agent"));
    return [this.cookie(this.sessionCookie, cookieValue, BROWSER_SESSION_TTL)];
  }

  signOutCookie(): string {
    return this.cookie(this.sessionCookie, "", 0);
  }
}

/**
 * Where to go after signing in: only this server's own pages (no open redirect). Anything
 * else falls back to the account page.
 */
export function safeReturnTo(value: string | null | undefined, origin: string): string {
  const fallback = "/account/sessions";
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\") || value.length > 8192) return fallback;
  let url: URL;
  try {
    url = new URL(value, origin);
  } catch {
    return fallback;
  }
  if (url.origin !== origin || !["/oauth/authorize", "/account/sessions"].includes(url.pathname)) return fallback;
  return url.pathname + url.search;
}
