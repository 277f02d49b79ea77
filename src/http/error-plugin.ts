// The global error plugin: every failure becomes OAuth JSON (`{error, error_description?}`) with
// Cache-Control: no-store — never a stack trace, never the submitted body. A database that
// cannot do the work right now is 503 temporarily_unavailable, never a silent success.
import { Elysia } from "elysia";
import { isDatabaseUnavailable } from "../../db/failures.ts";
import { OAuthError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";

/** Maps any thrown value to the OAuthError the client sees. */
export function toOAuthError(error: unknown): OAuthError {
  if (error instanceof OAuthError) return error;
  if (isDatabaseUnavailable(error)) return OAuthError.temporarilyUnavailable();
  return OAuthError.serverError();
}

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
