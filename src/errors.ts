// One OAuth error type (RFC 6749 §5.2 plus the codes of RFC 7009, 7591, 8707, 6750, 9449 and OpenID Connect Core §3.1.2.6): a code,
// the status it implies, an optional description, and its JSON response (src/http/error-plugin.ts
// turns every failure into one).
import { jsonResponse } from "./http/responses.ts";

export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "invalid_scope"
  | "access_denied"
  | "unsupported_response_type"
  | "unsupported_token_type"
  | "invalid_client_metadata"
  | "invalid_redirect_uri"
  | "invalid_target"
  | "invalid_token"
  | "insufficient_scope"
  | "invalid_dpop_proof"
  | "use_dpop_nonce"
  | "login_required"
  | "consent_required"
  | "interaction_required"
  | "request_not_supported"
  | "request_uri_not_supported"
  | "registration_not_supported"
  | "not_found"
  | "conflict"
  | "method_not_allowed"
  | "payload_too_large"
  | "uri_too_long"
  | "header_fields_too_large"
  | "too_many_requests"
  | "temporarily_unavailable"
  | "server_error";

const STATUS: Record<OAuthErrorCode, number> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  access_denied: 403,
  unsupported_response_type: 400,
  unsupported_token_type: 400,
  invalid_client_metadata: 400,
  invalid_redirect_uri: 400,
  invalid_target: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  // RFC 9449 §5, §8: at the token endpoint, 400 like the other token errors.
  invalid_dpop_proof: 400,
  use_dpop_nonce: 400,
  // OpenID Connect Core §3.1.2.6: authorization errors, answered at the redirect URI.
  login_required: 400,
  consent_required: 400,
  interaction_required: 400,
  request_not_supported: 400,
  request_uri_not_supported: 400,
  registration_not_supported: 400,
  not_found: 404,
  conflict: 409,
  method_not_allowed: 405,
  payload_too_large: 413,
  uri_too_long: 414,
  header_fields_too_large: 431,
  too_many_requests: 429,
  temporarily_unavailable: 503,
  server_error: 500,
};

export class OAuthError extends Error {
  override name = "OAuthError";
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(
    readonly code: OAuthErrorCode,
    readonly description?: string,
    headers: Record<string, string> = {},
  ) {
    super(description ? `${code}: ${description}` : code);
    this.status = STATUS[code];
    this.headers = headers;
  }

  static invalidRequest = (description?: string) => new OAuthError("invalid_request", description);
  static invalidClient = (description?: string, headers?: Record<string, string>) =>
    new OAuthError("invalid_client", description, headers);
  static invalidGrant = (description?: string) => new OAuthError("invalid_grant", description);
  static unauthorizedClient = (description?: string) => new OAuthError("unauthorized_client", description);
  static unsupportedGrantType = (description?: string) => new OAuthError("unsupported_grant_type", description);
  static invalidScope = (description?: string) => new OAuthError("invalid_scope", description);
  static invalidTarget = (description?: string) => new OAuthError("invalid_target", description);
  static unsupportedTokenType = (description?: string) => new OAuthError("unsupported_token_type", description);
  static invalidClientMetadata = (description?: string) => new OAuthError("invalid_client_metadata", description);
  static invalidRedirectUri = (description?: string) => new OAuthError("invalid_redirect_uri", description);
  static tooManyRequests = (retryAfterSeconds: number) =>
    new OAuthError("too_many_requests", "too many attempts, try again later", {
      "Retry-After": String(Math.max(1, Math.ceil(retryAfterSeconds))),
    });
  static temporarilyUnavailable = (description = "the database is unavailable, try again shortly") =>
    new OAuthError("temporarily_unavailable", description, { "Retry-After": "1" });
  static serverError = () => new OAuthError("server_error", "internal error");

  toResponse(): Response {
    const body: { error: OAuthErrorCode; error_description?: string } = { error: this.code };
    if (this.description) body.error_description = this.description;
    return jsonResponse(body, this.status, this.headers);
  }
}
