// The registry of grant types the token endpoint dispatches on. Adding a grant type means
// adding one module and one entry here.
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { OAuthError } from "../../errors.ts";
import type { IssuedTokens } from "../sessions.ts";
import { authorizationCodeGrant } from "./authorization-code.ts";
import { clientCredentialsGrant } from "./client-credentials.ts";
import type { Grant, GrantContext } from "./grant.ts";
import { refreshTokenGrant } from "./refresh-token.ts";

export type { Grant, GrantContext };

const GRANTS: readonly Grant<any>[] = [authorizationCodeGrant, refreshTokenGrant, clientCredentialsGrant];

interface RegisteredGrant {
  grant: Grant<any>;
  check: ReturnType<typeof TypeCompiler.Compile>;
}

const registry: ReadonlyMap<string, RegisteredGrant> = new Map(
  GRANTS.map((grant) => [grant.name, { grant, check: TypeCompiler.Compile(grant.params) }]),
);

/** The grant types this server supports (for discovery metadata). */
export const SUPPORTED_GRANT_TYPES: readonly string[] = GRANTS.map((g) => g.name);

/**
 * Runs the grant named by `grant_type`: unsupported_grant_type if there is none,
 * unauthorized_client if the client is not registered for it (RFC 6749 §5.2),
 * invalid_request naming the first bad parameter. The request's DPoP proof is recorded against
 * replay first, unless the grant records it itself.
 */
export async function runGrant(grantType: string, params: Record<string, unknown>, context: GrantContext): Promise<IssuedTokens> {
  const entry = registry.get(grantType);
  if (!entry) throw OAuthError.unsupportedGrantType(`grant_type "${grantType.slice(0, 40)}" is not supported`);
  if (!context.client.grantTypes.includes(grantType)) {
    throw OAuthError.unauthorizedClient(`the client is not registered for the ${grantType} grant`);
  }
  if (!entry.check.Check(params)) {
    const first = entry.check.Errors(params).First();
    throw OAuthError.invalidRequest(`invalid or missing parameter: ${first?.path.replace(/^\//, "") || "unknown"}`);
  }
  // RFC 9449 §11.1: a proof is used once (here, or in the grant's own statement).
  if (context.dpop && !entry.grant.recordsProof) await context.services.dpop.record(context.dpop);
  return entry.grant.handle(params, context);
}
