// Verifies bearer access tokens at a resource server: locally against the authorization
// server's JWKS as RFC 9068 §4 requires, then against revocation — through the revocation
// feed (an in-memory deny-list) or through introspection with a short cache.
import type { JWTPayload } from "jose";
import { createRemoteJWKSet, customFetch, errors, jwtVerify } from "jose";
import type { ClientCredentials } from "./client-credentials.ts";
import { BearerError } from "./errors.ts";
import { RevocationFeedClient } from "./feed-client.ts";
import { IntrospectionClient } from "./introspection-client.ts";

export interface AccessTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope?: string;
}

export type RevocationMode =
  | ({ mode: "feed"; url?: string; maxStalenessMs?: number; onError?: (error: unknown) => void } & ClientCredentials)
  | ({ mode: "introspection"; url?: string; cacheTtlMs?: number } & ClientCredentials);

export interface VerifierOptions {
  /** The authorization server's issuer identifier (the `iss` of its tokens). */
  issuer: string;
  /** This resource's identifier: it must be in the token's `aud`. */
  audience: string;
  /** Default `${issuer}/.well-known/jwks.json`. */
  jwksUri?: string;
  /** Default ["ES256"]: what the authorization server signs with. Never "none". */
  algorithms?: string[];
  /** An unknown `kid` refetches the key set, at most this often (seconds). Default 5. */
  jwksRefreshCooldownSeconds?: number;
  /** Tolerated clock difference for exp/iat, in seconds. Default 5. */
  clockToleranceSeconds?: number;
  /** How revocation is honoured (feed: default URL `${issuer}/oauth/revocations`; introspection: `${issuer}/oauth/introspect`). */
  revocation: RevocationMode;
  /** The realm of WWW-Authenticate challenges. Default "api". */
  realm?: string;
  fetch?: typeof fetch;
}

export interface AccessTokenVerifier {
  readonly realm: string;
  /** Verifies the token of an Authorization header (RFC 6750 §2.1) and the scopes it needs. */
  verify(authorization: string | null | undefined, requiredScopes?: readonly string[]): Promise<AccessTokenClaims>;
  verifyToken(token: string, requiredScopes?: readonly string[]): Promise<AccessTokenClaims>;
  /** Resolves once revocation can be checked (feed mode: the backlog has arrived). */
  ready(): Promise<void>;
  close(): void;
}

/** RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
/** RFC 9068 §2.2: the claims every access token carries. */
const REQUIRED_CLAIMS = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"];

export function createAccessTokenVerifier(options: VerifierOptions): AccessTokenVerifier {
  const issuer = options.issuer.replace(/\/$/, "");
  const realm = options.realm ?? "api";
  const tolerance = options.clockToleranceSeconds ?? 5;
  const algorithms = options.algorithms ?? ["ES256"];
  if (algorithms.some((alg) => alg.toLowerCase() === "none")) throw new Error('the "none" algorithm cannot be allowed');
  const jwks = createRemoteJWKSet(new URL(options.jwksUri ?? `${issuer}/.well-known/jwks.json`), {
    // An unknown kid (after a key rotation) refetches the set at most this often.
    cooldownDuration: (options.jwksRefreshCooldownSeconds ?? 5) * 1000,
    ...(options.fetch ? { [customFetch]: options.fetch } : {}),
  });
  const { revocation } = options;
  const feed =
    revocation.mode === "feed"
      ? new RevocationFeedClient({ ...revocation, url: revocation.url ?? `${issuer}/oauth/revocations`, retainSeconds: tolerance, fetch: options.fetch })
      : undefined;
  const introspection =
    revocation.mode === "introspection"
      ? new IntrospectionClient({ ...revocation, url: revocation.url ?? `${issuer}/oauth/introspect`, fetch: options.fetch })
      : undefined;

  async function verifyToken(token: string, requiredScopes: readonly string[] = []): Promise<AccessTokenClaims> {
    let claims: AccessTokenClaims;
    try {
      // RFC 9068 §4: typ at+jwt (or application/at+jwt), iss, aud, exp, and only allowed algorithms.
      ({ payload: claims } = (await jwtVerify(token, jwks, {
        issuer,
        audience: options.audience,
        algorithms,
        typ: "at+jwt",
        clockTolerance: tolerance,
        requiredClaims: REQUIRED_CLAIMS,
      })) as { payload: AccessTokenClaims });
    } catch (error) {
      // The key set could not be fetched (network error, timeout, not 200): not the token's fault.
      if (!(error instanceof errors.JOSEError) || error instanceof errors.JWKSTimeout || error.code === "ERR_JOSE_GENERIC") {
        throw BearerError.unavailable("the authorization server's keys cannot be fetched");
      }
      throw BearerError.invalidToken(error instanceof errors.JWTExpired ? "the token has expired" : "the token is not valid here");
    }
    if (feed) {
      if (feed.isRevoked(claims.jti)) throw BearerError.invalidToken("the token has been revoked");
    } else if (introspection && !(await introspection.isActive(token, claims.jti, claims.exp))) {
      throw BearerError.invalidToken("the token is not active");
    }
    // RFC 6750 §3.1: insufficient_scope when the token lacks a scope the request needs.
    const granted = new Set(typeof claims.scope === "string" ? claims.scope.split(" ") : []);
    if (requiredScopes.some((scope) => !granted.has(scope))) throw BearerError.insufficientScope(requiredScopes);
    return claims;
  }

  /** Runs a verification, naming this resource's realm in whatever challenge it fails with. */
  async function inRealm(work: () => Promise<AccessTokenClaims>): Promise<AccessTokenClaims> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof BearerError) error.realm = realm;
      throw error;
    }
  }

  return {
    realm,
    verify: (authorization, requiredScopes = []) =>
      inRealm(() => {
        if (!authorization) throw BearerError.missing();
        const match = BEARER.exec(authorization);
        if (!match) {
          // Another scheme entirely is "lacking" Bearer credentials (RFC 6750 §3.1).
          if (!/^Bearer\b/i.test(authorization)) throw BearerError.missing();
          throw BearerError.invalidRequest("malformed bearer token");
        }
        return verifyToken(match[1]!, requiredScopes);
      }),
    verifyToken: (token, requiredScopes) => inRealm(() => verifyToken(token, requiredScopes)),
    async ready() {
      await feed?.ready;
    },
    close() {
      feed?.close();
    },
  };
}
