// OpenID Connect ID tokens (Core 1.0 §2, §3.1.3.6): signed with the server's signing key
// (ES256), for the client as audience; and reading one back as an `id_token_hint` (§3.1.2.1) or
// the hint of RP-Initiated Logout. An ID token is never accepted as an access or refresh token:
// its `typ` is JWT, which src/oauth/tokens.ts does not recognise.
import { createHash } from "node:crypto";
import { CompactSign, compactVerify, decodeProtectedHeader } from "jose";
import type { KeyStore } from "./keys.ts";
import { ALLOWED_ALGS } from "./keys.ts";

/** How the user was authenticated for a grant: what its ID tokens say of it. */
export interface Authentication {
  /** Core §2 auth_time (seconds): when the user signed in; absent when a trusted proxy named them. */
  authTime?: number;
  /** The browser sign-in (Back-Channel Logout 1.0 §2.1 `sid`). */
  sid?: string;
  /** RFC 8176 methods: `pwd` for the built-in password sign-in. */
  amr?: string[];
}

export interface IdTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  auth_time?: number;
  nonce?: string;
  amr?: string[];
  at_hash?: string;
  sid?: string;
  azp?: string;
}

export interface IdTokenRequest {
  clientId: string;
  subject: string;
  /** The access token issued with it, for at_hash. */
  accessToken: string;
  authentication: Authentication;
  /** Core §3.1.2.1: echoed unchanged; absent from ID tokens issued at refresh (§12.2). */
  nonce?: string;
}

/** ID tokens live as long as an access token would, at most an hour. */
export const MAX_ID_TOKEN_TTL = 3600;
const MAX_HINT_LENGTH = 4096;

/**
 * Core §3.1.3.6 at_hash: "the base64url encoding of the left-most half of the hash of the octets
 * of the ASCII representation of the access_token value, where the hash algorithm used is the hash
 * algorithm used in the alg Header Parameter" (SHA-256 for ES256).
 */
export function atHash(accessToken: string): string {
  return createHash("sha256").update(accessToken, "ascii").digest().subarray(0, 16).toString("base64url");
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class IdTokens {
  constructor(
    private readonly keys: KeyStore,
    private readonly issuer: string,
    private readonly ttlSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** An ID token for the client (its only audience, so no azp: Core §2). */
  sign(request: IdTokenRequest): Promise<string> {
    const { kid, alg, key } = this.keys.signingKey();
    const iat = Math.floor(this.now() / 1000);
    const { authTime, sid, amr } = request.authentication;
    const claims: IdTokenClaims = {
      iss: this.issuer,
      sub: request.subject,
      aud: request.clientId,
      exp: iat + Math.min(this.ttlSeconds, MAX_ID_TOKEN_TTL),
      iat,
      ...(authTime !== undefined ? { auth_time: authTime } : {}),
      ...(request.nonce !== undefined ? { nonce: request.nonce } : {}),
      ...(amr?.length ? { amr } : {}),
      at_hash: atHash(request.accessToken),
      ...(sid !== undefined ? { sid } : {}),
    };
    return new CompactSign(encoder.encode(JSON.stringify(claims))).setProtectedHeader({ alg, kid, typ: "JWT" }).sign(key);
  }

  /**
   * The claims of an ID token this server signed (any of its keys, retired ones included), or
   * undefined. Expiry is not checked: a hint "MAY have expired" (Core §3.1.2.1; RP-Initiated
   * Logout 1.0 §2). Nothing else about it is trusted before its signature holds.
   */
  async read(token: string): Promise<IdTokenClaims | undefined> {
    if (token.length > MAX_HINT_LENGTH || token.split(".").length !== 3) return undefined;
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return undefined;
    }
    if (header.typ !== "JWT" || !header.alg || !ALLOWED_ALGS.includes(header.alg)) return undefined;
    const verification = await this.keys.verificationKey(header.kid);
    if (!verification || verification.alg !== header.alg) return undefined;
    let claims: IdTokenClaims;
    try {
      const { payload } = await compactVerify(token, verification.key, { algorithms: [...ALLOWED_ALGS] });
      claims = JSON.parse(decoder.decode(payload));
    } catch {
      return undefined;
    }
    if (typeof claims !== "object" || claims === null || claims.iss !== this.issuer || typeof claims.sub !== "string") return undefined;
    // (Access and refresh tokens of the same key were refused by their typ above.)
    if (typeof claims.aud !== "string" && !Array.isArray(claims.aud)) return undefined;
    return claims;
  }
}

/** Whether an ID token was issued to `clientId` (Core §2: aud contains the client_id). */
export function issuedTo(claims: IdTokenClaims, clientId: string): boolean {
  return Array.isArray(claims.aud) ? claims.aud.includes(clientId) : claims.aud === clientId;
}
