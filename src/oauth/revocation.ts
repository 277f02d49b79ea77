// Token revocation (RFC 7009): decode the token, pick the session-lookup strategy (hint
// first, then the others), revoke the session's whole family if it belongs to the client.
import type { Database } from "../../db/client.ts";
import { OAuthError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { RevokeOutcome } from "./sessions.ts";
import { lookupOrder, parseHint } from "./sessions.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import type { TokenService } from "./tokens.ts";
import { TokenFormatError } from "./tokens.ts";

export interface RevocationRequest {
  token: string;
  tokenTypeHint: string | undefined;
  clientId: string;
}

export class RevocationService {
  constructor(
    private readonly database: Database,
    private readonly tokens: TokenService,
    private readonly log: Logger,
    private readonly notifier?: RevocationNotifier,
  ) {}

  async revoke({ token, tokenTypeHint, clientId }: RevocationRequest): Promise<RevokeOutcome> {
    const hint = parseHint(tokenTypeHint);
    this.log.info("token.revocation.requested", { client_id: clientId, hint: hint ?? null });
    let verified;
    try {
      // Expiry is not a reason to refuse: an expired access token still names a live family.
      verified = await this.tokens.verify(token);
    } catch (error) {
      if (!(error instanceof TokenFormatError)) throw error;
      this.log.info("token.revocation.undecodable", { client_id: clientId, reason: error.message });
      throw OAuthError.unsupportedTokenType("the token is not a token of this server");
    }
    // The hint orders the search; without one, the token's own typ does, so a correctly
    // typed token costs one indexed lookup.
    for (const strategy of lookupOrder(hint ?? verified.kind)) {
      const result = await strategy.revoke(this.database, verified.claims.jti, clientId, "revoked_by_client");
      if (result.outcome === "unknown") continue;
      if (result.outcome === "other_client") {
        this.log.warn("security.revocation.client_mismatch", { client_id: clientId, session_id: result.sessionId });
      } else {
        if (result.outcome === "revoked") this.notifier?.committed();
        this.log.info("token.revocation.completed", {
          client_id: clientId,
          session_id: result.sessionId,
          outcome: result.outcome,
          family_revoked: result.revokedCount,
        });
      }
      return result.outcome;
    }
    this.log.info("token.revocation.completed", { client_id: clientId, outcome: "unknown", family_revoked: 0 });
    return "unknown";
  }
}
