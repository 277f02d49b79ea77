// GET /account/sessions: the applications the signed-in user has authorized; POST
// /account/sessions/revoke withdraws one: every live session of the user for that client is
// revoked (the race-safe revocation of the sessions service) and the consent is forgotten.
import { Elysia } from "elysia";
import type { Services } from "../services.ts";
import { Browser, csrfFailurePage, htmlFormParser, notIdentifiedPage, pageResponse, redirectResponse } from "./browser.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { sessionsPage } from "./pages/views.ts";

const SESSIONS_PATH = "/account/sessions";

export function accountEndpoints(services: Services) {
  const { config, consents, log } = services;
  const browser = new Browser(services);

  const signInRequired = (status: 302 | 303) =>
    browser.trustedUserHeader
      ? notIdentifiedPage(browser.trustedUserHeader)
      : redirectResponse(`/oauth/login?return_to=${encodeURIComponent(SESSIONS_PATH)}`, status);

  return new Elysia()
    .use(onlyMethods(SESSIONS_PATH, ["GET"]))
    .use(onlyMethods(`${SESSIONS_PATH}/revoke`, ["POST"]))
    .get(SESSIONS_PATH, async ({ request }) => {
      const signedIn = await browser.currentUser(request);
      if (!signedIn) return signInRequired(302);
      const csrf = browser.csrf(request);
      const revoked = new URL(request.url).searchParams.get("revoked");
      return pageResponse(
        sessionsPage({
          user: { username: signedIn.user.username, csrfToken: csrf.token, canSignOut: signedIn.source === "session" },
          clients: await consents.list(signedIn.user.id),
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
    );
}
