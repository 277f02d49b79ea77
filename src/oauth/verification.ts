// The server's own verification of an access token: type, issuer, expiry, authenticity (the
// digest its session stored, or the signature), and — so that no endpoint can forget it —
// that its session is still live (not revoked, not rotated away). Introspection and the
// resource-server helpers build on this.
import type { Database } from "../../db/client.ts";
import type { FoundSession } from "./sessions.ts";
import { sessionLookup } from "./sessions.ts";
import type { TokenClaims, TokenKind, TokenService } from "./tokens.ts";
import { TokenFormatError } from "./tokens.ts";

export type VerificationFailure = "malformed" | "expired" | "inactive" | "wrong_kind";

export type VerificationResult =
  | { ok: true; kind: TokenKind; claims: TokenClaims; session: FoundSession }
  | { ok: false; reason: VerificationFailure };

/**
 * The one rule for whether a session still backs a token of `kind`: status `created` (not
 * revoked, not rotated away) and that token's expiry not passed. Introspection uses it too.
 */
export function sessionState(session: FoundSession, kind: TokenKind, now: number): "live" | "inactive" | "expired" {
  if (session.status !== "created") return "inactive";
  const expiresAt = kind === "access_token" ? session.accessExpiresAt : session.refreshExpiresAt;
  return expiresAt && expiresAt.getTime() > now ? "live" : "expired";
}

export class TokenVerifier {
  constructor(
    private readonly database: Database,
    private readonly tokens: TokenService,
    private readonly now: () => number = Date.now,
  ) {}

  /** Verifies a token and checks its session is live; `kind` restricts the accepted type. */
  async verify(token: string, kind?: TokenKind): Promise<VerificationResult> {
    let presented;
    try {
      presented = await this.tokens.read(token);
    } catch (error) {
      if (error instanceof TokenFormatError) return { ok: false, reason: "malformed" };
      throw error;
    }
    if (kind && presented.kind !== kind) return { ok: false, reason: "wrong_kind" };
    if (presented.expired) return { ok: false, reason: "expired" };
    const strategy = sessionLookup[presented.kind];
    const session = await strategy.find(this.database, presented.claims.jti);
    if (!session) return { ok: false, reason: "inactive" };
    // Only now are the claims trusted: the token is the one this session issued, or signed.
    if (!(await this.tokens.authenticate(token, presented, strategy.storedDigest(session)))) {
      return { ok: false, reason: "malformed" };
    }
    const state = sessionState(session, presented.kind, this.now());
    if (state !== "live") return { ok: false, reason: state };
    return { ok: true, kind: presented.kind, claims: presented.claims, session };
  }
}
