// GET and POST /oauth/end-session — OpenID Connect RP-Initiated Logout 1.0: an application sends
// the browser here to sign the user out; the user confirms (a CSRF-protected form), the browser
// sign-in ends — which tells every application of it over the back channel — and the browser
// goes to the application's registered post_logout_redirect_uri with its state.
import { Elysia } from "elysia";
import { InvalidLogoutRequest, validateLogoutRequest } from "../oauth/logout.ts";
import type { LogoutRequest } from "../oauth/logout.ts";
import type { Services } from "../services.ts";
import { Browser, csrfFailurePage, cspSource, htmlFormParser, pageResponse, redirectResponse } from "./browser.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { logoutPage, messagePage } from "./pages/views.ts";

export const END_SESSION_PATH = "/oauth/end-session";

function invalidRequestPage(error: InvalidLogoutRequest): Response {
  return pageResponse(
    messagePage("This sign-out request is not valid", `The application sent an invalid request: ${error.message}.`, "You are still signed in. Go back to the application and try again."),
    { status: 400 },
  );
}

export function endSessionEndpoint(services: Services) {
  const { log } = services;
  const browser = new Browser(services);

  /** Where the browser goes once the request is settled: the client's page, or ours. */
  function done(logout: LogoutRequest, status: 302 | 303, cookies: string[], title: string, message: string): Response {
    if (logout.redirectTo) return redirectResponse(logout.redirectTo, status, cookies);
    return pageResponse(messagePage(title, message), { cookies });
  }

  async function handle(request: Request, params: URLSearchParams, confirming: boolean): Promise<Response> {
    let logout: LogoutRequest;
    try {
      logout = await validateLogoutRequest(services, params);
    } catch (error) {
      if (error instanceof InvalidLogoutRequest) return invalidRequestPage(error);
      throw error;
    }
    const signedIn = await browser.currentUser(request);
    if (signedIn?.source === "header") {
      return pageResponse(messagePage("Sign-out is handled elsewhere", "This server signs you in through your organization's sign-in proxy: sign out there."), { status: 404 });
    }
    if (!signedIn) return done(logout, confirming ? 303 : 302, [], "You are signed out", "Nobody is signed in on this browser.");
    if (!confirming) {
      const csrf = browser.csrf(request);
      return pageResponse(
        logoutPage({ username: signedIn.user.username, csrfToken: csrf.token, fields: logout.fields, clientName: logout.client?.name || undefined }),
        { cookies: csrf.cookies, formTargets: logout.redirectTo ? [cspSource(logout.redirectTo)].filter((s) => s !== undefined) : [] },
      );
    }
    if (params.get("decision") !== "logout") return done(logout, 303, [], "You are still signed in", "Nothing changed.");
    // The sign-in itself ends, not only this browser's cookie (every copy of it stops working).
    await browser.sessions.end(signedIn.browserSessionId!, "logout", signedIn.user.id);
    log.info("user.logout", { user_id: signedIn.user.id, browser_session_id: signedIn.browserSessionId, client_id: logout.client?.clientId ?? null, initiated_by: "client" });
    return done(logout, 303, [browser.signOutCookie()], "You are signed out", "Your sign-in on this server has ended.");
  }

  return new Elysia()
    .use(onlyMethods(END_SESSION_PATH, ["GET", "POST"]))
    .get(END_SESSION_PATH, ({ request }) => handle(request, new URL(request.url).searchParams, false))
    .post(
      END_SESSION_PATH,
      async ({ request, body }) => {
        const form = body as URLSearchParams;
        // §2: the request may come as a form post from the client; the confirmation is a post of our own form.
        if (!form.has("decision")) return handle(request, form, false);
        if (!browser.csrfValid(request, form)) return csrfFailurePage();
        return handle(request, form, true);
      },
      { parse: htmlFormParser(services.config.maxBodyBytes) },
    );
}
