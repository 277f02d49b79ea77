// GET /oauth/authorize (OAuth 2.1 §4.1.1) and POST /oauth/consent: validate the request,
// make sure someone is signed in, ask for consent unless it is remembered, and answer at the
// client's redirect URI with a code or an error (plus `iss`, RFC 9207).
import { Elysia } from "elysia";
import type { AuthorizationRequest } from "../oauth/authorization.ts";
import {
  approve,
  AuthorizationErrorRedirect,
  denyUrl,
  errorResponseUrl,
  UntrustedAuthorizationRequest,
  validateAuthorizationRequest,
} from "../oauth/authorization.ts";
import type { Services } from "../services.ts";
import type { SignedInUser } from "./browser.ts";
import {
  Browser,
  csrfFailurePage,
  cspSource,
  htmlFormParser,
  notIdentifiedPage,
  pageResponse,
  redirectResponse,
} from "./browser.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { consentPage, messagePage } from "./pages/views.ts";

/** The authorization request as form fields (the consent form carries it unchanged). */
export function requestFields(request: AuthorizationRequest): [string, string][] {
  const fields: [string, string][] = [["response_type", "code"], ["client_id", request.client.clientId]];
  if (request.redirectUriParam !== undefined) fields.push(["redirect_uri", request.redirectUriParam]);
  fields.push(["scope", request.scopes.join(" ")]);
  if (request.state !== undefined) fields.push(["state", request.state]);
  fields.push(["code_challenge", request.codeChallenge], ["code_challenge_method", request.codeChallengeMethod]);
  for (const resource of request.resources) fields.push(["resource", resource]);
  if (request.dpopJkt !== undefined) fields.push(["dpop_jkt", request.dpopJkt]);
  return fields;
}

export const authorizePath = (fields: [string, string][]) => `/oauth/authorize?${new URLSearchParams(fields)}`;

/** An invalid request: shown when the redirect is untrustworthy, otherwise sent to the client. */
export function authorizationFailure(error: unknown, issuer: string, status: 302 | 303): Response {
  if (error instanceof UntrustedAuthorizationRequest) {
    // OAuth 2.1 §4.1.2.1: with an invalid client or redirect URI the server "MUST NOT
    // automatically redirect the user agent to the invalid redirection URI".
    return pageResponse(
      messagePage(
        "This sign-in request is not valid",
        `The application sent an invalid request (${error.code}): ${error.message}.`,
        "Go back to the application and try again. If this keeps happening, contact the application's developer.",
      ),
      { status: 400 },
    );
  }
  if (error instanceof AuthorizationErrorRedirect) return redirectResponse(errorResponseUrl(error, issuer), status);
  throw error;
}

const isLoopbackRedirect = (uri: string) => /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])[:/]/.test(uri);

function https(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const url = new URL(value);
    return url.protocol === "https:" || url.protocol === "http:" ? url.toString() : undefined;
  } catch {
    return undefined;
  }
}

export function authorizeEndpoints(services: Services) {
  const { config, clients, codes, consents } = services;
  const browser = new Browser(services);

  function signInRequired(authz: AuthorizationRequest, status: 302 | 303): Response {
    if (browser.trustedUserHeader) return notIdentifiedPage(browser.trustedUserHeader);
    return redirectResponse(`/oauth/login?return_to=${encodeURIComponent(authorizePath(requestFields(authz)))}`, status);
  }

  function renderConsent(request: Request, authz: AuthorizationRequest, signedIn: SignedInUser): Response {
    const csrf = browser.csrf(request);
    const fields = requestFields(authz);
    const logoUri = https(authz.client.metadata.logo_uri);
    const logo = logoUri?.startsWith("https:") ? logoUri : undefined;
    return pageResponse(
      consentPage({
        clientName: authz.client.name,
        clientUri: https(authz.client.metadata.client_uri),
        logoUri: logo,
        redirectHost: new URL(authz.redirectUri).host || authz.redirectUri,
        documentHost: authz.client.registration === "document" ? new URL(authz.client.clientId).host : undefined,
        // Self-registered clients only: an operator vouched for the others.
        loopbackOnly: authz.client.registration !== "operator" && authz.client.redirectUris.every(isLoopbackRedirect),
        scopes: authz.scopes,
        resources: authz.resources,
        fields,
        returnTo: authorizePath(fields),
        user: { username: signedIn.user.username, csrfToken: csrf.token, canSignOut: signedIn.source === "session" },
      }),
      {
        cookies: csrf.cookies,
        formTargets: [cspSource(authz.redirectUri)].filter((s) => s !== undefined),
        imageSources: logo ? [cspSource(logo)!] : [],
      },
    );
  }

  return new Elysia()
    .use(onlyMethods("/oauth/authorize", ["GET"]))
    .use(onlyMethods("/oauth/consent", ["POST"]))
    .get("/oauth/authorize", async ({ request }) => {
      let authz: AuthorizationRequest;
      try {
        authz = await validateAuthorizationRequest(services, new URL(request.url).searchParams);
      } catch (error) {
        return authorizationFailure(error, config.issuer, 302);
      }
      const signedIn = await browser.currentUser(request);
      if (!signedIn) return signInRequired(authz, 302);
      if (await consents.covers(signedIn.user.id, authz.client.clientId, authz.scopes)) {
        return redirectResponse(await approve(codes, config, authz, signedIn.user.id), 302);
      }
      return renderConsent(request, authz, signedIn);
    })
    .post(
      "/oauth/consent",
      async ({ request, body }) => {
        const form = body as URLSearchParams;
        if (!browser.csrfValid(request, form)) return csrfFailurePage();
        let authz: AuthorizationRequest;
        try {
          authz = await validateAuthorizationRequest(services, form);
        } catch (error) {
          return authorizationFailure(error, config.issuer, 303);
        }
        const signedIn = await browser.currentUser(request);
        if (!signedIn) return signInRequired(authz, 303);
        const decision = form.get("decision");
        // RFC 9700 §4.11: 303 after a POST, so the browser does not re-post the form.
        if (decision === "deny") return redirectResponse(denyUrl(config, authz), 303);
        if (decision !== "approve") {
          return pageResponse(messagePage("Choose Approve or Deny", "The form was sent without a decision."), { status: 400 });
        }
        await consents.remember(signedIn.user.id, authz.client.clientId, authz.scopes);
        services.log.info("authorization.consent.approved", { client_id: authz.client.clientId, user_id: signedIn.user.id });
        return redirectResponse(await approve(codes, config, authz, signedIn.user.id), 303);
      },
      { parse: htmlFormParser(config.maxBodyBytes) },
    );
}
