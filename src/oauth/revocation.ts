// Token revocation (RFC 7009): decode the token, pick the session-lookup strategy (hint
// first, then the others), revoke the session's whole family if it belongs to the client.
import type { Database } from "../../db/client.ts";
import { OAuthError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
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
    private readonly metrics?: Pick<Metrics, "revocations">,
  ) {}

  async revoke({ token, tokenTypeHint, clientId }: RevocationRequest): Promise<RevokeOutcome> {
    const hint = parseHint(tokenTypeHint);
    this.log.info("token.revocation.requested", { client_id: clientId, hint: hint ?? null });
    const refuse = (error: unknown): never => {
      if (!(error instanceof TokenFormatError)) throw error;
      this.log.info("token.revocation.undecodable", { client_id: clientId, reason: error.message });
      this.metrics?.revocations.inc({ outcome: "undecodable" });
      throw OAuthError.unsupportedTokenType("the token is not a token of this server");
    };
    let presented;
    try {
      // Expiry is not a reason to refuse: an expired access token still names a live family.
      presented = await this.tokens.read(token);
    } catch (error) {
      return refuse(error);
    }
    // Its claims are not trusted yet: the revocation takes effect only on the session that
    // stored this token's digest when it issued it. A session that cannot vouch for the token
    // (issued before digests were stored) answers `unverified`: then the signature is checked
    // and the revocation made again as of a verified token (sha256 null).
    let sha256: string | null = presented.sha256;
    const verifySignature = async () => {
      await this.tokens.verify(token).catch(refuse);
      sha256 = null;
    };
    const { jti } = presented.claims;
    // The hint orders the search; without one, the token's own typ does, so a correctly
    // typed token costs one indexed lookup.
    for (const strategy of lookupOrder(hint ?? presented.kind)) {
      let result = await strategy.revoke(this.database, jti, clientId, "revoked_by_client", sha256);
      if (result.outcome === "unverified") {
        await verifySignature();
        result = await strategy.revoke(this.database, jti, clientId, "revoked_by_client", null);
      }
      // (A revocation of a verified token, sha256 null, is never `unverified`.)
      if (result.outcome === "unknown" || result.outcome === "unverified") continue;
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
      this.metrics?.revocations.inc({ outcome: result.outcome });
      return result.outcome;
    }
    // No session knows the token: it is answered like any invalid token (RFC 7009 §2.2) only
    // if it is one of ours; anything else is refused, as before the lookup.
    if (sha256 !== null) await verifySignature();
    this.log.info("token.revocation.completed", { client_id: clientId, outcome: "unknown", family_revoked: 0 });
    this.metrics?.revocations.inc({ outcome: "unknown" });
    return "unknown";
  }
}
