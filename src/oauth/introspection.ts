// Token introspection (RFC 7662): the token pipeline (src/oauth/token-pipeline.ts) recognises
// the token — read, its session found (hint first, then the others), authentic (its session's
// digest or its signature), live — and it is described only if the caller may see it. Anything
// else is exactly `{"active": false}`.
import type { Client, Session } from "../../db/schema.ts";
import type { Logger } from "../log.ts";
import type { CachedToken, IntrospectionCache } from "./introspection-cache.ts";
import type { RecognitionFailure, TokenPipeline } from "./token-pipeline.ts";
import { parseHint } from "./token-pipeline.ts";
import type { TokenClaims, TokenKind } from "./tokens.ts";

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
  /** RFC 9449 §6.2: the DPoP key a bound token is bound to. */
  cnf?: { jkt: string };
}

/**
 * RFC 7662 §2.2 defines `token_type` as the type "defined in Section 5.1 of OAuth 2.0", i.e.
 * the access token type of RFC 6749 §7.1: "Bearer" (RFC 6750) for our access tokens. A refresh
 * token has no RFC 6749 §7.1 type; it is reported as "refresh_token" (its RFC 7009 hint name),
 * a value no resource server can mistake for a usable bearer token.
 */
export type IntrospectedTokenType = "Bearer" | "DPoP" | "refresh_token";

export type IntrospectionResponse = { active: false } | ActiveToken;

const INACTIVE: IntrospectionResponse = Object.freeze({ active: false });

const TOKEN_TYPE: Record<TokenKind, IntrospectedTokenType> = { access_token: "Bearer", refresh_token: "refresh_token" };

export type InactiveReason = RecognitionFailure | "not_allowed";

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
    private readonly pipeline: TokenPipeline,
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
    // RFC 7662 §2.1: the hint only orders the search; if the hinted lookup fails the server
    // MUST extend its search across all of its supported token types.
    const recognized = await this.pipeline.recognize(token, { hint: parseHint(tokenTypeHint) });
    if (!recognized.ok) return inactive(recognized.reason);
    const { kind, claims, session } = recognized;
    const expiresAt = kind === "access_token" ? session.accessExpiresAt : session.refreshExpiresAt!;
    const live: CachedToken = { kind, claims, clientId: session.clientId, expiresAt: Math.min(expiresAt.getTime(), claims.exp * 1000) };
    this.cache?.set(token, live, mark!);
    if (!mayIntrospect(caller, kind, session, claims)) return inactive("not_allowed");
    return active(live);
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
    // RFC 9449 §6.2: a DPoP-bound access token is of type DPoP, with its cnf.
    token_type: kind === "access_token" && claims.cnf ? "DPoP" : TOKEN_TYPE[kind],
    ...(claims.cnf ? { cnf: { jkt: claims.cnf.jkt } } : {}),
  };
  return { active: true as const, token: description };
}
