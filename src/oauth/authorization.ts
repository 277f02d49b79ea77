// The authorization request (OAuth 2.1 §4.1.1): who is asking (client, redirect URI) and what
// for (scope, resources, PKCE challenge), and the authorization response (§4.1.2, with `iss`
// per RFC 9207).
import type { Config } from "../config.ts";
import { OPENID_SCOPE } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { AuthorizationCodes } from "./authorization-codes.ts";
import type { Client, Clients } from "./clients.ts";
import type { Authentication } from "./id-tokens.ts";
import type { Resources } from "./resources.ts";

/** No parameter of an authorization request is longer (state included). */
export const MAX_PARAMETER_LENGTH = 2048;

/**
 * The request cannot be answered at the client's redirect URI (unknown client, bad redirect
 * URI): it is shown to the user and never redirected (OAuth 2.1 §4.1.2.1).
 */
export class UntrustedAuthorizationRequest extends Error {
  override name = "UntrustedAuthorizationRequest";
  constructor(
    message: string,
    /** What an API would answer: invalid_client for the client, invalid_request for the rest. */
    readonly code: "invalid_client" | "invalid_request" = "invalid_request",
  ) {
    super(message);
  }
}

/** An error the client hears about at its (verified) redirect URI. */
export class AuthorizationErrorRedirect extends Error {
  override name = "AuthorizationErrorRedirect";
  constructor(
    readonly error: OAuthError,
    readonly redirectUri: string,
    readonly state: string | undefined,
  ) {
    super(error.message);
  }
}

export interface ResolvedRedirect {
  client: Client;
  /** Where responses go: the redirect_uri as sent, or the only registered one. */
  redirectUri: string;
  /** The redirect_uri parameter as sent (stored with the code for the token request). */
  redirectUriParam: string | undefined;
}

export interface AuthorizationRequest extends ResolvedRedirect {
  state: string | undefined;
  scopes: string[];
  resources: string[];
  codeChallenge: string;
  codeChallengeMethod: "S256";
  /** RFC 9449 §10: the thumbprint of the DPoP key the code is bound to. */
  dpopJkt: string | undefined;
  /** OpenID Connect Core §3.1.2.1: the parameters of an authentication request. */
  oidc: OidcParameters;
}

export type Prompt = "none" | "login" | "consent" | "select_account";

export interface OidcParameters {
  /** Echoed in the ID token (scope openid only). */
  nonce: string | undefined;
  prompt: ReadonlySet<Prompt>;
  /** Seconds since the user last proved who they are beyond which they must again. */
  maxAge: number | undefined;
  loginHint: string | undefined;
  /** An ID token this server issued, as sent (checked by the endpoint). */
  idTokenHint: string | undefined;
  /**
   * Set by this server when it sent the user to sign in again (prompt=login, max_age): a sign-in
   * at or after this time (seconds) satisfies the request, so coming back does not loop.
   */
  authenticatedAfter: number | undefined;
}

/** The parameter this server adds to an authorization request it sent to sign in again. */
export const AUTHENTICATED_AFTER_PARAM = "ta_authenticated_after";
const PROMPTS: readonly Prompt[] = ["none", "login", "consent", "select_account"];

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "[::1]"]);

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

function isLoopback(url: URL): boolean {
  return url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname);
}

/**
 * Redirect URI matching: exact string comparison (OAuth 2.1 §2.3.1), except that a loopback
 * IP redirect URI matches on any port (RFC 8252 §7.3: "The authorization server MUST allow
 * any port to be specified at the time of the request for loopback IP redirect URIs").
 */
export function redirectUriMatches(registered: string, presented: string): boolean {
  if (registered === presented) return true;
  const a = parseUrl(registered);
  const b = parseUrl(presented);
  if (!a || !b || !isLoopback(a) || !isLoopback(b)) return false;
  return a.hostname === b.hostname && a.pathname === b.pathname && a.search === b.search && !a.hash && !b.hash &&
    !b.username && !b.password;
}

function single(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length > 1) throw OAuthError.invalidRequest(`parameter ${name} is repeated`);
  const value = values[0];
  if (value !== undefined && value.length > MAX_PARAMETER_LENGTH) throw OAuthError.invalidRequest(`parameter ${name} is too long`);
  return value === "" ? undefined : value;
}

/** Finds the client and the redirect URI; any failure here is untrustworthy. */
export async function resolveRedirect(clients: Clients, params: URLSearchParams): Promise<ResolvedRedirect> {
  let clientId: string | undefined;
  let redirectUriParam: string | undefined;
  try {
    clientId = single(params, "client_id");
    redirectUriParam = single(params, "redirect_uri");
  } catch (error) {
    throw new UntrustedAuthorizationRequest((error as OAuthError).description ?? "invalid parameter");
  }
  if (!clientId) throw new UntrustedAuthorizationRequest("client_id is missing");
  let client: Client | undefined;
  try {
    client = await clients.find(clientId);
  } catch (error) {
    // A client ID metadata document that cannot be used: no redirect URI of it can be trusted.
    if (error instanceof OAuthError && error.code === "invalid_client") throw new UntrustedAuthorizationRequest(error.description!, "invalid_client");
    throw error;
  }
  if (!client) throw new UntrustedAuthorizationRequest("unknown client_id", "invalid_client");
  if (redirectUriParam === undefined) {
    // OAuth 2.1 §4.1.1: redirect_uri is optional only when the client has a single one.
    if (client.redirectUris.length !== 1) {
      throw new UntrustedAuthorizationRequest(
        client.redirectUris.length === 0
          ? "the client has no registered redirect URI"
          : "redirect_uri is required: the client has several registered redirect URIs",
      );
    }
    return { client, redirectUri: client.redirectUris[0]!, redirectUriParam: undefined };
  }
  if (!client.redirectUris.some((registered) => redirectUriMatches(registered, redirectUriParam))) {
    throw new UntrustedAuthorizationRequest("redirect_uri is not registered for this client");
  }
  return { client, redirectUri: redirectUriParam, redirectUriParam };
}

/** The scopes a client may request: its registered ones that the server knows. */
export function allowedScopes(client: Client, config: Config): string[] {
  const registered = client.scope.split(" ").filter((s) => s !== "");
  return registered.length ? registered.filter((s) => config.scopes.includes(s)) : [...config.scopes];
}

function requestedScopes(raw: string | undefined, client: Client, config: Config): string[] {
  const allowed = allowedScopes(client, config);
  // RFC 6749 §3.3: without a scope, use a pre-defined default (the client's scopes) — but not
  // openid: a request is an OpenID Connect one only when it says so (Core §3.1.2.1).
  const requested = raw === undefined ? allowed.filter((s) => s !== OPENID_SCOPE) : raw.split(" ").filter((s) => s !== "");
  if (requested.length === 0) throw OAuthError.invalidScope("no scope requested and the client has none registered");
  const unknown = requested.filter((s) => !allowed.includes(s));
  if (unknown.length) throw OAuthError.invalidScope(`scope not allowed for this client: ${unknown.join(" ").slice(0, 100)}`);
  return [...new Set(requested)];
}

/** The resources asked for, as registered (compared after RFC 3986 normalisation). */
async function requestedResources(params: URLSearchParams, resources: Resources): Promise<string[]> {
  const found: string[] = [];
  for (const resource of params.getAll("resource")) {
    const url = parseUrl(resource);
    // RFC 8707 §2: "The value of the resource parameter MUST be an absolute URI ... MUST NOT
    // include a fragment component."
    if (!url || url.hash || resource.includes("#")) throw OAuthError.invalidTarget("resource must be an absolute URI without a fragment");
    const registered = await resources.find(resource);
    if (!registered) throw OAuthError.invalidTarget("unknown resource");
    found.push(registered.resource);
  }
  return [...new Set(found)];
}

/** What validating an authorization request reads. */
export interface AuthorizationDeps {
  clients: Clients;
  config: Config;
  resources: Resources;
}

/** The state to echo: present once, non-empty and within bounds (otherwise it cannot be echoed). */
function stateOf(params: URLSearchParams): string | undefined {
  const values = params.getAll("state");
  return values.length === 1 && values[0] !== "" && values[0]!.length <= MAX_PARAMETER_LENGTH ? values[0] : undefined;
}

/** RFC 7636 §4.2: code-challenge = 43*128unreserved; S256 yields exactly 43 base64url characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

/**
 * Validates an authorization request (query of GET /oauth/authorize, or the fields of the
 * consent form, which carries the same parameters). Throws UntrustedAuthorizationRequest or
 * AuthorizationErrorRedirect.
 */
export async function validateAuthorizationRequest(
  { clients, config, resources: registry }: AuthorizationDeps,
  params: URLSearchParams,
): Promise<AuthorizationRequest> {
  const resolved = await resolveRedirect(clients, params);
  const { client } = resolved;
  const state = stateOf(params);
  try {
    for (const name of ["response_type", "scope", "state", "code_challenge", "code_challenge_method", "dpop_jkt"]) single(params, name);
    // OpenID Connect Core §6: passing a request object is optional to support; say it is not.
    if (params.has("request")) throw new OAuthError("request_not_supported", "request objects are not supported");
    if (params.has("request_uri")) throw new OAuthError("request_uri_not_supported", "request_uri is not supported");
    if (params.has("registration")) throw new OAuthError("registration_not_supported", "the registration parameter is not supported: register at the registration endpoint");
    const responseType = single(params, "response_type");
    if (!responseType) throw OAuthError.invalidRequest("response_type is missing");
    if (responseType !== "code") throw new OAuthError("unsupported_response_type", "only response_type=code is supported");
    if (!client.grantTypes.includes("authorization_code") || !client.responseTypes.includes("code")) {
      throw OAuthError.unauthorizedClient("the client is not registered for the authorization code grant");
    }
    // OAuth 2.1 §4.1.1: PKCE for every client; this server accepts only S256 (RFC 9700 §2.1.1).
    const codeChallenge = single(params, "code_challenge");
    if (!codeChallenge) throw OAuthError.invalidRequest("code_challenge is required (PKCE)");
    const method = single(params, "code_challenge_method");
    if (method !== "S256") throw OAuthError.invalidRequest("code_challenge_method must be S256");
    if (!S256_CHALLENGE.test(codeChallenge)) throw OAuthError.invalidRequest("code_challenge must be 43 base64url characters");
    const scopes = requestedScopes(single(params, "scope"), client, config);
    const resources = await requestedResources(params, registry);
    // RFC 9449 §10: dpop_jkt is the base64url SHA-256 thumbprint (RFC 7638) of the client's DPoP key.
    const dpopJkt = single(params, "dpop_jkt") || undefined;
    if (dpopJkt !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(dpopJkt)) throw OAuthError.invalidRequest("dpop_jkt must be a base64url SHA-256 JWK thumbprint");
    return { ...resolved, state, scopes, resources, codeChallenge, codeChallengeMethod: "S256", dpopJkt, oidc: oidcParameters(params) };
  } catch (error) {
    if (error instanceof OAuthError) throw new AuthorizationErrorRedirect(error, resolved.redirectUri, state);
    throw error;
  }
}

/** OpenID Connect Core §3.1.2.1 parameters, each checked on its own. */
function oidcParameters(params: URLSearchParams): OidcParameters {
  for (const name of ["nonce", "prompt", "max_age", "login_hint", "id_token_hint", AUTHENTICATED_AFTER_PARAM]) single(params, name);
  const prompt = new Set<Prompt>();
  for (const value of (single(params, "prompt") ?? "").split(" ").filter((v) => v !== "")) {
    if (!PROMPTS.includes(value as Prompt)) throw OAuthError.invalidRequest(`prompt "${value.slice(0, 40)}" is not supported (${PROMPTS.join(", ")})`);
    prompt.add(value as Prompt);
  }
  // §3.1.2.1: "If this parameter contains none with any other value, an error is returned."
  if (prompt.has("none") && prompt.size > 1) throw OAuthError.invalidRequest("prompt=none cannot be combined with another value");
  const maxAge = single(params, "max_age");
  if (maxAge !== undefined && !/^\d{1,10}$/.test(maxAge)) throw OAuthError.invalidRequest("max_age must be a non-negative number of seconds");
  const after = single(params, AUTHENTICATED_AFTER_PARAM);
  return {
    nonce: single(params, "nonce"),
    prompt,
    maxAge: maxAge === undefined ? undefined : Number(maxAge),
    loginHint: single(params, "login_hint"),
    idTokenHint: single(params, "id_token_hint"),
    authenticatedAfter: after !== undefined && /^\d{1,12}$/.test(after) ? Number(after) : undefined,
  };
}

/** Whether a request is an OpenID Connect one (its ID tokens and UserInfo): scope openid. */
export const isOpenIdRequest = (request: Pick<AuthorizationRequest, "scopes">) => request.scopes.includes(OPENID_SCOPE);

/**
 * The URL of an authorization response: the redirect URI with its query kept (OAuth 2.1
 * §4.1.2) plus the response parameters and `iss` (RFC 9207 §2: the issuer identifier "MUST"
 * be included when the server supports it).
 */
export function responseUrl(redirectUri: string, issuer: string, fields: Record<string, string | undefined>): string {
  const url = new URL(redirectUri);
  for (const [name, value] of Object.entries(fields)) if (value !== undefined) url.searchParams.append(name, value);
  url.searchParams.append("iss", issuer);
  return url.toString();
}

export function errorResponseUrl(error: AuthorizationErrorRedirect, issuer: string): string {
  return responseUrl(error.redirectUri, issuer, {
    error: error.error.code,
    error_description: error.error.description,
    state: error.state,
  });
}

/** Approve: issues a one-time code and returns where to send the browser. */
export async function approve(
  codes: AuthorizationCodes,
  config: Config,
  request: AuthorizationRequest,
  userId: string,
  authentication: Authentication,
): Promise<string> {
  const { code } = await codes.issue({
    clientId: request.client.clientId,
    userId,
    redirectUri: request.redirectUriParam ?? null,
    scope: request.scopes.join(" "),
    resources: request.resources,
    codeChallenge: request.codeChallenge,
    codeChallengeMethod: request.codeChallengeMethod,
    ttlSeconds: config.authorizationCodeTtl,
    dpopJkt: request.dpopJkt,
    browserSessionId: authentication.sid ?? null,
    ...(isOpenIdRequest(request) ? { oidc: { authentication, ...(request.oidc.nonce !== undefined ? { nonce: request.oidc.nonce } : {}) } } : {}),
  });
  return responseUrl(request.redirectUri, config.issuer, { code, state: request.state });
}

/** Deny: RFC 6749 §4.1.2.1 access_denied. */
export function denyUrl(config: Config, request: AuthorizationRequest): string {
  return errorResponseUrl(
    new AuthorizationErrorRedirect(
      new OAuthError("access_denied", "the user denied the request"),
      request.redirectUri,
      request.state,
    ),
    config.issuer,
  );
}

/** What each scope lets a client do, as shown on the consent page. */
export const SCOPE_DESCRIPTIONS: Readonly<Record<string, string>> = Object.freeze({
  openid: "Sign you in with your account here",
  profile: "See your profile (your name and username)",
  email: "See your email address",
  offline_access: "Keep access while you are not using it",
  read: "Read your data",
  write: "Create, change and delete your data",
});

export function describeScope(scope: string): string {
  return SCOPE_DESCRIPTIONS[scope] ?? `Use the "${scope}" permission`;
}
