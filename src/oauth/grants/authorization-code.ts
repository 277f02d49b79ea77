// grant_type=authorization_code (RFC 6749 §4.1.3, OAuth 2.1 §4.1.3, RFC 7636): redeems a
// one-time code bound to its client and redirect URI, verifies PKCE (S256 only), narrows
// scope and resource, and issues an access token, a refresh token and a session.
import { eq } from "drizzle-orm";
import { t } from "elysia";
import { sessions as sessionsTable } from "../../../db/schema.ts";
import { OAuthError } from "../../errors.ts";
import type { AuthorizationGrant } from "../../../db/schema.ts";
import { findGrantByCode, pkceMatches, redeemAuthorizationGrant } from "../authorization-codes.ts";
import type { Client } from "../clients.ts";
import { narrowAudience } from "../resources.ts";
import { narrowScope } from "../scopes.ts";
import type { GrantContext } from "./grant.ts";
import { defineGrant } from "./grant.ts";
import { resourceParam, scopeParam } from "./params.ts";

export const authorizationCodeGrant = defineGrant({
  name: "authorization_code",
  params: t.Object({
    code: t.String({ minLength: 1, maxLength: 256 }),
    redirect_uri: t.Optional(t.String({ minLength: 1, maxLength: 2048 })),
    // RFC 7636 §4.1: code-verifier = 43*128unreserved
    code_verifier: t.Optional(t.String({ pattern: "^[A-Za-z0-9._~-]{43,128}$" })),
    scope: scopeParam,
    resource: resourceParam,
  }),
  async handle(params, context) {
    const { services, client } = context;
    const { config, database, sessions } = services;
    const found = await findGrantByCode(database, params.code);
    if (!found) throw OAuthError.invalidGrant("invalid authorization code");
    const { grant } = found;
    // RFC 6749 §4.1.2: a code used twice is refused and what it issued SHOULD be revoked.
    if (grant.redeemedAt) return refuseReuse(context, grant);
    if (found.expired) throw OAuthError.invalidGrant("authorization code expired");
    // RFC 6749 §4.1.3: ensure the code was issued to the authenticated client.
    if (grant.clientId !== client.clientId) throw OAuthError.invalidGrant("authorization code was issued to another client");
    // RFC 6749 §4.1.3: redirect_uri, if it was in the authorization request, MUST be identical.
    // A grant without one (the client relied on its only registered URI) accepts that URI or none.
    const presented = params.redirect_uri ?? impliedRedirectUri(client);
    if (grant.redirectUri === null ? presented !== impliedRedirectUri(client) : presented !== grant.redirectUri) {
      throw OAuthError.invalidGrant("redirect_uri does not match the authorization request");
    }
    verifyPkce(grant, client, params.code_verifier);
    if (!grant.userId) throw OAuthError.invalidGrant("the grant has no user");
    const scope = narrowScope(params.scope, grant.scope, config.scopes);
    const audience = narrowAudience(params.resource, grant.resources.length ? grant.resources : [config.defaultAudience]);

    const result = await redeemAuthorizationGrant(database, grant.id, (tx) =>
      sessions.mint({ client, subject: grant.userId!, scope, audience, grantId: grant.id, withRefreshToken: true }, tx),
    );
    if (!result.redeemed) {
      // Lost a race: with another redemption (reuse), or with expiry or a withdrawal of access.
      if (result.reason === "expired") throw OAuthError.invalidGrant("authorization code expired");
      return refuseReuse(context, grant);
    }
    return result.value;
  },
});

/** Without redirect_uri in the request, the client's only registered URI is implied. */
function impliedRedirectUri(client: Client): string | undefined {
  return client.redirectUris.length === 1 ? client.redirectUris[0] : undefined;
}

function verifyPkce(grant: AuthorizationGrant, client: Client, verifier: string | undefined): void {
  if (!grant.codeChallenge) {
    // OAuth 2.1 §4.1.3: without a code_challenge the request MUST NOT contain code_verifier
    // (prevents PKCE downgrade); RFC 9700 §2.1.1: public clients MUST use PKCE.
    if (verifier !== undefined) throw OAuthError.invalidGrant("code_verifier sent for a code issued without code_challenge");
    if (client.type === "public") throw OAuthError.invalidGrant("PKCE is required for public clients");
    return;
  }
  // OAuth 2.1 §7.5.2: only S256; `plain` is refused.
  if (grant.codeChallengeMethod !== "S256") throw OAuthError.invalidGrant("unsupported code_challenge_method");
  if (verifier === undefined) throw OAuthError.invalidGrant("code_verifier is required");
  if (!pkceMatches(grant.codeChallenge, verifier)) throw OAuthError.invalidGrant("PKCE verification failed");
}

/** A second redemption: revoke every live session the grant produced, then refuse. */
async function refuseReuse({ services, client }: GrantContext, grant: AuthorizationGrant): Promise<never> {
  const revoked = await services.sessions.revokeWhere(eq(sessionsTable.grantId, grant.id), "authorization_code_reuse");
  services.log.warn("security.authorization_code.reuse", {
    client_id: client.clientId,
    grant_id: grant.id,
    family_revoked: revoked,
  });
  throw OAuthError.invalidGrant("authorization code already used");
}
