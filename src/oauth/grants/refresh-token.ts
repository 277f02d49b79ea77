// grant_type=refresh_token (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): the presented
// session becomes `refreshed` and a child session with new JTIs is issued; presenting a
// refresh token that was already used (or belongs to another client) is reuse and revokes the
// family; one whose family is already revoked is refused without a theft report. The work is one SQL function, see SessionService.rotate.
import { t } from "elysia";
import { OAuthError } from "../../errors.ts";
import { knownScope } from "../scopes.ts";
import { MAX_TOKEN_LENGTH, TokenFormatError } from "../tokens.ts";
import { defineGrant } from "./grant.ts";
import { scopeParam } from "./params.ts";

export const refreshTokenGrant = defineGrant({
  name: "refresh_token",
  params: t.Object({ refresh_token: t.String({ minLength: 1, maxLength: MAX_TOKEN_LENGTH }), scope: scopeParam }),
  async handle(params, context) {
    const { services, client, dpop } = context;
    const { config, log, sessions, pipeline } = services;
    const invalid = (error: unknown): never => {
      if (error instanceof TokenFormatError) throw OAuthError.invalidGrant("invalid refresh token");
      throw error;
    };
    const presented = await pipeline.present(params.refresh_token).catch(invalid);
    if (presented.kind !== "refresh_token") throw OAuthError.invalidGrant("not a refresh token");
    if (presented.expired) throw OAuthError.invalidGrant("refresh token expired");
    // RFC 9449 §5: a bound refresh token is used only with a proof by its key. Its cnf is trusted
    // once the rotation finds the token's digest in its session (a token with another cnf has
    // another digest), and nothing changes before that.
    const bound = presented.claims.cnf?.jkt;
    if (bound !== undefined && dpop === undefined) throw new OAuthError("invalid_dpop_proof", "the refresh token is bound to a DPoP key: a proof is required");
    if (bound !== undefined && dpop!.jkt !== bound) throw OAuthError.invalidGrant("the refresh token is bound to another DPoP key");
    // An unbound refresh token stays unbound; the new access token is bound to the proof's key, if any.
    const binding = dpop ? { jkt: dpop.jkt, refresh: bound !== undefined } : undefined;
    // RFC 6749 §6: the scope may be narrowed, never widened (checked against the session in SQL).
    const scope = params.scope === undefined ? undefined : knownScope(params.scope, config.scopes);
    // The token is trusted once its session shows it issued it (its digest); a session that
    // cannot (issued before digests were stored) leaves it to its signature.
    const result = await presented
      .vouched((sha256) => sessions.rotate({ claims: presented.claims, sha256, client, scope, graceSeconds: config.refreshReuseGrace, binding }))
      .catch(invalid);
    switch (result.outcome) {
      case "rotated":
      case "replaced":
        log.info("token.refresh.rotated", {
          client_id: client.clientId,
          session_id: result.tokens.sessionId,
          outcome: result.outcome,
        });
        return result.tokens;
      case "reuse":
        services.metrics.refreshReuse.inc();
        log.warn("security.token.theft_detected", {
          client_id: client.clientId,
          token_client_id: presented.claims.client_id,
          session_id: result.sessionId,
        });
        throw OAuthError.invalidGrant("refresh token already used or revoked");
      case "revoked":
        // The family was revoked before (by the user, an operator, a reuse): the client has not
        // heard yet. Not a replay of a rotated token, so not reported as theft.
        log.info("token.refresh.refused", { client_id: client.clientId, session_id: result.sessionId, reason: "revoked" });
        throw OAuthError.invalidGrant("refresh token revoked");
      case "invalid_scope":
        throw OAuthError.invalidScope("the requested scope exceeds the granted scope");
      case "expired":
        throw OAuthError.invalidGrant("refresh token expired");
      case "unknown":
      case "unverified":
        throw OAuthError.invalidGrant("invalid refresh token");
    }
  },
});
