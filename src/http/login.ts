// GET/POST /oauth/login and POST /oauth/logout for built-in accounts: a CSRF-protected form,
// a signed HttpOnly session cookie, one generic failure message (no user enumeration), and
// throttling of consecutive failures per username and per client IP.
import type { Server } from "bun";
import { Elysia } from "elysia";
import { AuthorizationErrorRedirect, validateAuthorizationRequest } from "../oauth/authorization.ts";
import { LOGIN_FAILURE_LIMIT, LoginThrottle } from "../oauth/login-throttle.ts";
import type { Services } from "../services.ts";
import { clientIp } from "./client-ip.ts";
import { Browser, csrfFailurePage, cspSource, htmlFormParser, pageResponse, redirectResponse, safeReturnTo } from "./browser.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { loginPage, messagePage } from "./pages/views.ts";

const INVALID_CREDENTIALS = "Invalid username or password.";

interface ReturnContext {
  clientName?: string;
  /** After signing in, the browser may go straight on to the client (remembered consent). */
  formTargets: string[];
}

function tooManyAttempts(retryAfter: number): Response {
  const minutes = Math.ceil(retryAfter / 60);
  return pageResponse(
    messagePage(
      "Too many attempts",
      `Sign-in is paused after ${LOGIN_FAILURE_LIMIT} failed attempts. Try again in ${minutes} minute${minutes === 1 ? "" : "s"}.`,
    ),
    { status: 429, headers: { "Retry-After": String(retryAfter) } },
  );
}

function loginDisabled(): Response {
  return pageResponse(messagePage("Sign-in is handled elsewhere", "This server signs you in through your organization's sign-in proxy."), {
    status: 404,
  });
}

export function loginEndpoints(services: Services) {
  const { config, clients, log } = services;
  const browser = new Browser(services);
  const throttle = new LoginThrottle(services.now);
  let warnedNoIp = false;

  /**
   * The client's IP: from the proxy's header when configured (for X-Forwarded-For the last
   * entry, the one the nearest proxy appended), otherwise the socket's peer.
   */
  function loginIp(request: Request, server: Server<unknown> | null): string | undefined {
    const ip = clientIp(request, server, config.clientIpHeader);
    if (!ip && !warnedNoIp) {
      warnedNoIp = true;
      log.warn("security.login.ip_unknown", { reason: "no client IP: failed sign-ins are throttled per username only" });
    }
    return ip;
  }

  async function returnContext(returnTo: string): Promise<ReturnContext> {
    const url = new URL(returnTo, browser.origin);
    if (url.pathname !== "/oauth/authorize") return { formTargets: [] };
    try {
      const authz = await validateAuthorizationRequest(services, url.searchParams);
      return { clientName: authz.client.name, formTargets: [cspSource(authz.redirectUri)].filter((s) => s !== undefined) };
    } catch (error) {
      if (error instanceof AuthorizationErrorRedirect) {
        return { formTargets: [cspSource(error.redirectUri)].filter((s) => s !== undefined) };
      }
      return { formTargets: [] };
    }
  }

  async function renderLogin(request: Request, returnTo: string, status = 200, username?: string, error?: string) {
    const csrf = browser.csrf(request);
    const context = await returnContext(returnTo);
    return pageResponse(
      loginPage({ csrfToken: csrf.token, returnTo, username, clientName: context.clientName, error }),
      { status, cookies: csrf.cookies, formTargets: context.formTargets },
    );
  }

  return new Elysia()
    .use(onlyMethods("/oauth/login", ["GET", "POST"]))
    .use(onlyMethods("/oauth/logout", ["POST"]))
    .get("/oauth/login", async ({ request }) => {
      if (browser.trustedUserHeader) return loginDisabled();
      const query = new URL(request.url).searchParams;
      const returnTo = safeReturnTo(query.get("return_to"), browser.origin);
      // prompt=login: the authorization request wants the user to prove who they are again.
      if (query.get("prompt") !== "login" && (await browser.currentUser(request))) return redirectResponse(returnTo, 302);
      // OpenID Connect Core §3.1.2.1 login_hint: the username to offer.
      const hint = query.get("login_hint")?.trim().slice(0, 256) || undefined;
      return renderLogin(request, returnTo, 200, hint);
    })
    .post(
      "/oauth/login",
      async ({ request, body, server }) => {
        if (browser.trustedUserHeader) return loginDisabled();
        const form = body as URLSearchParams;
        if (!browser.csrfValid(request, form)) return csrfFailurePage();
        const returnTo = safeReturnTo(form.get("return_to"), browser.origin);
        const username = (form.get("username") ?? "").trim().slice(0, 256);
        const password = form.get("password") ?? "";
        if (username === "" || password === "" || password.length > 1024) {
          return renderLogin(request, returnTo, 400, username, INVALID_CREDENTIALS);
        }
        const ip = loginIp(request, server);
        const keys = [`user:${username.toLowerCase()}`, ...(ip ? [`ip:${ip}`] : [])];
        const retryAfter = throttle.retryAfter(keys);
        if (retryAfter > 0) {
          log.warn("security.login.throttled", { ip: ip ?? null, retry_after: retryAfter });
          services.metrics.rateLimited.inc({ limit: "login" });
          return tooManyAttempts(retryAfter);
        }
        const user = await browser.accounts.authenticate(username, password);
        if (!user) {
          throttle.fail(keys);
          // The username is not logged: people type passwords into it.
          log.info("security.login.failed", { ip: ip ?? null });
          return renderLogin(request, returnTo, 401, username, INVALID_CREDENTIALS);
        }
        throttle.succeed(keys);
        log.info("user.login.succeeded", { user_id: user.id });
        return redirectResponse(returnTo, 303, await browser.signIn(user.id, request));
      },
      { parse: htmlFormParser(config.maxBodyBytes) },
    )
    .post(
      "/oauth/logout",
      async ({ request, body }) => {
        if (browser.trustedUserHeader) return loginDisabled();
        const form = body as URLSearchParams;
        if (!browser.csrfValid(request, form)) return csrfFailurePage();
        const returnTo = safeReturnTo(form.get("return_to"), browser.origin);
        // The session itself ends, not only this browser's cookie: a copy of it stops working.
        const signedIn = await browser.currentUser(request);
        if (signedIn?.browserSessionId) {
          await browser.sessions.end(signedIn.browserSessionId, "logout", signedIn.user.id);
          log.info("user.logout", { user_id: signedIn.user.id, browser_session_id: signedIn.browserSessionId });
        }
        return redirectResponse(`/oauth/login?return_to=${encodeURIComponent(returnTo)}`, 303, [browser.signOutCookie()]);
      },
      { parse: htmlFormParser(config.maxBodyBytes) },
    );
}
