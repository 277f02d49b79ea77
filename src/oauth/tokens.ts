// Token format (not storage): signs access tokens as RFC 9068 JWTs (typ at+jwt) and refresh
// tokens as JWTs of their own type (rt+jwt), and verifies both against this server's keys.
import { CompactSign, compactVerify, decodeProtectedHeader } from "jose";
import type { KeyStore } from "./keys.ts";
import { ALLOWED_ALGS } from "./keys.ts";

export type TokenKind = "access_token" | "refresh_token";

const TYP: Record<TokenKind, string> = { access_token: "at+jwt", refresh_token: "rt+jwt" };
const KIND_BY_TYP = new Map<string, TokenKind>([
  ["at+jwt", "access_token"],
  ["application/at+jwt", "access_token"],
  ["rt+jwt", "refresh_token"],
]);

/** No token this server issues is longer; longer input is refused before any parsing. */
export const MAX_TOKEN_LENGTH = 4096;

export interface TokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope: string;
}

export interface VerifiedToken {
  kind: TokenKind;
  claims: TokenClaims;
  /** True when `exp` has passed (revocation still accepts such a token). */
  expired: boolean;
}

export class TokenFormatError extends Error {
  override name = "TokenFormatError";
}

export interface TokenService {
  sign(kind: TokenKind, claims: Omit<TokenClaims, "iss">): Promise<string>;
  /**
   * Verifies signature (against active and retired keys), algorithm (allow-list), `typ`
   * and issuer, then returns the claims. Expiry is reported, not enforced.
   * Throws TokenFormatError for anything that is not a token of this server.
   */
  verify(token: string): Promise<VerifiedToken>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function createTokenService(keys: KeyStore, issuer: string, now: () => number = Date.now): TokenService {
  return {
    async sign(kind, claims) {
      const { kid, alg, key } = keys.signingKey();
      const payload = encoder.encode(JSON.stringify({ iss: issuer, ...claims }));
      return new CompactSign(payload).setProtectedHeader({ alg, kid, typ: TYP[kind] }).sign(key);
    },

    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH) throw new TokenFormatError("token too long");
      let header: ReturnType<typeof decodeProtectedHeader>;
      try {
        header = decodeProtectedHeader(token);
      } catch {
        throw new TokenFormatError("not a JWS");
      }
      if (!header.alg || !ALLOWED_ALGS.includes(header.alg)) throw new TokenFormatError("algorithm not allowed");
      const kind = typeof header.typ === "string" ? KIND_BY_TYP.get(header.typ.toLowerCase()) : undefined;
      if (!kind) throw new TokenFormatError("unknown token type");
      const verificationKey = await keys.verificationKey(header.kid);
      if (!verificationKey || verificationKey.alg !== header.alg) throw new TokenFormatError("unknown key");
      let payload: Uint8Array;
      try {
        ({ payload } = await compactVerify(token, verificationKey.key, { algorithms: [...ALLOWED_ALGS] }));
      } catch {
        throw new TokenFormatError("bad signature");
      }
      // Only now, with the signature verified, are the claims trusted.
      let parsed: unknown;
      try {
        parsed = JSON.parse(decoder.decode(payload));
      } catch {
        throw new TokenFormatError("payload is not JSON");
      }
      // RFC 7519 §7.2: the claims set must be a JSON object (`null` or `[]` parse too).
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        throw new TokenFormatError("payload is not a JSON object");
      }
      const claims = parsed as TokenClaims;
      if (claims.iss !== issuer) throw new TokenFormatError("issuer mismatch");
      if (typeof claims.jti !== "string" || claims.jti === "" || typeof claims.exp !== "number") {
        throw new TokenFormatError("missing claims");
      }
      return { kind, claims, expired: claims.exp * 1000 <= now() };
    },
  };
}
