// Token introspection (RFC 7662): read the token, find its session through the same
// strategy map as revocation (hint first, then the others), and describe it only if it is
// authentic (its session's digest or its signature), live AND the caller may see it. Anything
// else is exactly `{"active": false}`.
import type { Database } from "../../db/client.ts";
import type { Client } from "../../db/schema.ts";
import type { Logger } from "../log.ts";
import type { CachedToken, IntrospectionCache } from "./introspection-cache.ts";
import type { Session } from "./sessions.ts";
import { lookupOrder, parseHint } from "./sessions.ts";
import type { TokenClaims, TokenKind, TokenService } from "./tokens.ts";
import { TokenFormatError } from "./tokens.ts";
import { sessionState } from "./verification.ts";

export interface IntrospectionRequest {
  token: string;
  tokenTypeHint: string | undefined;
  /** The authenticated (confidential) client asking. */
  caller: Client;
}

export interface ActiveToken {
  active: true;
  scope: string;
  client_id: string;
  sub: string;
  aud: string | string[];
  iss: string;
  exp: number;
  iat: number;
  jti: string;
  token_type: IntrospectedTokenType;
}

/**
 * RFC 7662 §2.2 defines `token_type` as the type "defined in Section 5.1 of OAuth 2.0", i.e.
 * the access token type of RFC 6749 §7.1: "Bearer" (RFC 6750) for our access tokens. A refresh
 * token has no RFC 6749 §7.1 type; it is reported as "refresh_token" (its RFC 7009 hint name),
 * a value no resource server can mistake for a usable bearer token.
 */
export type IntrospectedTokenType = "Bearer" | "refresh_token";

export type IntrospectionResponse = { active: false } | ActiveToken;

const INACTIVE: IntrospectionResponse = Object.freeze({ active: false });

const TOKEN_TYPE: Record<TokenKind, IntrospectedTokenType> = { access_token: "Bearer", refresh_token: "refresh_token" };

export type InactiveReason = "malformed" | "expired" | "unknown" | "inactive" | "not_allowed";

/** Who may see a token: its own client, or (access tokens only) a resource server in its audience. */
export function mayIntrospect(caller: Client, kind: TokenKind, session: Pick<Session, "clientId">, claims: TokenClaims): boolean {
  if (caller.clientId === session.clientId) return true;
  // RFC 6749 §1.5: refresh tokens "are never sent to resource servers", so no resource
  // server has a reason to see one.
  if (kind !== "access_token" || !caller.resourceServer) return false;
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  return audience.includes(caller.resourceServer);
}

export class IntrospectionService {
  constructor(
    private readonly database: Database,
    private readonly tokens: TokenService,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    private readonly cache?: IntrospectionCache,
  ) {}

  async introspect(request: IntrospectionRequest): Promise<IntrospectionResponse> {
    const result = await this.describe(request);
    this.log.debug("token.introspection.completed", {
      client_id: request.caller.clientId,
      active: result.active,
      reason: result.active ? null : result.reason,
    });
    return result.active ? result.token : INACTIVE;
  }

  private async describe({ token, tokenTypeHint, caller }: IntrospectionRequest) {
    const inactive = (reason: InactiveReason) => ({ active: false as const, reason });
    const cached = this.cache?.get(token, this.now());
    if (cached) return mayIntrospect(caller, cached.kind, cached, cached.claims) ? active(cached) : inactive("not_allowed");
    const mark = this.cache?.mark();
    let presented;
    try {
      presented = await this.tokens.read(token);
    } catch (error) {
      if (error instanceof TokenFormatError) return inactive("malformed");
      throw error;
    }
    if (presented.expired) return inactive("expired");
    const { kind, claims } = presented;
    // RFC 7662 §2.1: the hint only orders the search; if the hinted lookup fails the server
    // MUST extend its search across all of its supported token types.
    for (const strategy of lookupOrder(parseHint(tokenTypeHint) ?? kind)) {
      const session = await strategy.find(this.database, claims.jti);
      if (!session) continue;
      // The column that holds the jti names the token's kind; it must agree with the typ.
      if (strategy.kind !== kind) return inactive("unknown");
      // Only now are the claims trusted: the token is the one this session issued, or signed.
      if (!(await this.tokens.authenticate(token, presented, strategy.storedDigest(session)))) return inactive("malformed");
      // Revoked, rotated away (refreshed) or expired sessions describe no live token.
      const state = sessionState(session, kind, this.now());
      if (state !== "live") return inactive(state);
      const expiresAt = kind === "access_token" ? session.accessExpiresAt : session.refreshExpiresAt!;
      const live: CachedToken = { kind, claims, clientId: session.clientId, expiresAt: Math.min(expiresAt.getTime(), claims.exp * 1000) };
      this.cache?.set(token, live, mark!);
      if (!mayIntrospect(caller, kind, session, claims)) return inactive("not_allowed");
      return active(live);
    }
    return inactive("unknown");
  }
}

function active({ kind, claims }: CachedToken) {
  const description: ActiveToken = {
    active: true,
    scope: claims.scope,
    client_id: claims.client_id,
    sub: claims.sub,
    aud: claims.aud,
    iss: claims.iss,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    token_type: TOKEN_TYPE[kind],
  };
  return { active: true as const, token: description };
}
