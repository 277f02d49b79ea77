// What a grant type is (node-oidc-provider style): its `grant_type` name, the TypeBox schema
// of its own parameters, and a handler that issues tokens for an authenticated client.
import type { Static, TSchema } from "@sinclair/typebox";
import type { Config } from "../../config.ts";
import type { Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import type { Client, GrantType } from "../clients.ts";
import type { DpopVerifier, VerifiedProof } from "../dpop.ts";
import type { Resources } from "../resources.ts";
import type { Binding, IssuedTokens, SessionService } from "../sessions.ts";
import type { TokenPipeline } from "../token-pipeline.ts";

/** Exactly what the grants use of the server's services. */
export interface GrantDeps {
  config: Pick<Config, "scopes" | "defaultAudience" | "refreshReuseGrace">;
  resources: Resources;
  log: Logger;
  metrics: Pick<Metrics, "refreshReuse">;
  sessions: SessionService;
  pipeline: TokenPipeline;
  dpop: Pick<DpopVerifier, "record">;
}

export interface GrantContext {
  services: GrantDeps;
  /** The client authenticated by the token endpoint. */
  client: Client;
  /**
   * The request's DPoP proof, checked (RFC 9449 §4.3); absent without one. It is recorded against
   * replay (§11.1) before the grant runs, or by the grant's own statement (`recordsProof`).
   */
  dpop?: VerifiedProof;
}

/**
 * The binding of tokens issued with a DPoP proof (RFC 9449 §5): the access token always; the
 * refresh token for a public client (§5: "refresh tokens issued to public clients MUST be bound"),
 * and for a confidential one that registered dpop_bound_access_tokens.
 */
export function bindingOf({ client, dpop }: GrantContext): Binding | undefined {
  if (!dpop) return undefined;
  return { jkt: dpop.jkt, refresh: client.type === "public" || client.metadata.dpop_bound_access_tokens === true };
}

export interface Grant<S extends TSchema = TSchema> {
  readonly name: GrantType;
  /** The grant's own form parameters (client credentials are handled by the endpoint). */
  readonly params: S;
  handle(params: Static<S>, context: GrantContext): Promise<IssuedTokens>;
  /** The grant records `context.dpop` against replay in the statement that issues its tokens. */
  readonly recordsProof?: true;
}

/** Declares a grant; the identity function exists so `handle` gets its params typed. */
export function defineGrant<S extends TSchema>(grant: Grant<S>): Grant<S> {
  return grant;
}
