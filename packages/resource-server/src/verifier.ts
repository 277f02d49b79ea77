// Verifies bearer access tokens at a resource server: locally against the authorization
// server's JWKS as RFC 9068 §4 requires, then against revocation — through the revocation
// feed or the Shared Signals transmitter (in-memory deny-lists), or through introspection with
// a short cache — then scopes.
// Its challenges point at the resource's RFC 9728 metadata.
import type { JWTPayload } from "jose";
import { createRemoteJWKSet, customFetch, errors, jwtVerify } from "jose";
import type { ClientCredentials } from "./client-credentials.ts";
import { BearerError } from "./errors.ts";
import { RevocationFeedClient } from "./feed-client.ts";
import { IntrospectionClient } from "./introspection-client.ts";
import { SharedSignalsClient } from "./ssf-client.ts";
import type { ProtectedResourceMetadata, ResourceMetadataOptions } from "./metadata.ts";
import { protectedResourceMetadata, protectedResourceMetadataUrl } from "./metadata.ts";

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
  | ({ mode: "introspection"; url?: string; cacheTtlMs?: number } & ClientCredentials)
  | ({
      /** Shared Signals (SSF 1.0 poll): the client needs the client_credentials grant and the `ssf` scope. */
      mode: "ssf";
      tokenEndpoint?: string;
      configurationUrl?: string;
      maxStalenessMs?: number;
      tokenLifetimeSeconds?: number;
      onError?: (error: unknown) => void;
    } & ClientCredentials);

export interface VerifierOptions {
  /** The authorization server's issuer identifier (the `iss` of its tokens). */
  issuer: string;
  /**
   * This resource's identifier, an http(s) URL: it must be in the token's `aud` (compared after
   * RFC 3986 normalisation), and its RFC 9728 metadata is published at the URL derived from it.
   */
  audience: string;
  /** What this resource's metadata document says besides `resource` and `authorization_servers`. */
  resource?: ResourceMetadataOptions;
  /** Default `${issuer}/.well-known/jwks.json`. */
  jwksUri?: string;
  /** Default ["ES256"]: what the authorization server signs with. Never "none". */
  algorithms?: string[];
  /** An unknown `kid` refetches the key set, at most this often (seconds). Default 5. */
  jwksRefreshCooldownSeconds?: number;
  /** Tolerated clock difference for exp/iat, in seconds. Default 5. */
  clockToleranceSeconds?: number;
  /**
   * How revocation is honoured — feed: default URL `${issuer}/oauth/revocations`; introspection:
   * `${issuer}/oauth/introspect`; ssf: a poll stream of the server's Shared Signals transmitter
   * (by token family and user: an access token a refresh retired stays valid until its exp).
   */
  revocation: RevocationMode;
  /** The realm of WWW-Authenticate challenges. Default "api". */
  realm?: string;
  fetch?: typeof fetch;
}

export interface AccessTokenVerifier {
  readonly realm: string;
  /** RFC 9728 §2: the metadata document of this resource. */
  readonly resourceMetadata: ProtectedResourceMetadata;
  /** RFC 9728 §3.1: where it is published (derived from `audience`); named in every challenge. */
  readonly resourceMetadataUrl: string;
  /** Verifies the token of an Authorization header (RFC 6750 §2.1) and the scopes it needs. */
  verify(authorization: string | null | undefined, requiredScopes?: readonly string[]): Promise<AccessTokenClaims>;
  verifyToken(token: string, requiredScopes?: readonly string[]): Promise<AccessTokenClaims>;
  /**
   * Throws 403 insufficient_scope unless a verified token has every one of these scopes (for a
   * need known only after verification, such as the tool an MCP request calls).
   */
  requireScopes(claims: AccessTokenClaims, requiredScopes: readonly string[]): void;
  /** Resolves once revocation can be checked (feed and ssf modes: the backlog has arrived). */
  ready(): Promise<void>;
  /** Stops following revocations (ssf mode: deletes this process's stream). */
  close(): Promise<void>;
}

/** RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
/** RFC 9068 §2.2: the claims every access token carries. */
const REQUIRED_CLAIMS = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"];

/** RFC 3986 §6.2.2-6.2.3, as the authorization server issues `aud`: `http://Host:80` is `http://host/`. */
const normalizeResource = (resource: string): string => (URL.canParse(resource) ? new URL(resource).href : resource);

const scopesOf = (claims: AccessTokenClaims): string[] => (typeof claims.scope === "string" ? claims.scope.split(" ").filter(Boolean) : []);

/**
 * RFC 6750 §3.1: insufficient_scope when the token lacks a scope the request needs. The challenge
 * asks for the token's scopes and the missing ones together: MCP clients ask for exactly the
 * challenge's scope when they step up, so naming only the missing ones would lose the others.
 */
function checkScopes(claims: AccessTokenClaims, requiredScopes: readonly string[]): void {
  const granted = scopesOf(claims);
  if (requiredScopes.some((scope) => !granted.includes(scope))) throw BearerError.insufficientScope([...new Set([...granted, ...requiredScopes])]);
}

export function createAccessTokenVerifier(options: VerifierOptions): AccessTokenVerifier {
  const issuer = options.issuer.replace(/\/$/, "");
  const realm = options.realm ?? "api";
  const resourceMetadataUrl = protectedResourceMetadataUrl(options.audience);
  const resourceMetadata = protectedResourceMetadata(options.audience, issuer, options.resource);
  const audience = normalizeResource(options.audience);
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
  const ssf =
    revocation.mode === "ssf"
      ? new SharedSignalsClient({ ...revocation, issuer, audience, jwks, algorithms, fetch: options.fetch })
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
    // RFC 9068 §4: "The resource server MUST validate that the aud claim contains a resource
    // indicator value corresponding to an identifier the resource server expects for itself" —
    // compared after normalisation, the form the authorization server issues (jose compares strings).
    const audiences: unknown[] = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.some((aud) => typeof aud === "string" && normalizeResource(aud) === audience)) {
      throw BearerError.invalidToken("the token is not valid here");
    }
    if (feed) {
      if (feed.isRevoked(claims.jti)) throw BearerError.invalidToken("the token has been revoked");
    } else if (ssf) {
      if (ssf.isRevoked(claims)) throw BearerError.invalidToken("the token has been revoked");
    } else if (introspection && !(await introspection.isActive(token, claims.jti, claims.exp))) {
      throw BearerError.invalidToken("the token is not active");
    }
    checkScopes(claims, requiredScopes);
    return claims;
  }

  /**
   * Names this resource in a failure's challenge: its realm, its metadata URL (RFC 9728 §5.1)
   * and, unless insufficient_scope named its own, the scopes the request needs.
   */
  function challenged(error: unknown, requiredScopes: readonly string[]): unknown {
    if (error instanceof BearerError) {
      error.realm = realm;
      error.resourceMetadata = resourceMetadataUrl;
      error.scope ??= requiredScopes;
    }
    return error;
  }

  async function checked(requiredScopes: readonly string[], work: () => Promise<AccessTokenClaims>): Promise<AccessTokenClaims> {
    try {
      return await work();
    } catch (error) {
      throw challenged(error, requiredScopes);
    }
  }

  return {
    realm,
    resourceMetadata,
    resourceMetadataUrl,
    verify: (authorization, requiredScopes = []) =>
      checked(requiredScopes, async () => {
        if (!authorization) throw BearerError.missing();
        const match = BEARER.exec(authorization);
        if (!match) {
          // Another scheme entirely is "lacking" Bearer credentials (RFC 6750 §3.1).
          if (!/^Bearer\b/i.test(authorization)) throw BearerError.missing();
          throw BearerError.invalidRequest("malformed bearer token");
        }
        return verifyToken(match[1]!, requiredScopes);
      }),
    verifyToken: (token, requiredScopes = []) => checked(requiredScopes, () => verifyToken(token, requiredScopes)),
    requireScopes(claims, requiredScopes) {
      try {
        checkScopes(claims, requiredScopes);
      } catch (error) {
        throw challenged(error, requiredScopes);
      }
    },
    async ready() {
      await feed?.ready;
      await ssf?.ready;
    },
    async close() {
      feed?.close();
      await ssf?.close();
    },
  };
}
