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
import type { DpopOptions } from "./dpop.ts";
import { DpopProofChecker } from "./dpop.ts";
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
  /**
   * DPoP (RFC 9449): a token bound to a key (cnf.jkt) is accepted only with `Authorization: DPoP`
   * and a proof by that key; a bound token presented as Bearer is refused (§7.2).
   */
  dpop?: DpopOptions;
  fetch?: typeof fetch;
}

export interface AccessTokenVerifier {
  readonly realm: string;
  /** RFC 9728 §2: the metadata document of this resource. */
  readonly resourceMetadata: ProtectedResourceMetadata;
  /** RFC 9728 §3.1: where it is published (derived from `audience`); named in every challenge. */
  readonly resourceMetadataUrl: string;
  /**
   * Verifies the token of an Authorization header (RFC 6750 §2.1, or RFC 9449 §7.1 with
   * `request`: the method, URL and DPoP header a proof is checked against) and the scopes it needs.
   */
  verify(authorization: string | null | undefined, requiredScopes?: readonly string[], request?: RequestFacts): Promise<AccessTokenClaims>;
  /** verify() for a whole request: its Authorization and DPoP headers, method and URL. */
  verifyRequest(request: Request, requiredScopes?: readonly string[]): Promise<AccessTokenClaims>;
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

/** RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" (RFC 9449 §7.1: the same for DPoP). */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const DPOP = /^DPoP +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** What a DPoP proof is checked against. */
export interface RequestFacts {
  method: string;
  url: string;
  /** The DPoP header values (Headers.get joins several with ", "). */
  dpop: string | null | undefined;
}

const proofsOf = (value: string | null | undefined): string[] => (value ? value.split(",").map((part) => part.trim()) : []);
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

  const proofs = new DpopProofChecker(options.dpop, tolerance);

  /** The token, then its binding: a DPoP-bound token only with a proof by its key (`facts`), an unbound one only as Bearer. */
  async function verifyPresented(token: string, requiredScopes: readonly string[], facts: (RequestFacts & { scheme: "Bearer" | "DPoP" }) | undefined) {
    const claims = await verifyToken(token, [], facts?.scheme ?? "Bearer");
    const jkt = (claims.cnf as { jkt?: unknown } | undefined)?.jkt;
    if (facts?.scheme === "DPoP") {
      // RFC 9449 §7.1: the DPoP scheme is for bound tokens, with a proof.
      if (typeof jkt !== "string") throw BearerError.invalidToken("the token is not DPoP-bound: present it as Bearer");
      await proofs.check({ proofs: proofsOf(facts.dpop), method: facts.method, url: facts.url }, token, jkt);
    } else if (jkt !== undefined) {
      // RFC 9449 §7.2: a bound token presented as a bearer token is refused.
      const error = BearerError.invalidToken("the token is DPoP-bound: present it with the DPoP scheme and a proof");
      error.scheme = "DPoP";
      throw error;
    }
    checkScopes(claims, requiredScopes);
    return claims;
  }

  async function verifyToken(token: string, requiredScopes: readonly string[] = [], scheme: "Bearer" | "DPoP" = "Bearer"): Promise<AccessTokenClaims> {
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
      const invalid = BearerError.invalidToken(error instanceof errors.JWTExpired ? "the token has expired" : "the token is not valid here");
      invalid.scheme = scheme;
      throw invalid;
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
      error.algs = proofs.algorithms;
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
    verify: (authorization, requiredScopes = [], request) =>
      checked(requiredScopes, async () => {
        if (!authorization) throw BearerError.missing();
        const bearer = BEARER.exec(authorization);
        if (bearer) return verifyPresented(bearer[1]!, requiredScopes, request && { ...request, scheme: "Bearer" });
        const dpop = DPOP.exec(authorization);
        if (dpop) {
          if (!request) throw BearerError.invalidRequest("a DPoP token needs the request it came with (verifyRequest)");
          return verifyPresented(dpop[1]!, requiredScopes, { ...request, scheme: "DPoP" });
        }
        // Another scheme entirely is "lacking" credentials (RFC 6750 §3.1).
        if (!/^(Bearer|DPoP)\b/i.test(authorization)) throw BearerError.missing();
        throw BearerError.invalidRequest(/^DPoP\b/i.test(authorization) ? "malformed DPoP token" : "malformed bearer token");
      }),
    verifyRequest(request, requiredScopes = []) {
      return this.verify(request.headers.get("authorization"), requiredScopes, { method: request.method, url: request.url, dpop: request.headers.get("dpop") });
    },
    verifyToken: (token, requiredScopes = []) => checked(requiredScopes, () => verifyPresented(token, requiredScopes, undefined)),
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
