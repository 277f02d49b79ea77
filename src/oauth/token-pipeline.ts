// The one pipeline that recognises a presented token, for every caller — revocation (RFC 7009),
// introspection (RFC 7662), the refresh grant and the server's own verification:
//   1. read it without trust (src/oauth/tokens.ts): our format, algorithm, key, type, issuer;
//   2. find its session through the strategy map keyed by token kind (the hint, else the
//      token's own type, orders the search; the other kinds follow);
//   3. authenticate it: byte for byte the token its session stored the digest of, or — for a
//      session that stored none — a valid signature;
//   4. the session's state: live, rotated away or revoked, expired.
// Changes made in one SQL statement (revocation, rotation) take the digest into the statement,
// which answers `unverified` when the session cannot vouch for the token; the signature is then
// checked and the change made again as of a verified token (`PresentedToken.vouched`).
import type { FoundSession, RevokeOutcome, SessionStore } from "../../db/stores/sessions.ts";
import { storedDigest } from "../../db/stores/sessions.ts";
import type { TokenClaims, TokenKind, TokenService } from "./tokens.ts";
import { digestsEqual, TokenFormatError } from "./tokens.ts";

export interface RevokeResult {
  /** `unverified`: the session holds no digest of the token, or another; nothing was done. */
  outcome: RevokeOutcome | "unverified";
  sessionId: string | null;
  revokedCount: number;
}

/**
 * How to find (and revoke) the session of a token of one kind: by the jti column of that kind.
 * One entry per token kind; adding a kind means adding one entry.
 */
export interface SessionLookupStrategy {
  readonly kind: TokenKind;
  find(store: SessionStore, jti: string): Promise<FoundSession | undefined>;
  /** The digest the session stored of its token of this kind (null before migration 0007). */
  storedDigest(session: FoundSession): string | null;
  /**
   * Finds the session, checks it belongs to `clientId`, revokes its family: one round trip at
   * most, shared with the revocations made at the same time. With `sha256` (a token whose
   * signature was not checked) only a session that stored that digest is revoked; `null` means
   * the caller verified the token's signature.
   */
  revoke(store: SessionStore, jti: string, clientId: string, reason: string, sha256: string | null): Promise<RevokeResult>;
}

function strategyFor(kind: TokenKind): SessionLookupStrategy {
  return {
    kind,
    find: (store, jti) => store.findByJti(kind, jti),
    storedDigest: (session) => storedDigest(session, kind),
    revoke: (store, jti, clientId, reason, sha256) =>
      store
        .revokeToken({ kind, jti, client_id: clientId, reason, sha256 })
        .then((row) => ({ outcome: row.outcome, sessionId: row.session_id, revokedCount: Number(row.revoked_count) })),
  };
}

export const sessionLookup: Readonly<Record<TokenKind, SessionLookupStrategy>> = Object.freeze({
  access_token: strategyFor("access_token"),
  refresh_token: strategyFor("refresh_token"),
});

/** Each kind's lookup order, made once (it is asked for on every revocation and introspection). */
const LOOKUP_ORDERS = Object.fromEntries(
  Object.values(sessionLookup).map((first) => [
    first.kind,
    Object.freeze([first, ...Object.values(sessionLookup).filter((s) => s !== first)]),
  ]),
) as Readonly<Record<TokenKind, readonly SessionLookupStrategy[]>>;

/**
 * The order in which to try the strategies: the preferred kind first, then the others
 * (RFC 7009 §2.1: if the hinted lookup fails the server MUST extend its search).
 */
export function lookupOrder(preferred: TokenKind): readonly SessionLookupStrategy[] {
  return LOOKUP_ORDERS[preferred];
}

/** Parses a `token_type_hint`; an unrecognised value is treated as absent (RFC 7009 §2.2). */
export function parseHint(hint: string | undefined): TokenKind | undefined {
  return hint === "access_token" || hint === "refresh_token" ? hint : undefined;
}

/**
 * The one rule for whether a session still backs a token of `kind`: status `created` (not
 * revoked, not rotated away) and that token's expiry not passed.
 */
export function sessionState(session: FoundSession, kind: TokenKind, now: number): "live" | "inactive" | "expired" {
  if (session.status !== "created") return "inactive";
  const expiresAt = kind === "access_token" ? session.accessExpiresAt : session.refreshExpiresAt;
  return expiresAt && expiresAt.getTime() > now ? "live" : "expired";
}

/**
 * A token read but not yet trusted: its claims may only name the session to look at, until its
 * session vouches for it (its stored digest) or its signature holds.
 */
export class PresentedToken {
  /** The digest to offer its session; null once the signature was checked. */
  private digest: string | null;

  constructor(
    private readonly tokens: TokenService,
    readonly token: string,
    readonly kind: TokenKind,
    readonly claims: TokenClaims,
    /** True when `exp` has passed (revocation still accepts such a token). */
    readonly expired: boolean,
    sha256: string,
  ) {
    this.digest = sha256;
  }

  /** Its SHA-256 (base64url), as sessions store the tokens they issued. */
  get sha256(): string | null {
    return this.digest;
  }

  get signatureChecked(): boolean {
    return this.digest === null;
  }

  /** Checks the signature once; throws TokenFormatError when it does not hold. */
  async verifySignature(): Promise<void> {
    if (this.digest === null) return;
    await this.tokens.verify(this.token);
    this.digest = null;
  }

  /** Whether it is the token its session issued: the stored digest, or its signature when there is none. */
  async authenticate(stored: string | null): Promise<boolean> {
    if (stored !== null && this.digest !== null) return digestsEqual(this.digest, stored);
    try {
      await this.verifySignature();
      return true;
    } catch (error) {
      if (error instanceof TokenFormatError) return false;
      throw error;
    }
  }

  /**
   * Runs a change the database makes only for a token its session vouches for: with the
   * digest first; when the session cannot vouch for it (`unverified`), once the signature holds
   * (else TokenFormatError), again as of a verified token — which is never `unverified`.
   */
  vouched<R extends { outcome: string }>(change: (sha256: string | null) => Promise<R>): Promise<R> {
    // A then-chain, not an async function: this runs on every revocation and rotation.
    return change(this.digest).then((result) => {
      if (result.outcome !== "unverified" || this.digest === null) return result;
      return this.verifySignature().then(() => change(null));
    });
  }
}

export type RecognitionFailure = "malformed" | "expired" | "unknown" | "inactive" | "wrong_kind";

export type Recognition =
  | { ok: true; kind: TokenKind; claims: TokenClaims; session: FoundSession }
  | { ok: false; reason: RecognitionFailure };

export class TokenPipeline {
  constructor(
    private readonly tokens: TokenService,
    private readonly sessions: SessionStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** Step 1: reads a token without trusting it; throws TokenFormatError for anything not ours. */
  async present(token: string): Promise<PresentedToken> {
    const { kind, claims, expired, sha256 } = await this.tokens.read(token);
    return new PresentedToken(this.tokens, token, kind, claims, expired, sha256);
  }

  /**
   * Steps 1–4 for a token to describe or accept: its live session, or why there is none. The
   * hint (RFC 7662 §2.1) orders the search, which goes on through every kind.
   */
  async recognize(token: string, options: { hint?: TokenKind; kind?: TokenKind } = {}): Promise<Recognition> {
    let presented: PresentedToken;
    try {
      presented = await this.present(token);
    } catch (error) {
      if (error instanceof TokenFormatError) return { ok: false, reason: "malformed" };
      throw error;
    }
    if (options.kind && presented.kind !== options.kind) return { ok: false, reason: "wrong_kind" };
    if (presented.expired) return { ok: false, reason: "expired" };
    const { kind, claims } = presented;
    for (const strategy of lookupOrder(options.hint ?? kind)) {
      const session = await strategy.find(this.sessions, claims.jti);
      if (!session) continue;
      // The column that holds the jti names the token's kind; it must agree with the typ.
      if (strategy.kind !== kind) return { ok: false, reason: "unknown" };
      // Only now are the claims trusted: the token is the one this session issued, or signed.
      if (!(await presented.authenticate(strategy.storedDigest(session)))) return { ok: false, reason: "malformed" };
      // Revoked, rotated away (refreshed) or expired sessions back no live token.
      const state = sessionState(session, kind, this.now());
      if (state !== "live") return { ok: false, reason: state };
      return { ok: true, kind, claims, session };
    }
    return { ok: false, reason: "unknown" };
  }

  /** The server's own acceptance of a token: live, and of `kind` when given. */
  verify(token: string, kind?: TokenKind): Promise<Recognition> {
    return this.recognize(token, { kind });
  }
}
