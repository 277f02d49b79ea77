// Discovery documents: authorization server metadata (RFC 8414) = OpenID Provider metadata (Discovery 1.0), the JWKS of the signing keys
// (RFC 7517), and protected resource metadata (RFC 9728). Every URL derives from the issuer.
import { Elysia } from "elysia";
import type { Config, ProtectedResource } from "../config.ts";
import { OAuthError } from "../errors.ts";
import { DPOP_ALGS } from "../oauth/dpop.ts";
import { ALLOWED_ALGS } from "../oauth/keys.ts";
import { supportedClaims } from "../oauth/userinfo.ts";
import { SUPPORTED_GRANT_TYPES } from "../oauth/grants/index.ts";
import { RESPONSE_TYPES, TOKEN_ENDPOINT_AUTH_METHODS } from "../oauth/registration.ts";
import type { Services } from "../services.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { END_SESSION_PATH } from "./end-session.ts";
import { USERINFO_PATH } from "./userinfo.ts";

/** Public, credential-free documents: cacheable, readable from any origin. */
function publicJson(body: unknown): Response {
  return new Response(JSON.stringify(body), {
    headers: {
      "Content-Type": "application/json; charset=utf-8",
      "Cache-Control": "public, max-age=300",
      "Access-Control-Allow-Origin": "*",
    },
  });
}

/**
 * RFC 8414 §2 metadata, consistent with what the endpoints of this server accept — and OpenID
 * Connect Discovery 1.0 §3 metadata: one document, served at both well-known paths (RFC 8414 §2
 * takes OpenID Provider metadata values too), so that the two can never disagree.
 */
export function authorizationServerMetadata(config: Config) {
  const { issuer } = config;
  return {
    issuer,
    authorization_endpoint: `${issuer}/oauth/authorize`,
    token_endpoint: `${issuer}/oauth/token`,
    userinfo_endpoint: `${issuer}${USERINFO_PATH}`,
    // OpenID Connect RP-Initiated Logout 1.0 §2.1.
    end_session_endpoint: `${issuer}${END_SESSION_PATH}`,
    // OpenID Connect Back-Channel Logout 1.0 §2.1: logout tokens carry sid (and sub).
    backchannel_logout_supported: true,
    backchannel_logout_session_supported: true,
    registration_endpoint: `${issuer}/oauth/register`,
    revocation_endpoint: `${issuer}/oauth/revoke`,
    introspection_endpoint: `${issuer}/oauth/introspect`,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    scopes_supported: config.scopes,
    response_types_supported: RESPONSE_TYPES,
    response_modes_supported: ["query"],
    grant_types_supported: SUPPORTED_GRANT_TYPES,
    code_challenge_methods_supported: ["S256"],
    // RFC 9449 §5.1.
    dpop_signing_alg_values_supported: DPOP_ALGS,
    token_endpoint_auth_methods_supported: TOKEN_ENDPOINT_AUTH_METHODS,
    // Public clients revoke their own tokens with client_id alone.
    revocation_endpoint_auth_methods_supported: TOKEN_ENDPOINT_AUTH_METHODS,
    // Introspection is for confidential clients (resource servers) only.
    introspection_endpoint_auth_methods_supported: TOKEN_ENDPOINT_AUTH_METHODS.filter((m) => m !== "none"),
    // RFC 9207: authorization responses carry `iss`.
    authorization_response_iss_parameter_supported: true,
    // OpenID Connect Discovery 1.0 §3.
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: [...ALLOWED_ALGS],
    claims_supported: supportedClaims(config.scopes),
    claims_parameter_supported: false,
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
    prompt_values_supported: ["none", "login", "consent", "select_account"],
    // draft-ietf-oauth-client-id-metadata-document-01 §5: an https URL may be a client_id.
    ...(config.clientIdDocuments.mode === "none" ? {} : { client_id_metadata_document_supported: true }),
  };
}

/** RFC 9728 §2 metadata of one protected resource whose tokens this server issues. */
export function protectedResourceMetadata(config: Config, resource: ProtectedResource) {
  return {
    resource: resource.resource,
    authorization_servers: [config.issuer],
    // MCP authorization (2026-07-28): servers "SHOULD NOT include offline_access in ... Protected
    // Resource Metadata scopes_supported" — refresh tokens are the client's concern, not the resource's.
    scopes_supported: resource.scopes.filter((scope) => scope !== "offline_access"),
    bearer_methods_supported: ["header"],
  };
}

/** RFC 9728 §3.1: the metadata of https://host/path lives at /.well-known/oauth-protected-resource/path. */
function resourceAtPath(all: readonly ProtectedResource[], config: Config, suffix: string): ProtectedResource | undefined {
  if (suffix === "") return all.find((r) => r.resource === config.defaultAudience) ?? all[0];
  return all.find((r) => URL.canParse(r.resource) && new URL(r.resource).pathname.replace(/\/$/, "") === `/${suffix.replace(/\/$/, "")}`);
}

const AS_PATH = "/.well-known/oauth-authorization-server";
const OP_PATH = "/.well-known/openid-configuration";
const JWKS_PATH = "/.well-known/jwks.json";
const PR_PATH = "/.well-known/oauth-protected-resource";

export function discoveryEndpoints({ config, keys, resources }: Services) {
  const metadata = authorizationServerMetadata(config);
  const protectedResource = async (suffix: string) => {
    const resource = resourceAtPath(await resources.all(), config, suffix);
    if (!resource) throw new OAuthError("not_found", "no such protected resource");
    return publicJson(protectedResourceMetadata(config, resource));
  };
  return new Elysia()
    .use(onlyMethods(AS_PATH, ["GET"]))
    .use(onlyMethods(OP_PATH, ["GET"]))
    .use(onlyMethods(JWKS_PATH, ["GET"]))
    .use(onlyMethods(PR_PATH, ["GET"]))
    .get(AS_PATH, () => publicJson(metadata))
    .get(OP_PATH, () => publicJson(metadata))
    .get(JWKS_PATH, () => publicJson(keys.jwks()))
    .get(PR_PATH, () => protectedResource(""))
    .get(`${PR_PATH}/*`, ({ params }) => protectedResource(params["*"]));
}
