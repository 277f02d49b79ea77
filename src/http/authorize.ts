// GET /oauth/authorize (OAuth 2.1 §4.1.1) and POST /oauth/consent: validate the request,
// make sure someone is signed in, ask for consent unless it is remembered, and answer at the
// client's redirect URI with a code or an error (plus `iss`, RFC 9207).
import { Elysia } from "elysia";
import { OAuthError } from "../errors.ts";
import type { AuthorizationRequest } from "../oauth/authorization.ts";
import type { Authentication } from "../oauth/id-tokens.ts";
import { issuedTo } from "../oauth/id-tokens.ts";
import {
  approve,
  AUTHENTICATED_AFTER_PARAM,
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
  const { nonce, prompt, maxAge, loginHint, idTokenHint, authenticatedAfter } = request.oidc;
  if (nonce !== undefined) fields.push(["nonce", nonce]);
  if (prompt.size) fields.push(["prompt", [...prompt].join(" ")]);
  if (maxAge !== undefined) fields.push(["max_age", String(maxAge)]);
  if (loginHint !== undefined) fields.push(["login_hint", loginHint]);
  if (idTokenHint !== undefined) fields.push(["id_token_hint", idTokenHint]);
  if (authenticatedAfter !== undefined) fields.push([AUTHENTICATED_AFTER_PARAM, String(authenticatedAfter)]);
  return fields;
}

/** The sign-in an approval speaks of (the ID token's auth_time, sid, amr). */
function authenticationOf(signedIn: SignedInUser): Authentication {
  return {
    authTime: signedIn.authTime,
    ...(signedIn.browserSessionId ? { sid: signedIn.browserSessionId, amr: ["pwd"] } : {}),
  };
}

/**
 * Whether the user must sign in before the endpoint answers (OpenID Connect Core §3.1.2.3):
 * nobody is, the request names another user (id_token_hint), or it wants a fresher sign-in than
 * this one (prompt=login or select_account, max_age) — unless the user just signed in for it.
 */
function signInNeeded(authz: AuthorizationRequest, signedIn: SignedInUser | undefined, hintSubject: string | undefined, now: number): "sign_in" | "again" | undefined {
  if (!signedIn) return "sign_in";
  if (hintSubject !== undefined && hintSubject !== signedIn.user.id) return "again";
  const { prompt, maxAge, authenticatedAfter } = authz.oidc;
  if (signedIn.source === "header" || (authenticatedAfter !== undefined && signedIn.authTime >= authenticatedAfter)) return undefined;
  if (prompt.has("login") || prompt.has("select_account")) return "again";
  // §3.1.2.1: "max_age=0 is equivalent to prompt=login"; otherwise re-authenticate once the elapsed time is greater.
  if (maxAge !== undefined && (maxAge === 0 || now - signedIn.authTime > maxAge)) return "again";
  return undefined;
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

  function signInRequired(authz: AuthorizationRequest, status: 302 | 303, again = false): Response {
    if (browser.trustedUserHeader) return notIdentifiedPage(browser.trustedUserHeader);
    // Back from signing in, the request is satisfied by that sign-in (no loop on prompt=login or max_age).
    const back = { ...authz, oidc: { ...authz.oidc, authenticatedAfter: Math.floor(services.now() / 1000) } };
    const login = new URLSearchParams({ return_to: authorizePath(requestFields(back)) });
    if (again) login.set("prompt", "login");
    if (authz.oidc.loginHint !== undefined) login.set("login_hint", authz.oidc.loginHint);
    return redirectResponse(`/oauth/login?${login}`, status);
  }

  /** An OpenID Connect error (Core §3.1.2.6) at the client's redirect URI. */
  function interactionError(authz: AuthorizationRequest, code: "login_required" | "consent_required", description: string): Response {
    return redirectResponse(errorResponseUrl(new AuthorizationErrorRedirect(new OAuthError(code, description), authz.redirectUri, authz.state), config.issuer), 302);
  }

  /** The subject of a valid id_token_hint (Core §3.1.2.1: an ID token of this server for this client, possibly expired). */
  async function hintSubject(authz: AuthorizationRequest): Promise<string | undefined> {
    const hint = authz.oidc.idTokenHint;
    if (hint === undefined) return undefined;
    const claims = await services.idTokens.read(hint);
    if (!claims || !issuedTo(claims, authz.client.clientId)) {
      throw new AuthorizationErrorRedirect(OAuthError.invalidRequest("id_token_hint is not an ID token this server issued to the client"), authz.redirectUri, authz.state);
    }
    return claims.sub;
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
      let hinted: string | undefined;
      try {
        authz = await validateAuthorizationRequest(services, new URL(request.url).searchParams);
        hinted = await hintSubject(authz);
      } catch (error) {
        return authorizationFailure(error, config.issuer, 302);
      }
      const { prompt } = authz.oidc;
      const signedIn = await browser.currentUser(request);
      const needed = signInNeeded(authz, signedIn, hinted, Math.floor(services.now() / 1000));
      if (needed) {
        // Core §3.1.2.1 prompt=none: "The Authorization Server MUST NOT display any authentication or consent user interface pages".
        if (prompt.has("none")) return interactionError(authz, "login_required", "the user must sign in");
        return signInRequired(authz, 302, needed === "again");
      }
      const user = signedIn!;
      const remembered = await consents.covers(user.user.id, authz.client.clientId, authz.scopes);
      if (prompt.has("none") && !remembered) return interactionError(authz, "consent_required", "the user has not approved this client for these scopes");
      if (remembered && !prompt.has("consent")) {
        return redirectResponse(await approve(codes, config, authz, user.user.id, authenticationOf(user)), 302);
      }
      return renderConsent(request, authz, user);
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
        return redirectResponse(await approve(codes, config, authz, signedIn.user.id, authenticationOf(signedIn)), 303);
      },
      { parse: htmlFormParser(config.maxBodyBytes) },
    );
}
