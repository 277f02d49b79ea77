// POST /oauth/token — the token endpoint (RFC 6749 §3.2, §5). One route; the grant modules
// in oauth/grants do the per-grant work.
import { Elysia, t } from "elysia";
import { jsonResponse } from "./responses.ts";
import { OAuthError } from "../errors.ts";
import { runGrant } from "../oauth/grants/index.ts";
import type { IssuedTokens } from "../oauth/sessions.ts";
import type { Services } from "../services.ts";
import { clientAuth } from "./client-auth.ts";
import { clientCredentialFields, parseForm } from "./form.ts";
import { onlyMethods } from "./method-not-allowed.ts";

/** grant_type and client credentials here; each grant validates its own parameters. */
export const tokenBody = t.Object(
  {
    grant_type: t.String({ minLength: 1, maxLength: 64 }),
    ...clientCredentialFields,
  },
  { additionalProperties: t.String({ maxLength: 8192 }) },
);

/** RFC 6749 §5.1 successful response; `scope` always present; RFC 9449 §5: token_type DPoP for a bound token. */
export function tokenResponse(issued: IssuedTokens, headers: Record<string, string> = {}): Response {
  const response = jsonResponse({
    access_token: issued.accessToken,
    token_type: issued.tokenType,
    expires_in: issued.expiresIn,
    ...(issued.refreshToken ? { refresh_token: issued.refreshToken } : {}),
    scope: issued.scope,
    // OpenID Connect Core §3.1.3.3.
    ...(issued.idToken ? { id_token: issued.idToken } : {}),
  });
  for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
  return response;
}

/**
 * The DPoP header values of a request. Headers.get joins repeated fields with ", ", and a proof
 * (a compact JWS) holds no comma: a comma means two headers (RFC 9449 §4.3 check 1).
 */
export function dpopHeaders(request: Request): string[] {
  const value = request.headers.get("dpop");
  return value === null ? [] : value.split(",").map((part) => part.trim());
}

export function tokenEndpoint(services: Services) {
  return new Elysia()
    .use(onlyMethods("/oauth/token", ["POST"]))
    .guard({ parse: parseForm, body: tokenBody }, (app) =>
      app.use(clientAuth(services)).post("/oauth/token", async ({ body, authenticated, request }) => {
        const { grant_type: grantType, client_id: _id, client_secret: _secret, ...params } = body;
        const { client } = authenticated;
        const proofs = dpopHeaders(request);
        const nonceRequired = services.config.dpopNonce;
        // RFC 9449 §4.3, against this endpoint's public URL (the issuer's), not the one a proxy forwarded.
        const dpop =
          proofs.length === 0
            ? undefined
            : await services.dpop.verify({ headers: proofs, method: "POST", url: `${services.config.issuer}/oauth/token`, nonceRequired });
        // RFC 9449 §5.2: "the authorization server MUST reject token requests from this client that do not contain the DPoP header".
        if (!dpop && client.metadata.dpop_bound_access_tokens === true) {
          throw new OAuthError("invalid_dpop_proof", "this client registered dpop_bound_access_tokens: a DPoP proof is required");
        }
        const issued = await runGrant(grantType, params, { services, client, ...(dpop ? { dpop } : {}) });
        services.log.info("token.issued", {
          client_id: authenticated.client.clientId,
          grant_type: grantType,
          session_id: issued.sessionId,
          token_type: issued.tokenType,
        });
        // §8.2: a fresh nonce with each answer, for the client's next proof.
        return tokenResponse(issued, dpop && nonceRequired ? { "DPoP-Nonce": await services.dpop.nonce() } : {});
      }),
    );
}
