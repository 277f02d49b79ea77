// Client metadata (RFC 7591): the one validation path for every way a client is made or changed —
// dynamic registration, the admin API and the CLI (through the admin API) — the client created
// from it, and the registration response (RFC 7591 §3.2.1).
import { createHash, timingSafeEqual } from "node:crypto";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { t } from "elysia";
import type { Config } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { Client, Clients, NewClient, TokenEndpointAuthMethod } from "./clients.ts";
import { SUPPORTED_GRANT_TYPES } from "./grants/index.ts";
import { OPERATOR_SCOPES, parseScope } from "./scopes.ts";

export const TOKEN_ENDPOINT_AUTH_METHODS: readonly TokenEndpointAuthMethod[] = ["client_secret_basic", "client_secret_post", "none"];
export const RESPONSE_TYPES: readonly string[] = ["code"];

const uri = t.String({ minLength: 1, maxLength: 2048 });
const list = (item: ReturnType<typeof t.String>, maxItems = 20) => t.Array(item, { maxItems });

/** The metadata this server understands; anything else is ignored (RFC 7591 §2). The admin API's body is this and the operator's fields. */
export const metadataSchema = t.Object({
  redirect_uris: t.Optional(list(uri)),
  token_endpoint_auth_method: t.Optional(t.String({ maxLength: 64 })),
  grant_types: t.Optional(list(t.String({ maxLength: 64 }))),
  response_types: t.Optional(list(t.String({ maxLength: 64 }))),
  client_name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  client_uri: t.Optional(uri),
  logo_uri: t.Optional(uri),
  tos_uri: t.Optional(uri),
  policy_uri: t.Optional(uri),
  contacts: t.Optional(list(t.String({ minLength: 1, maxLength: 254 }), 10)),
  scope: t.Optional(t.String({ maxLength: 1024 })),
  software_id: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  software_version: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  /** OpenID Connect Dynamic Client Registration 1.0 §2, which MCP 2026-07-28 asks clients to send. */
  application_type: t.Optional(t.Union([t.Literal("web"), t.Literal("native")])),
  /** RFC 9449 §5.2: every token request of this client must carry a DPoP proof. */
  dpop_bound_access_tokens: t.Optional(t.Boolean()),
  /** OpenID Connect RP-Initiated Logout 1.0 §3.1: where the browser may go after logging out. */
  post_logout_redirect_uris: t.Optional(list(uri)),
  /** OpenID Connect Back-Channel Logout 1.0 §2.2: where logout tokens are posted. */
  backchannel_logout_uri: t.Optional(uri),
  backchannel_logout_session_required: t.Optional(t.Boolean()),
});
const checkMetadata = TypeCompiler.Compile(metadataSchema);

/** What only an operator may set (the admin API); open registration ignores these fields. */
export const operatorMetadataSchema = t.Object({
  access_token_ttl: t.Optional(t.Union([t.Integer({ minimum: 1, maximum: 365 * 24 * 3600 }), t.Null()])),
  refresh_token_ttl: t.Optional(t.Union([t.Integer({ minimum: 1, maximum: 365 * 24 * 3600 }), t.Null()])),
  /** The resource (RFC 8707) this client serves: it may introspect tokens whose `aud` holds it. */
  resource_server: t.Optional(t.Union([uri, t.Null()])),
});
const checkOperatorMetadata = TypeCompiler.Compile(operatorMetadataSchema);

/** Optional human-facing metadata kept in clients.metadata and echoed back. */
const EXTRA_FIELDS = [
  "client_uri", "logo_uri", "tos_uri", "policy_uri", "contacts", "software_id", "software_version", "application_type", "dpop_bound_access_tokens",
  "post_logout_redirect_uris", "backchannel_logout_uri", "backchannel_logout_session_required",
] as const;
const URI_FIELDS = ["client_uri", "logo_uri", "tos_uri", "policy_uri"] as const;

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "[::1]", "localhost"]);

const invalid = (description: string) => OAuthError.invalidClientMetadata(description);
const unique = <T>(items: readonly T[]) => [...new Set(items)];

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/** Schemes no redirect may use, whatever the application type. */
const FORBIDDEN_SCHEMES = new Set(["javascript:", "data:", "vbscript:", "file:", "blob:", "about:", "ws:", "wss:", "ftp:"]);

/**
 * https, or http on a loopback host (RFC 8252 §7.3); for a native application also a private-use
 * scheme in reverse domain name form (RFC 8252 §7.1, `com.example.app:/callback`); never a
 * fragment (RFC 6749 §3.1.2).
 */
function checkRedirectUri(value: string, native: boolean): void {
  const url = parseUrl(value);
  if (!url) throw OAuthError.invalidRedirectUri("redirect_uris must be absolute URIs");
  // RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component."
  if (value.includes("#")) throw OAuthError.invalidRedirectUri("redirect_uris must not contain a fragment");
  if (url.protocol === "https:") return;
  if (url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname)) return;
  if (native && !FORBIDDEN_SCHEMES.has(url.protocol) && url.protocol !== "http:" && /^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+:$/.test(url.protocol)) return;
  throw OAuthError.invalidRedirectUri(
    native
      ? "redirect_uris must use https, http on a loopback address, or a private-use scheme like com.example.app:"
      : "redirect_uris must use https, or http on a loopback address",
  );
}

/**
 * Back-Channel Logout 1.0 §2.2: an absolute URI that "MUST NOT include a fragment component";
 * https (the outbound module's rule: http only for a host of TA_OUTBOUND_ALLOW_HOSTS). The
 * address it resolves to is checked at each delivery (src/outbound.ts).
 */
function checkBackchannelLogoutUri(value: string, allowHosts: ReadonlySet<string>): void {
  const url = parseUrl(value);
  if (!url || value.includes("#")) throw invalid("backchannel_logout_uri must be an absolute URI without a fragment");
  if (url.protocol === "https:") return;
  if (url.protocol === "http:" && allowHosts.has(url.host.toLowerCase())) return;
  throw invalid("backchannel_logout_uri must use https");
}

/** What validating metadata reads of the configuration. */
export type MetadataConfig = Pick<Config, "scopes"> & Partial<Pick<Config, "outboundAllowHosts">>;

/** RFC 7591 methods built on a secret shared with the server; a metadata document cannot hold one. */
const SHARED_SECRET_METHODS = new Set(["client_secret_basic", "client_secret_post", "client_secret_jwt"]);

/** Client metadata validated and completed with defaults, ready to store. */
export interface RegisteredMetadata {
  redirect_uris: string[];
  token_endpoint_auth_method: TokenEndpointAuthMethod;
  grant_types: string[];
  response_types: string[];
  scope: string;
  client_name?: string;
  client_uri?: string;
  logo_uri?: string;
  tos_uri?: string;
  policy_uri?: string;
  contacts?: string[];
  software_id?: string;
  software_version?: string;
  application_type?: "web" | "native";
  dpop_bound_access_tokens?: boolean;
  post_logout_redirect_uris?: string[];
  backchannel_logout_uri?: string;
  backchannel_logout_session_required?: boolean;
  /** Operator-only (the admin API): null means the server default / none. */
  access_token_ttl?: number | null;
  refresh_token_ttl?: number | null;
  resource_server?: string | null;
}

export interface MetadataOptions {
  /** The admin API: operator-only fields are read, and the admin scope may be registered. */
  operator?: boolean;
  /**
   * A client ID metadata document: a public client (auth method `none` by default, never a shared
   * secret), and scopes and grant types this server does not know are ignored rather than
   * refused (one document serves every authorization server its client talks to).
   */
  document?: boolean;
  /** How the client came to be (stored): the admin API's operator, or dynamic registration. */
  registration?: "operator" | "dynamic";
}

/** PostgreSQL text and jsonb hold neither NUL nor lone surrogates (found by test/fuzz-register.test.ts). */
function storable(value: unknown, depth = 0): boolean {
  if (depth > 32) return false;
  if (typeof value === "string") return value.isWellFormed() && !value.includes("\u0000");
  if (Array.isArray(value)) return value.every((item) => storable(item, depth + 1));
  if (value && typeof value === "object") {
    return Object.entries(value).every(([key, item]) => storable(key, depth + 1) && storable(item, depth + 1));
  }
  return true;
}

/** Validates RFC 7591 metadata: invalid_client_metadata / invalid_redirect_uri on any fault. */
export function validateMetadata(input: unknown, config: MetadataConfig, options: MetadataOptions = {}): RegisteredMetadata {
  if (typeof input !== "object" || input === null || Array.isArray(input)) throw invalid("the body must be a JSON object");
  // Refused here, as bad metadata, rather than failing at the INSERT.
  if (!storable(input)) throw invalid("a value holds a NUL character or invalid Unicode");
  const fieldOf = (errors: ReturnType<typeof checkMetadata.Errors>) => errors.First()?.path.replace(/^\//, "").split("/")[0] || "a field";
  if (!checkMetadata.Check(input)) throw invalid(`invalid value for ${fieldOf(checkMetadata.Errors(input))}`);
  if (options.operator && !checkOperatorMetadata.Check(input)) throw invalid(`invalid value for ${fieldOf(checkOperatorMetadata.Errors(input))}`);
  const method = (input.token_endpoint_auth_method ?? (options.document ? "none" : "client_secret_basic")) as TokenEndpointAuthMethod;
  if (options.document && method !== "none") {
    // draft-ietf-oauth-client-id-metadata-document-01 §4.1: "the token_endpoint_auth_method
    // property MUST NOT include client_secret_post, client_secret_basic, client_secret_jwt".
    throw invalid(
      SHARED_SECRET_METHODS.has(method)
        ? "a metadata document cannot use a shared secret: token_endpoint_auth_method must be none"
        : `token_endpoint_auth_method "${String(method).slice(0, 64)}" is not supported here; use none`,
    );
  }
  if (!TOKEN_ENDPOINT_AUTH_METHODS.includes(method)) {
    throw invalid(`token_endpoint_auth_method must be one of ${TOKEN_ENDPOINT_AUTH_METHODS.join(", ")}`);
  }
  // RFC 7591 §2: grant_types defaults to authorization_code.
  const grantTypes = unique(input.grant_types ?? ["authorization_code"]).filter((grant) => !options.document || SUPPORTED_GRANT_TYPES.includes(grant));
  if (grantTypes.length === 0) throw invalid("grant_types must not be empty");
  for (const grant of grantTypes) {
    if (!SUPPORTED_GRANT_TYPES.includes(grant)) throw invalid(`grant type "${grant.slice(0, 64)}" is not supported`);
  }
  const usesCode = grantTypes.includes("authorization_code");
  const responseTypes = unique(input.response_types ?? (usesCode ? ["code"] : []));
  for (const type of responseTypes) {
    if (!RESPONSE_TYPES.includes(type)) throw invalid(`response type "${type.slice(0, 64)}" is not supported`);
  }
  // RFC 7591 §2.1: the code response type goes with the authorization_code grant, both ways.
  if (usesCode !== responseTypes.includes("code")) {
    throw invalid('grant_types "authorization_code" and response_types "code" must be registered together');
  }
  if (grantTypes.includes("client_credentials") && method === "none") {
    throw invalid("client_credentials requires a confidential client (token_endpoint_auth_method other than none)");
  }
  const redirectUris = unique(input.redirect_uris ?? []);
  for (const redirectUri of redirectUris) checkRedirectUri(redirectUri, input.application_type === "native");
  if (usesCode && redirectUris.length === 0) {
    throw OAuthError.invalidRedirectUri("redirect_uris is required for the authorization_code grant");
  }
  // RP-Initiated Logout 1.0 §3.1: post-logout redirects are held to the rules of redirect URIs.
  for (const uri of input.post_logout_redirect_uris ?? []) {
    try {
      checkRedirectUri(uri, input.application_type === "native");
    } catch {
      throw invalid("post_logout_redirect_uris must be absolute https URIs (http on a loopback address) without a fragment");
    }
  }
  if (input.backchannel_logout_uri !== undefined) checkBackchannelLogoutUri(input.backchannel_logout_uri, config.outboundAllowHosts ?? new Set());
  for (const field of URI_FIELDS) {
    const value = input[field];
    const url = value === undefined ? undefined : parseUrl(value);
    if (value !== undefined && (!url || (url.protocol !== "https:" && url.protocol !== "http:"))) {
      throw invalid(`${field} must be an http or https URL`);
    }
  }
  // RFC 7591 §2: omitted scope → a default set; here, every scope the server offers.
  const scopes = (input.scope === undefined ? [...config.scopes] : parseScope(input.scope)).filter(
    (scope) => !options.document || config.scopes.includes(scope),
  );
  for (const scope of scopes) {
    if (OPERATOR_SCOPES.includes(scope) && options.operator) {
      if (!grantTypes.includes("client_credentials")) throw invalid(`scope "${scope}" is for a client_credentials client`);
      continue;
    }
    if (!config.scopes.includes(scope)) throw invalid(`scope "${scope.slice(0, 64)}" is not supported`);
  }
  const operator = options.operator ? (input as { access_token_ttl?: number | null; refresh_token_ttl?: number | null; resource_server?: string | null }) : {};
  if (operator.resource_server) {
    const url = parseUrl(operator.resource_server);
    // RFC 8707 §2: a resource is an absolute URI without a fragment.
    if (!url || url.hash || operator.resource_server.includes("#") || (url.protocol !== "https:" && url.protocol !== "http:")) {
      throw invalid("resource_server must be an absolute http or https URI without a fragment");
    }
  }

  const metadata: RegisteredMetadata = {
    redirect_uris: redirectUris,
    token_endpoint_auth_method: method,
    grant_types: grantTypes,
    response_types: responseTypes,
    scope: scopes.join(" "),
  };
  if (input.client_name !== undefined) metadata.client_name = input.client_name;
  for (const field of EXTRA_FIELDS) {
    if (input[field] !== undefined) Object.assign(metadata, { [field]: input[field] });
  }
  for (const field of ["access_token_ttl", "refresh_token_ttl", "resource_server"] as const) {
    if (operator[field] !== undefined) Object.assign(metadata, { [field]: operator[field] });
  }
  return metadata;
}

/** The columns of a client made or changed from validated metadata. */
export function clientFields(metadata: RegisteredMetadata): Omit<NewClient, "type"> & { type: "public" | "confidential" } {
  return {
    name: metadata.client_name ?? "",
    type: metadata.token_endpoint_auth_method === "none" ? "public" : "confidential",
    tokenEndpointAuthMethod: metadata.token_endpoint_auth_method,
    redirectUris: metadata.redirect_uris,
    grantTypes: metadata.grant_types,
    responseTypes: metadata.response_types,
    scope: metadata.scope,
    accessTokenTtl: metadata.access_token_ttl ?? null,
    refreshTokenTtl: metadata.refresh_token_ttl ?? null,
    resourceServer: metadata.resource_server ?? null,
    metadata: Object.fromEntries(EXTRA_FIELDS.filter((f) => metadata[f] !== undefined).map((f) => [f, metadata[f]])),
  };
}

/** A client's registration as RFC 7591 metadata (what an update starts from). */
export function metadataOf(client: Client): RegisteredMetadata {
  const metadata: RegisteredMetadata = {
    redirect_uris: client.redirectUris,
    token_endpoint_auth_method: client.tokenEndpointAuthMethod as TokenEndpointAuthMethod,
    grant_types: client.grantTypes,
    response_types: client.responseTypes,
    scope: client.scope,
    access_token_ttl: client.accessTokenTtl,
    refresh_token_ttl: client.refreshTokenTtl,
    resource_server: client.resourceServer,
  };
  if (client.name !== "") metadata.client_name = client.name;
  for (const field of EXTRA_FIELDS) {
    if (client.metadata[field] !== undefined) Object.assign(metadata, { [field]: client.metadata[field] });
  }
  return metadata;
}

export interface RegistrationResult {
  client: Client;
  secret: string | undefined;
  metadata: RegisteredMetadata;
}

/** Validates the metadata and creates the client (confidential unless the method is `none`). */
export async function registerClient(
  clients: Clients,
  config: MetadataConfig,
  input: unknown,
  options: MetadataOptions = {},
): Promise<RegistrationResult> {
  const metadata = validateMetadata(input, config, options);
  const { client, secret } = await clients.create({ ...clientFields(metadata), registration: options.registration });
  return { client, secret, metadata };
}

/** RFC 7591 §3.2.1: the registered metadata plus the client's identifier and credentials. */
export function registrationResponse({ client, secret, metadata }: RegistrationResult): Record<string, unknown> {
  return {
    client_id: client.clientId,
    client_id_issued_at: Math.floor(client.createdAt.getTime() / 1000),
    // 0: the secret does not expire (RFC 7591 §3.2.1).
    ...(secret ? { client_secret: secret, client_secret_expires_at: 0 } : {}),
    ...metadata,
  };
}

/**
 * When TA_REGISTRATION_TOKEN is set, registration requires `Authorization: Bearer <it>`
 * (RFC 7591 §3: an initial access token); compared in constant time.
 */
export function checkInitialAccessToken(expected: string | undefined, authorization: string | null): void {
  if (expected === undefined) return;
  const presented = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1];
  if (presented === undefined) {
    throw new OAuthError("invalid_token", "an initial access token is required", { "WWW-Authenticate": 'Bearer realm="token-authority"' });
  }
  const digest = (value: string) => createHash("sha256").update(value).digest();
  if (!timingSafeEqual(digest(presented), digest(expected))) {
    throw new OAuthError("invalid_token", "the initial access token is not valid", {
      "WWW-Authenticate": 'Bearer realm="token-authority", error="invalid_token"',
    });
  }
}
