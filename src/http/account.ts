// GET /account/sessions: the applications the signed-in user has authorized, and where they are
// signed in; POST /account/sessions/revoke withdraws one application: every live session of the
// user for that client is revoked (the race-safe revocation of the sessions service) and the
// consent is forgotten; POST /account/sign-out-everywhere ends every sign-in of the user and every
// token family of theirs at once.
import { Elysia } from "elysia";
import type { Services } from "../services.ts";
import { Browser, csrfFailurePage, htmlFormParser, notIdentifiedPage, pageResponse, redirectResponse } from "./browser.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { sessionsPage } from "./pages/views.ts";

const SESSIONS_PATH = "/account/sessions";

export function accountEndpoints(services: Services) {
  const { admin, config, consents, log } = services;
  const browser = new Browser(services);

  const signInRequired = (status: 302 | 303) =>
    browser.trustedUserHeader
      ? notIdentifiedPage(browser.trustedUserHeader)
      : redirectResponse(`/oauth/login?return_to=${encodeURIComponent(SESSIONS_PATH)}`, status);

  return new Elysia()
    .use(onlyMethods(SESSIONS_PATH, ["GET"]))
    .use(onlyMethods(`${SESSIONS_PATH}/revoke`, ["POST"]))
    .use(onlyMethods("/account/sign-out-everywhere", ["POST"]))
    .get(SESSIONS_PATH, async ({ request }) => {
      const signedIn = await browser.currentUser(request);
      if (!signedIn) return signInRequired(302);
      const csrf = browser.csrf(request);
      const revoked = new URL(request.url).searchParams.get("revoked");
      return pageResponse(
        sessionsPage({
          user: { username: signedIn.user.username, csrfToken: csrf.token, canSignOut: signedIn.source === "session" },
          clients: await consents.list(signedIn.user.id),
          browsers: (await services.browserSessions.list(signedIn.user.id)).map((session) => ({
            id: session.id,
            userAgent: session.userAgent,
            createdAt: session.createdAt,
            lastSeenAt: session.lastSeenAt,
            current: session.id === signedIn.browserSessionId,
          })),
          notice: revoked === null ? undefined : `Access revoked: ${revoked === "0" ? "no session was active" : `${revoked} session${revoked === "1" ? "" : "s"} ended`}.`,
        }),
        { cookies: csrf.cookies },
      );
    })
    .post(
      `${SESSIONS_PATH}/revoke`,
      async ({ request, body }) => {
        const form = body as URLSearchParams;
        if (!browser.csrfValid(request, form)) return csrfFailurePage();
        const signedIn = await browser.currentUser(request);
        if (!signedIn) return signInRequired(303);
        const clientId = form.get("client_id") ?? "";
        if (clientId === "" || clientId.length > 256) return redirectResponse(SESSIONS_PATH, 303);
        const revoked = await consents.withdraw(signedIn.user.id, clientId);
        log.info("account.access.revoked", { user_id: signedIn.user.id, client_id: clientId, sessions_revoked: revoked });
        return redirectResponse(`${SESSIONS_PATH}?revoked=${revoked}`, 303);
      },
      { parse: htmlFormParser(config.maxBodyBytes) },
    )
    .post(
      "/account/sign-out-everywhere",
      async ({ request, body }) => {
        const form = body as URLSearchParams;
        if (!browser.csrfValid(request, form)) return csrfFailurePage();
        const signedIn = await browser.currentUser(request);
        if (!signedIn) return signInRequired(303);
        if (signedIn.source !== "session") return redirectResponse(SESSIONS_PATH, 303);
        const ended = await admin.signOutEverywhere(signedIn.user.id);
        log.info("account.signed_out_everywhere", {
          user_id: signedIn.user.id,
          sessions_revoked: ended.revoked,
          browser_sessions_ended: ended.browserSessionsEnded,
        });
        return redirectResponse(`/oauth/login?return_to=${encodeURIComponent(SESSIONS_PATH)}`, 303, [browser.signOutCookie()]);
      },
      { parse: htmlFormParser(config.maxBodyBytes) },
    );
}
