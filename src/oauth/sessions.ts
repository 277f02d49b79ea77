// OAuth sessions (TokenAuthority's state machine: created → refreshed | revoked | expired):
// minting a session with its tokens, refresh-token rotation, redeeming an authorization code,
// and revoking sessions. The tokens of a session are signed before its statement, so their
// digests are stored with it (db/stores/sessions.ts holds every statement).
import { randomUUID } from "node:crypto";
import type { Client } from "../../db/schema.ts";
import type { RedeemOutcome, RotateOutcome, SessionFilter, SessionStore } from "../../db/stores/sessions.ts";
import type { AuthorizationCodes, CodeRedemption, OidcGrant } from "./authorization-codes.ts";
import type { ProofRecord } from "./dpop.ts";
import { replayedProof } from "./dpop.ts";
import type { Authentication, IdTokens } from "./id-tokens.ts";
import { parseScope } from "./scopes.ts";
import type { Metrics } from "../metrics.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import type { TokenClaims, TokenService } from "./tokens.ts";
import { tokenSha256 } from "./tokens.ts";

export type { RedeemOutcome, RotateOutcome, SessionFilter };

export interface SessionDefaults {
  accessTokenTtl: number;
  refreshTokenTtl: number;
}

export interface MintRequest {
  client: Client;
  subject: string;
  scope: string;
  audience: string[];
  /** The authorization grant the session descends from; absent for client_credentials. */
  grantId?: string;
  /** RFC 6749 §4.4.3: client_credentials gets no refresh token. */
  withRefreshToken: boolean;
  /** The DPoP binding (RFC 9449 §6): the access token's, and the refresh token's if it is bound too. */
  binding?: Binding;
  /** The DPoP proof to record against replay (RFC 9449 §11.1) in the session's INSERT. */
  proof?: ProofRecord;
}

/** The DPoP key thumbprint tokens are bound to: always the access token, the refresh token when `refresh`. */
export interface Binding {
  jkt: string;
  refresh: boolean;
}

const accessCnf = (binding: Binding | undefined) => (binding ? { cnf: { jkt: binding.jkt } } : {});
const refreshCnf = (binding: Binding | undefined) => (binding?.refresh ? { cnf: { jkt: binding.jkt } } : {});
/** RFC 9449 §5: the token type of a bound access token is DPoP. */
const tokenTypeOf = (binding: Binding | undefined): IssuedTokens["tokenType"] => (binding ? "DPoP" : "Bearer");

export interface IssuedTokens {
  sessionId: string;
  /** RFC 9449 §5: DPoP for a bound access token. */
  tokenType: "Bearer" | "DPoP";
  accessToken: string;
  refreshToken: string | undefined;
  expiresIn: number;
  scope: string;
  /** OpenID Connect Core §3.1.3.3, §12.2: for a grant whose scope holds openid. */
  idToken?: string;
}

export interface RotateRequest {
  /**
   * The claims of the presented refresh token, as read: they become the child's tokens' (signed
   * before the rotation, so that their digests are stored with the child) and are trusted only
   * once its session proves it (`sha256`, its stored digest) or its signature held (`sha256` null).
   */
  claims: TokenClaims;
  sha256: string | null;
  client: Client;
  /** Requested scope; empty or absent keeps the session's scope. */
  scope: string | undefined;
  /** Seconds in which a retried refresh replaces its child instead of revoking the family. */
  graceSeconds: number;
  /** The new tokens' DPoP binding (a bound refresh token keeps its key: the caller checked the proof's). */
  binding?: Binding;
}

export type RotateResult =
  | { outcome: "rotated" | "replaced"; tokens: IssuedTokens }
  | { outcome: Exclude<RotateOutcome, "rotated" | "replaced">; sessionId: string | null };

export type RedeemResult =
  | { outcome: "redeemed"; tokens: IssuedTokens; grantId: string }
  | { outcome: Exclude<RedeemOutcome, "redeemed"> | "dpop_mismatch"; grantId: string | null; revokedCount: number };

const newJti = () => randomUUID();

/** The `aud` claim of a session's tokens: its one audience as a string, else the array. */
const audClaim = (audience: string[]): string | string[] => (audience.length === 1 ? audience[0]! : audience);

const seconds = (at: Date | string | null) => Math.floor(new Date(at!).getTime() / 1000);

/** What the tokens of an OpenID Connect grant carry of its sign-in: auth_time and amr in both, the sign-in in the refresh token. */
function signInClaims(authentication: Authentication | undefined): { common: Pick<TokenClaims, "auth_time" | "amr">; refresh: Pick<TokenClaims, "bsid"> } {
  if (!authentication) return { common: {}, refresh: {} };
  const { authTime, amr, sid } = authentication;
  return {
    common: { ...(authTime !== undefined ? { auth_time: authTime } : {}), ...(amr?.length ? { amr } : {}) },
    refresh: sid !== undefined ? { bsid: sid } : {},
  };
}

/** The sign-in a refresh token of an OpenID Connect grant carries (trusted once its session vouched for it). */
function authenticationOf(claims: TokenClaims): Authentication {
  return {
    ...(typeof claims.auth_time === "number" ? { authTime: claims.auth_time } : {}),
    ...(Array.isArray(claims.amr) ? { amr: claims.amr } : {}),
    ...(typeof claims.bsid === "string" ? { sid: claims.bsid } : {}),
  };
}

const isOpenId = (scope: string) => parseScope(scope).includes("openid");

export class SessionService {
  constructor(
    private readonly store: SessionStore,
    private readonly tokens: TokenService,
    private readonly codes: AuthorizationCodes,
    private readonly defaults: SessionDefaults,
    private readonly now: () => number = Date.now,
    private readonly notifier?: RevocationNotifier,
    private readonly metrics?: Pick<Metrics, "sessionsRevoked">,
    private readonly idTokens?: IdTokens,
  ) {}

  /** Counts sessions revoked for a reason (the feed's entries carry it too). */
  counted(reason: string, sessions: number): void {
    if (sessions > 0) this.metrics?.sessionsRevoked.inc({ reason }, sessions);
  }

  /** Creates a session row and signs its tokens (concurrent mints share one INSERT). */
  async mint(request: MintRequest): Promise<IssuedTokens> {
    const { client, subject, scope, audience } = request;
    const accessTtl = client.accessTokenTtl ?? this.defaults.accessTokenTtl;
    const refreshTtl = client.refreshTokenTtl ?? this.defaults.refreshTokenTtl;
    const iat = Math.floor(this.now() / 1000);
    const accessJti = newJti();
    const refreshJti = request.withRefreshToken ? newJti() : undefined;
    const id = randomUUID();
    const { accessToken, refreshToken, kid } = await this.signTokens(
      { sub: subject, aud: audClaim(audience), iat, client_id: client.clientId, scope, sid: request.grantId ?? id },
      { exp: iat + accessTtl, jti: accessJti, ...accessCnf(request.binding) },
      refreshJti ? { exp: iat + refreshTtl, jti: refreshJti, ...refreshCnf(request.binding) } : undefined,
    );
    const sessionId = await this.store.insert({
      id,
      grantId: request.grantId ?? null,
      clientId: client.clientId,
      subject,
      scope,
      audience,
      accessTokenJti: accessJti,
      refreshTokenJti: refreshJti ?? null,
      accessTokenSha256: tokenSha256(accessToken),
      refreshTokenSha256: refreshToken ? tokenSha256(refreshToken) : null,
      accessExpiresAt: new Date((iat + accessTtl) * 1000),
      refreshExpiresAt: refreshJti ? new Date((iat + refreshTtl) * 1000) : null,
      signingKid: kid,
      dpopProof: request.proof ?? null,
    });
    // RFC 9449 §11.1: the proof's record was there already, so no session was inserted.
    if (sessionId === undefined) throw replayedProof();
    return { sessionId, tokenType: tokenTypeOf(request.binding), accessToken, refreshToken, expiresIn: accessTtl, scope };
  }

  /**
   * Refresh-token rotation (one round trip, see ta_rotate_session): the presented session
   * becomes `refreshed` and a child session with new JTIs is created; reuse of a refresh token
   * revokes its family. Exactly one of several concurrent rotations of one token succeeds.
   * `unverified`: the session holds no digest of the presented token (or another) and nothing
   * happened; the caller checks the signature and rotates again without a digest.
   */
  async rotate(request: RotateRequest): Promise<RotateResult> {
    const { client, claims } = request;
    const accessTtl = client.accessTokenTtl ?? this.defaults.accessTokenTtl;
    const iat = Math.floor(this.now() / 1000);
    // The child keeps its parent's subject, audience and refresh expiry; the tokens are signed
    // with them now, and the rotation checks its session agrees (`signed`).
    const { sub, aud, sid } = claims;
    const signIn = signInClaims(authenticationOf(claims));
    const common = { sub, aud, iat, client_id: client.clientId, scope: request.scope || claims.scope, ...(sid ? { sid } : {}), ...signIn.common };
    const access = { exp: iat + accessTtl, jti: newJti(), ...accessCnf(request.binding) };
    const refresh = { exp: claims.exp, jti: newJti(), ...refreshCnf(request.binding), ...signIn.refresh };
    const { accessToken, refreshToken, kid } = await this.signTokens(common, access, refresh);
    const row = await this.store.rotate({
      refresh_jti: claims.jti,
      client_id: client.clientId,
      scope: request.scope ?? "",
      new_access_jti: access.jti,
      new_refresh_jti: refresh.jti,
      access_expires_at: new Date(access.exp * 1000).toISOString(),
      grace_seconds: request.graceSeconds,
      presented_sha256: request.sha256,
      subject: sub,
      audience: Array.isArray(aud) ? aud : [aud],
      signed_scope: common.scope,
      refresh_expires_at: new Date(refresh.exp * 1000).toISOString(),
      access_sha256: tokenSha256(accessToken),
      refresh_sha256: tokenSha256(refreshToken!),
      signing_kid: kid,
    });
    // Rotation retires the old access token, reuse revokes the family: both reach the feed.
    if (row.outcome === "rotated" || row.outcome === "replaced" || row.outcome === "reuse") this.notifier?.committed();
    if (row.outcome === "reuse") this.counted("refresh_token_reuse", 1);
    if (row.outcome !== "rotated" && row.outcome !== "replaced") {
      return { outcome: row.outcome, sessionId: row.new_session_id };
    }
    const scope = row.scope!;
    // A session edited since the presented token was issued: the child's tokens are signed
    // from what the rotation returned, and the child holds no digests of them.
    const signed = row.signed
      ? { accessToken, refreshToken }
      : await this.signTokens(
          { sub: row.subject!, aud: audClaim(row.audience ?? []), iat, client_id: client.clientId, scope, ...(sid ? { sid } : {}), ...signIn.common },
          { exp: seconds(row.access_expires_at), jti: access.jti, ...accessCnf(request.binding) },
          { exp: seconds(row.refresh_expires_at), jti: refresh.jti, ...refreshCnf(request.binding), ...signIn.refresh },
        );
    const tokens = { accessToken: signed.accessToken, refreshToken: signed.refreshToken };
    // OpenID Connect Core §12.2: the new ID token keeps iss, sub, aud and auth_time, has no nonce.
    const idToken = this.idTokenFor(client, row.subject!, scope, signed.accessToken, { authentication: authenticationOf(claims) });
    return {
      outcome: row.outcome,
      tokens: { sessionId: row.new_session_id!, tokenType: tokenTypeOf(request.binding), ...tokens, expiresIn: accessTtl, scope, ...(idToken ? { idToken: await idToken } : {}) },
    };
  }

  /**
   * Redeems an authorization code (RFC 6749 §4.1.3) in one round trip (ta_redeem_code): the
   * grant's compare-and-set and the session's INSERT. The tokens are signed beforehand from what
   * the code says it grants, which the statement checks against the grant (`signed`); a code that
   * says nothing (issued by an earlier version) gets its tokens signed from what it answers. A
   * reused code revokes every session the grant produced (RFC 6749 §4.1.2).
   */
  async redeemCode(request: CodeRedemption & { binding?: Binding }): Promise<RedeemResult> {
    const { client } = request;
    const accessTtl = client.accessTokenTtl ?? this.defaults.accessTokenTtl;
    const refreshTtl = client.refreshTokenTtl ?? this.defaults.refreshTokenTtl;
    const iat = Math.floor(this.now() / 1000);
    const opened = await this.codes.open(request);
    const signIn = signInClaims(opened.oidc?.authentication);
    const access = { exp: iat + accessTtl, jti: newJti(), ...accessCnf(request.binding) };
    const refresh = { exp: iat + refreshTtl, jti: newJti(), ...refreshCnf(request.binding), ...signIn.refresh };
    // RFC 9449 §10: a code bound to a key (dpop_jkt) is redeemed only with a proof by that key.
    if (opened.dpopJkt !== undefined && opened.dpopJkt !== request.binding?.jkt) {
      return { outcome: "dpop_mismatch", grantId: null, revokedCount: 0 };
    }
    const predicted = opened.predicted;
    const signedBefore = predicted
      ? await this.signTokens(
          { sub: predicted.subject, aud: audClaim(predicted.audience), iat, client_id: client.clientId, scope: predicted.scope, ...(predicted.family ? { sid: predicted.family } : {}), ...signIn.common },
          access,
          refresh,
        )
      : undefined;
    // The ID token is signed while the statement runs (it needs the access token, not the row).
    const oidc = opened.oidc ?? { authentication: {} };
    const idTokenBefore = predicted && signedBefore ? this.idTokenFor(client, predicted.subject, predicted.scope, signedBefore.accessToken, oidc) : undefined;
    const statement = this.store.redeemCode({
      ...opened.item,
      access_jti: access.jti,
      refresh_jti: refresh.jti,
      access_expires_at: new Date(access.exp * 1000).toISOString(),
      refresh_expires_at: new Date(refresh.exp * 1000).toISOString(),
      signed_subject: predicted?.subject ?? null,
      signed_scope: predicted?.scope ?? null,
      signed_audience: predicted?.audience ?? null,
      access_sha256: signedBefore ? tokenSha256(signedBefore.accessToken) : null,
      refresh_sha256: signedBefore?.refreshToken ? tokenSha256(signedBefore.refreshToken) : null,
      signing_kid: signedBefore?.kid ?? this.tokens.signingKid(),
    });
    const [row, idTokenSigned] = await Promise.all([statement, idTokenBefore]);
    if (row.outcome === "reuse" && row.revoked_count > 0) {
      this.notifier?.committed();
      this.counted("authorization_code_reuse", Number(row.revoked_count));
    }
    if (row.outcome !== "redeemed") return { outcome: row.outcome, grantId: row.grant_id, revokedCount: Number(row.revoked_count) };
    const scope = row.scope!;
    // The family is the grant: a code sealed before codes named it is signed again with it.
    const asPredicted = row.signed && signedBefore && predicted?.family === row.grant_id;
    const { accessToken, refreshToken } = asPredicted
      ? signedBefore
      : await this.signTokens({ sub: row.subject!, aud: audClaim(row.audience ?? []), iat, client_id: client.clientId, scope, sid: row.grant_id!, ...signIn.common }, access, refresh);
    const idToken = asPredicted ? idTokenSigned : await this.idTokenFor(client, row.subject!, scope, accessToken, oidc);
    return {
      outcome: "redeemed",
      grantId: row.grant_id!,
      tokens: { sessionId: row.session_id!, tokenType: tokenTypeOf(request.binding), accessToken, refreshToken, expiresIn: accessTtl, scope, ...(idToken ? { idToken } : {}) },
    };
  }

  /**
   * Revokes every live session the filter selects and, with each, the live session of its
   * authorization grant (race-safe, see ta_revoke_sessions). One transaction.
   */
  async revoke(filter: SessionFilter, reason: string): Promise<number> {
    const count = await this.store.revokeSessions(filter, reason);
    if (count > 0) this.notifier?.committed();
    this.counted(reason, count);
    return count;
  }

  /** OpenID Connect Core §3.1.3.3: an ID token with the tokens of a grant whose scope holds openid. */
  private idTokenFor(client: Client, subject: string, scope: string, accessToken: string, oidc: OidcGrant): Promise<string> | undefined {
    if (!this.idTokens || !isOpenId(scope)) return undefined;
    return this.idTokens.sign({ clientId: client.clientId, subject, accessToken, authentication: oidc.authentication, ...(oidc.nonce !== undefined ? { nonce: oidc.nonce } : {}) });
  }

  /** Signs a session's access token and, with `refresh`, its refresh token: the same claims but `exp` and `jti`. */
  private async signTokens(
    common: Omit<TokenClaims, "iss" | "exp" | "jti">,
    access: Pick<TokenClaims, "exp" | "jti" | "cnf">,
    refresh: Pick<TokenClaims, "exp" | "jti" | "cnf" | "bsid"> | undefined,
  ): Promise<{ accessToken: string; refreshToken: string | undefined; kid: string }> {
    // Both are signed in this turn, with the key active now (the session records it).
    const kid = this.tokens.signingKid();
    const [accessToken, refreshToken] = await Promise.all([
      this.tokens.sign("access_token", { ...common, ...access }),
      refresh ? this.tokens.sign("refresh_token", { ...common, ...refresh }) : undefined,
    ]);
    return { accessToken, refreshToken, kid };
  }
}
