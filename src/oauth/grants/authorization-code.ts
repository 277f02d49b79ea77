// grant_type=authorization_code (RFC 6749 §4.1.3, OAuth 2.1 §4.1.3, RFC 7636): redeems a
// one-time code bound to its client and redirect URI, verifies PKCE (S256 only), narrows
// scope and resource, and issues an access token, a refresh token and a session — all checked
// and done by one SQL function in one round trip (db/functions/ta_redeem_code.sql), whose
// outcomes are answered here.
import { t } from "elysia";
import { OAuthError } from "../../errors.ts";
import type { RedeemOutcome } from "../sessions.ts";
import type { Resources } from "../resources.ts";
import { parseResource } from "../resources.ts";
import { knownScope } from "../scopes.ts";
import type { GrantContext } from "./grant.ts";
import { bindingOf, defineGrant } from "./grant.ts";
import { resourceParam, scopeParam } from "./params.ts";

/** What each refusal says; the RFC each enforces is cited where the function checks it. */
const REFUSALS: Record<Exclude<RedeemOutcome, "redeemed" | "reuse"> | "dpop_mismatch", () => OAuthError> = {
  unknown: () => OAuthError.invalidGrant("invalid authorization code"),
  expired: () => OAuthError.invalidGrant("authorization code expired"),
  other_client: () => OAuthError.invalidGrant("authorization code was issued to another client"),
  redirect_mismatch: () => OAuthError.invalidGrant("redirect_uri does not match the authorization request"),
  pkce_unexpected_verifier: () => OAuthError.invalidGrant("code_verifier sent for a code issued without code_challenge"),
  pkce_required: () => OAuthError.invalidGrant("PKCE is required for public clients"),
  pkce_method: () => OAuthError.invalidGrant("unsupported code_challenge_method"),
  pkce_verifier_required: () => OAuthError.invalidGrant("code_verifier is required"),
  pkce_failed: () => OAuthError.invalidGrant("PKCE verification failed"),
  no_user: () => OAuthError.invalidGrant("the grant has no user"),
  invalid_scope: () => OAuthError.invalidScope("the requested scope exceeds the granted scope"),
  invalid_target: () => OAuthError.invalidTarget("the resource is not one this grant allows"),
  // RFC 9449 §10: "the authorization server MUST check that ... the DPoP proof's key matches dpop_jkt".
  dpop_mismatch: () => new OAuthError("invalid_dpop_proof", "the authorization code is bound to another DPoP key"),
};

export const authorizationCodeGrant = defineGrant({
  name: "authorization_code",
  params: t.Object({
    // A sealed code (src/oauth/authorization-codes.ts) is at most 1024 characters.
    code: t.String({ minLength: 1, maxLength: 1024 }),
    redirect_uri: t.Optional(t.String({ minLength: 1, maxLength: 2048 })),
    // RFC 7636 §4.1: code-verifier = 43*128unreserved
    code_verifier: t.Optional(t.String({ pattern: "^[A-Za-z0-9._~-]{43,128}$" })),
    scope: scopeParam,
    resource: resourceParam,
  }),
  async handle(params, context) {
    const { services, client } = context;
    const result = await services.sessions.redeemCode({
      code: params.code,
      client,
      redirectUri: params.redirect_uri,
      codeVerifier: params.code_verifier,
      // The request on its own: known scopes (RFC 6749 §3.3), an absolute resource without a
      // fragment (RFC 8707 §2); whether the grant holds them is the statement's to say.
      scope: params.scope === undefined ? undefined : knownScope(params.scope, services.config.scopes),
      resource: params.resource === undefined ? undefined : await registeredResource(services.resources, params.resource),
      binding: bindingOf(context),
    });
    if (result.outcome === "redeemed") return result.tokens;
    if (result.outcome === "reuse") return refuseReuse(context, result.grantId, result.revokedCount);
    throw REFUSALS[result.outcome]();
  },
});

/**
 * A resource of the token request in the form a grant holds it: as registered (the authorization
 * endpoint stores that form), else as sent, normalised; the statement checks the grant holds it.
 */
async function registeredResource(resources: Resources, requested: string): Promise<string> {
  const normalized = parseResource(requested);
  return (await resources.find(requested))?.resource ?? normalized;
}

/** RFC 6749 §4.1.2: a code used twice is refused, and what it issued was revoked by the statement. */
function refuseReuse({ services, client }: GrantContext, grantId: string | null, revoked: number): never {
  services.log.warn("security.authorization_code.reuse", {
    client_id: client.clientId,
    grant_id: grantId,
    family_revoked: revoked,
  });
  throw OAuthError.invalidGrant("authorization code already used");
}
