// OpenID Connect UserInfo (Core 1.0 §5.3): the claims about the signed-in user that the access
// token's scopes release (§5.4) — `sub` always; `profile`, `email` and `phone` their standard
// claims from the user's profile (src/oauth/profiles.ts). The token must be live and carry
// `openid`; a DPoP-bound one comes with a proof by its key (RFC 9449 §7).
import { OPENID_SCOPE } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { Accounts, User } from "./accounts.ts";
import type { DpopVerifier } from "./dpop.ts";
import { DPOP_ALGS } from "./dpop.ts";
import { parseScope } from "./scopes.ts";
import type { TokenPipeline } from "./token-pipeline.ts";

/** Core §5.4: the claims each scope requests. */
export const SCOPE_CLAIMS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  profile: [
    "name", "family_name", "given_name", "middle_name", "nickname", "preferred_username",
    "profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at",
  ],
  email: ["email", "email_verified"],
  phone: ["phone_number", "phone_number_verified"],
});

/** Every claim this server can release (Discovery 1.0 claims_supported). */
export function supportedClaims(scopes: readonly string[]): string[] {
  return ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "at_hash", "sid", ...scopes.flatMap((scope) => SCOPE_CLAIMS[scope] ?? [])];
}

/** The claims of `user` that `scope` releases. */
export function userClaims(user: User, scope: string): Record<string, unknown> {
  const claims: Record<string, unknown> = { sub: user.id };
  for (const granted of parseScope(scope)) {
    for (const name of SCOPE_CLAIMS[granted] ?? []) {
      const value = name === "updated_at" ? Math.floor(user.updatedAt.getTime() / 1000) : user.profile[name];
      if (value !== undefined) claims[name] = value;
    }
  }
  // §5.1 preferred_username: the user's own username unless the operator set another.
  if (parseScope(scope).includes("profile") && claims.preferred_username === undefined) claims.preferred_username = user.username;
  return claims;
}

export interface UserInfoRequest {
  /** The Authorization header, as sent. */
  authorization: string | null;
  /** The request's DPoP header values. */
  dpop: string[];
  method: string;
  /** This endpoint's public URL (the proof's htu). */
  url: string;
  nonceRequired: boolean;
}

const SCHEME = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i;

export class UserInfo {
  constructor(
    private readonly pipeline: TokenPipeline,
    private readonly accounts: Accounts,
    private readonly dpop: DpopVerifier,
  ) {}

  /** The claims for the token of the request; throws invalid_token / insufficient_scope with their challenge (RFC 6750 §3, RFC 9449 §7.1). */
  async claims(request: UserInfoRequest): Promise<Record<string, unknown>> {
    const match = SCHEME.exec(request.authorization ?? "");
    const scheme = match?.[1]!.toLowerCase() === "dpop" ? "DPoP" : "Bearer";
    const challenge = (error?: string, extra = "") =>
      [scheme === "DPoP" ? `DPoP algs="${DPOP_ALGS.join(" ")}"` : 'Bearer realm="userinfo"', error ? `error="${error}"` : undefined, extra || undefined].filter(Boolean).join(", ");
    const refuse = (code: "invalid_token" | "insufficient_scope", description: string, error: string = code, headers: Record<string, string> = {}) =>
      new OAuthError(code, description, { "WWW-Authenticate": challenge(error, code === "insufficient_scope" ? `scope="${OPENID_SCOPE}"` : ""), ...headers });
    // RFC 6750 §3.1: a request without credentials gets the challenge with no error code.
    if (!match) throw new OAuthError("invalid_token", "an access token is required (Authorization: Bearer or DPoP)", { "WWW-Authenticate": challenge() });
    const token = match[2]!;
    const recognized = await this.pipeline.verify(token, "access_token");
    if (!recognized.ok) throw refuse("invalid_token", "the access token is not valid");
    const { claims } = recognized;
    const bound = claims.cnf?.jkt;
    if (scheme === "DPoP" || bound !== undefined) {
      // RFC 9449 §7.1: a DPoP-bound token is presented with the DPoP scheme and a proof by its key.
      if (bound === undefined) throw refuse("invalid_token", "the access token is not DPoP-bound: present it as Bearer");
      if (scheme !== "DPoP") throw refuse("invalid_token", "the access token is DPoP-bound: present it with the DPoP scheme and a proof");
      if (request.dpop.length === 0) throw refuse("invalid_token", "a DPoP proof is required", "invalid_dpop_proof");
      let jkt: string;
      try {
        ({ jkt } = await this.dpop.check({ headers: request.dpop, method: request.method, url: request.url, nonceRequired: request.nonceRequired, accessToken: token }));
      } catch (error) {
        if (!(error instanceof OAuthError)) throw error;
        throw refuse("invalid_token", error.description ?? "invalid DPoP proof", error.code, error.headers);
      }
      if (jkt !== bound) throw refuse("invalid_token", "the DPoP proof is not signed by the token's key", "invalid_dpop_proof");
    }
    // Core §5.3: UserInfo answers for tokens of an OpenID Connect request.
    if (!parseScope(claims.scope).includes(OPENID_SCOPE)) throw refuse("insufficient_scope", "the access token was not issued for openid");
    const user = await this.accounts.findById(claims.sub);
    if (!user || user.disabledAt !== null) throw refuse("invalid_token", "the access token is not valid");
    return userClaims(user, claims.scope);
  }
}
