// The server's own verification of an access token: signature, type, issuer, expiry, and —
// so that no endpoint can forget it — that its session is still live (not revoked, not
// rotated away). Introspection and the resource-server helpers build on this.
import type { Database } from "../../db/client.ts";
import type { Session } from "../../db/schema.ts";
import { sessionLookup } from "./sessions.ts";
import type { TokenClaims, TokenKind, TokenService } from "./tokens.ts";
import { TokenFormatError } from "./tokens.ts";

export type VerificationFailure = "malformed" | "expired" | "inactive" | "wrong_kind";

export type VerificationResult =
  | { ok: true; kind: TokenKind; claims: TokenClaims; session: Session }
  | { ok: false; reason: VerificationFailure };

/**
 * The one rule for whether a session still backs a token of `kind`: status `created` (not
 * revoked, not rotated away) and that token's expiry not passed. Introspection uses it too.
 */
export function sessionState(session: Session, kind: TokenKind, now: number): "live" | "inactive" | "expired" {
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
    let verified;
    try {
      verified = await this.tokens.verify(token);
    } catch (error) {
      if (error instanceof TokenFormatError) return { ok: false, reason: "malformed" };
      throw error;
    }
    if (kind && verified.kind !== kind) return { ok: false, reason: "wrong_kind" };
    if (verified.expired) return { ok: false, reason: "expired" };
    const session = await sessionLookup[verified.kind].find(this.database, verified.claims.jti);
    if (!session) return { ok: false, reason: "inactive" };
    const state = sessionState(session, verified.kind, this.now());
    if (state !== "live") return { ok: false, reason: state };
    return { ok: true, kind: verified.kind, claims: verified.claims, session };
  }
}
