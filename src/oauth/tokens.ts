// Token format (not storage): signs access tokens as RFC 9068 JWTs (typ at+jwt) and refresh
// tokens as JWTs of their own type (rt+jwt), and verifies both against this server's keys — or
// reads one without trusting it (`read`), to be authenticated by the digest its session stored
// when it issued it, the signature being checked only where there is none
// (src/oauth/token-pipeline.ts).
import { timingSafeEqual } from "node:crypto";
import type { CryptoKey } from "jose";
import { base64url, CompactSign, compactVerify, decodeProtectedHeader } from "jose";
import type { TokenKind } from "../../db/schema.ts";
import type { KeyStore } from "./keys.ts";
import { ALLOWED_ALGS } from "./keys.ts";

export type { TokenKind };

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
  /**
   * The token family (its authorization grant, or its first session without one): what a
   * session-revoked Security Event names (SSF), so a receiver can tell which tokens died.
   * Absent from tokens issued before it existed.
   */
  sid?: string;
  /** RFC 9449 §6.1: the DPoP key the token is bound to (its RFC 7638 thumbprint). */
  cnf?: { jkt: string };
  /** RFC 9068 §2.2.1 (OpenID Connect grants): when and how the user signed in. */
  auth_time?: number;
  amr?: string[];
  /** Refresh tokens of OpenID Connect grants: the browser sign-in, the `sid` of their ID tokens. */
  bsid?: string;
}

export interface VerifiedToken {
  kind: TokenKind;
  claims: TokenClaims;
  /** True when `exp` has passed (revocation still accepts such a token). */
  expired: boolean;
}

/**
 * A token read but not yet authenticated: well formed, of a type, algorithm, key and issuer of
 * this server, its claims NOT to be trusted — they may only name the session to look at. It is
 * authenticated against that session's stored digest (or by `verify`).
 */
export interface PresentedToken extends VerifiedToken {
  /** SHA-256 of the token (base64url), as sessions store it for the tokens they issued. */
  sha256: string;
}

export class TokenFormatError extends Error {
  override name = "TokenFormatError";
}

export interface TokenService {
  sign(kind: TokenKind, claims: Omit<TokenClaims, "iss">): Promise<string>;
  /** The kid `sign` signs with now (tokens signed in the same turn share it). */
  signingKid(): string;
  /**
   * Verifies signature (against active and retired keys), algorithm (allow-list), `typ`
   * and issuer, then returns the claims. Expiry is reported, not enforced.
   * Throws TokenFormatError for anything that is not a token of this server.
   */
  verify(token: string): Promise<VerifiedToken>;
  /** Every check of `verify` but the signature; throws TokenFormatError like it. */
  read(token: string): Promise<PresentedToken>;
}

/** The digest sessions store of the tokens they issue (db/schema.ts). */
export function tokenSha256(token: string): string {
  // Bun's hasher: 0.7 µs a token here, node:crypto's createHash 1.1–1.3.
  return Bun.CryptoHasher.hash("sha256", token, "base64url") as string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function createTokenService(keys: KeyStore, issuer: string, now: () => number = Date.now): TokenService {
  async function read(token: string): Promise<PresentedToken & { key: CryptoKey }> {
    if (token.length > MAX_TOKEN_LENGTH) throw new TokenFormatError("token too long");
    const parts = token.split(".");
    if (parts.length !== 3) throw new TokenFormatError("not a JWS");
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
    let parsed: unknown;
    try {
      parsed = JSON.parse(decoder.decode(base64url.decode(parts[1]!)));
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
    const expired = claims.exp * 1000 <= now();
    return { kind, claims, expired, sha256: tokenSha256(token), key: verificationKey.key };
  }

  async function signatureHolds(token: string, key: CryptoKey): Promise<boolean> {
    try {
      await compactVerify(token, key, { algorithms: [...ALLOWED_ALGS] });
      return true;
    } catch {
      return false;
    }
  }

  return {
    signingKid: () => keys.signingKey().kid,

    async sign(kind, claims) {
      const { kid, alg, key } = keys.signingKey();
      const payload = encoder.encode(JSON.stringify({ iss: issuer, ...claims }));
      return new CompactSign(payload).setProtectedHeader({ alg, kid, typ: TYP[kind] }).sign(key);
    },

    // (What it answers also holds the verification key: `verify` wants it, nobody else reads it.)
    read,

    async verify(token) {
      const { kind, claims, expired, key } = await read(token);
      // Only with the signature verified are the claims trusted.
      if (!(await signatureHolds(token, key))) throw new TokenFormatError("bad signature");
      return { kind, claims, expired };
    },
  };
}

/** Constant-time comparison of two digests (base64url of SHA-256, 43 characters). */
export function digestsEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
