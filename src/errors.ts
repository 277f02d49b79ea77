// One OAuth error type (RFC 6749 §5.2 plus the codes of RFC 7009, 7591, 8707 and 6750)
// and the Elysia plugin that turns every failure into `{error, error_description?}` JSON.
import { DrizzleQueryError } from "drizzle-orm";
import { Elysia } from "elysia";
import type { Logger } from "./log.ts";
import { describeError } from "./log.ts";

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
  | "not_found"
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
  not_found: 404,
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

export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "Content-Type": "application/json; charset=utf-8",
      "Cache-Control": "no-store",
      Pragma: "no-cache",
      ...headers,
    },
  });
}

/** Connection-level failures of postgres.js, Node's sockets and PGlite. */
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "57014", // query_canceled (statement_timeout)
  "55P03", // lock_not_available (lock_timeout)
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
  "40001", // serialization_failure: retryable
  "40P01", // deadlock_detected: retryable
]);

/** SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention), 58 (system). */
const UNAVAILABLE_CLASSES = /^(08|53|57|58)[0-9A-Z]{3}$/;

/** The error and its causes (drizzle wraps the driver's error), outermost first. */
function* causes(error: unknown): Generator<unknown> {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) yield e;
}

/** Failures of one statement, not of the connection: its parts, run alone, may succeed. */
const STATEMENT_FAILURES = new Set(["57014", "55P03", "40001", "40P01"]);

/** True for an error that means "the database could not do it right now" (→ 503). */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (const e of causes(error)) {
    const { code, severity } = e as { code?: unknown; severity?: unknown };
    if (typeof code === "string" && (UNAVAILABLE_CODES.has(code) || UNAVAILABLE_CLASSES.test(code))) return true;
    // A FATAL error ends the connection (e.g. "database does not allow connections").
    if (severity === "FATAL" || severity === "PANIC") return true;
    if (e instanceof Error && /PGlite is closed|database is closing|connection.*(closed|terminated)/i.test(e.message)) return true;
  }
  return false;
}

/** True when the database is out of reach (not when one statement failed on a lock, a timeout or a deadlock). */
export function isConnectionFailure(error: unknown): boolean {
  if (!isDatabaseUnavailable(error)) return false;
  for (const e of causes(error)) if (STATEMENT_FAILURES.has((e as { code?: unknown }).code as string)) return false;
  return true;
}

/** Maps any thrown value to the OAuthError the client sees. */
export function toOAuthError(error: unknown): OAuthError {
  if (error instanceof OAuthError) return error;
  if (isDatabaseUnavailable(error)) return OAuthError.temporarilyUnavailable();
  return OAuthError.serverError();
}

/** Reduces an error to something loggable: no stack, no SQL parameters. */
export function errorForLog(error: unknown): string {
  const cause = (error as { cause?: unknown })?.cause;
  // DrizzleQueryError's message carries the query parameters; log the driver's error instead.
  // (Its `name` is plain "Error": only instanceof recognises it.)
  if (error instanceof DrizzleQueryError) return cause ? describeError(cause) : "DrizzleQueryError: query failed";
  return describeError(error);
}

/**
 * The global error plugin: every error becomes OAuth JSON with Cache-Control: no-store,
 * never a stack trace and never the submitted body.
 */
export function errorPlugin(log: Logger) {
  return new Elysia({ name: "errors" }).onError({ as: "global" }, ({ code, error }) => {
    switch (code) {
      case "VALIDATION":
        return OAuthError.invalidRequest(validationMessage(error)).toResponse();
      case "PARSE":
        if ((error as { cause?: unknown }).cause instanceof OAuthError) {
          return ((error as { cause?: unknown }).cause as OAuthError).toResponse();
        }
        return OAuthError.invalidRequest(
          "the body must be application/x-www-form-urlencoded, without repeated parameters",
        ).toResponse();
      case "NOT_FOUND":
        return new OAuthError("not_found", "no such endpoint").toResponse();
      case "INVALID_COOKIE_SIGNATURE":
        return OAuthError.invalidRequest("invalid cookie").toResponse();
    }
    const oauthError = toOAuthError(error);
    if (oauthError.code === "server_error" || oauthError.code === "temporarily_unavailable") {
      log.error(oauthError.code === "server_error" ? "http.error.unexpected" : "db.unavailable", {
        error: errorForLog(error),
      });
    }
    return oauthError.toResponse();
  });
}

/** Names the offending field without echoing its value. */
function validationMessage(error: unknown): string {
  const first = (error as { all?: Array<{ path?: string; summary?: string; message?: string }> }).all?.[0];
  const field = first?.path?.replace(/^\//, "");
  return field ? `invalid or missing parameter: ${field}` : "invalid request parameters";
}
