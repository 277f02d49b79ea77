// grant_type=client_credentials (RFC 6749 §4.4): a confidential client acting on its own
// behalf gets an access token only; its session is revocable like any other.
import { t } from "elysia";
import { OAuthError } from "../../errors.ts";
import { narrowAudience } from "../resources.ts";
import { narrowScope, OPERATOR_SCOPES } from "../scopes.ts";
import { bindingOf, defineGrant } from "./grant.ts";
import { resourceParam, scopeParam } from "./params.ts";

export const clientCredentialsGrant = defineGrant({
  name: "client_credentials",
  params: t.Object({ scope: scopeParam, resource: resourceParam }),
  // The proof's replay record goes in the session's INSERT: one commit for the request.
  recordsProof: true,
  async handle(params, context) {
    const { services, client } = context;
    const { config, resources } = services;
    // RFC 6749 §4.4: "The client credentials grant type MUST only be used by confidential clients."
    if (client.type !== "confidential") throw OAuthError.unauthorizedClient("client_credentials requires a confidential client");
    // The admin scope is known to this grant only: an operator gives it to a client (registration.ts).
    const scope = narrowScope(params.scope, client.scope, [...config.scopes, ...OPERATOR_SCOPES]);
    const audience =
      params.resource === undefined
        ? [config.defaultAudience]
        : narrowAudience(params.resource, [config.defaultAudience, ...(await resources.all()).map((r) => r.resource)]);
    // RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included."
    return services.sessions.mint({
      client,
      subject: client.clientId,
      scope,
      audience,
      withRefreshToken: false,
      binding: bindingOf(context),
      ...(context.dpop ? { proof: context.dpop.replay } : {}),
    });
  },
});
