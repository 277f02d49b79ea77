// Token revocation (RFC 7009): recognise the token (src/oauth/token-pipeline.ts), try the
// session-lookup strategies (hint first, then the others), and revoke the session's whole family
// if it belongs to the client.
import type { SessionStore } from "../../db/stores/sessions.ts";
import { OAuthError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import type { PresentedToken, RevokeResult, TokenPipeline } from "./token-pipeline.ts";
import { lookupOrder, parseHint } from "./token-pipeline.ts";
import { TokenFormatError } from "./tokens.ts";

export interface RevocationRequest {
  token: string;
  tokenTypeHint: string | undefined;
  clientId: string;
}

export type RevocationOutcome = Exclude<RevokeResult["outcome"], "unverified">;

export interface RevocationDeps {
  pipeline: TokenPipeline;
  store: SessionStore;
  log: Logger;
  notifier?: RevocationNotifier;
  metrics?: Pick<Metrics, "revocations" | "sessionsRevoked">;
}

export class RevocationService {
  constructor(private readonly deps: RevocationDeps) {}

  async revoke({ token, tokenTypeHint, clientId }: RevocationRequest): Promise<RevocationOutcome> {
    const { pipeline, store, log, notifier, metrics } = this.deps;
    const hint = parseHint(tokenTypeHint);
    log.info("token.revocation.requested", { client_id: clientId, hint: hint ?? null });
    const refuse = (error: unknown): never => {
      if (!(error instanceof TokenFormatError)) throw error;
      log.info("token.revocation.undecodable", { client_id: clientId, reason: error.message });
      metrics?.revocations.inc({ outcome: "undecodable" });
      throw OAuthError.unsupportedTokenType("the token is not a token of this server");
    };
    let presented: PresentedToken;
    try {
      // Expiry is not a reason to refuse: an expired access token still names a live family.
      presented = await pipeline.present(token);
    } catch (error) {
      return refuse(error);
    }
    const { jti } = presented.claims;
    // The hint orders the search; without one, the token's own typ does, so a correctly
    // typed token costs one indexed lookup. The revocation takes effect only on the session
    // that vouches for the token (its stored digest), or once its signature holds.
    for (const strategy of lookupOrder(hint ?? presented.kind)) {
      let result: RevokeResult;
      try {
        result = await presented.vouched((sha256) => strategy.revoke(store, jti, clientId, "revoked_by_client", sha256));
      } catch (error) {
        return refuse(error);
      }
      if (result.outcome === "unknown" || result.outcome === "unverified") continue;
      if (result.outcome === "revoked") metrics?.sessionsRevoked.inc({ reason: "revoked_by_client" }, result.revokedCount);
      if (result.outcome === "other_client") {
        log.warn("security.revocation.client_mismatch", { client_id: clientId, session_id: result.sessionId });
      } else {
        if (result.outcome === "revoked") notifier?.committed();
        log.info("token.revocation.completed", {
          client_id: clientId,
          session_id: result.sessionId,
          outcome: result.outcome,
          family_revoked: result.revokedCount,
        });
      }
      metrics?.revocations.inc({ outcome: result.outcome });
      return result.outcome;
    }
    // No session knows the token: it is answered like any invalid token (RFC 7009 §2.2) only
    // if it is one of ours; anything else is refused, as before the lookup.
    try {
      await presented.verifySignature();
    } catch (error) {
      return refuse(error);
    }
    log.info("token.revocation.completed", { client_id: clientId, outcome: "unknown", family_revoked: 0 });
    metrics?.revocations.inc({ outcome: "unknown" });
    return "unknown";
  }
}
