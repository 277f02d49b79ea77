// POST /oauth/token — the token endpoint (RFC 6749 §3.2, §5). One route; the grant modules
// in oauth/grants do the per-grant work.
import { Elysia, t } from "elysia";
import { jsonResponse } from "./responses.ts";
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

/** RFC 6749 §5.1 successful response; `scope` always present. */
export function tokenResponse(issued: IssuedTokens): Response {
  return jsonResponse({
    access_token: issued.accessToken,
    token_type: "Bearer",
    expires_in: issued.expiresIn,
    ...(issued.refreshToken ? { refresh_token: issued.refreshToken } : {}),
    scope: issued.scope,
  });
}

export function tokenEndpoint(services: Services) {
  return new Elysia()
    .use(onlyMethods("/oauth/token", ["POST"]))
    .guard({ parse: parseForm, body: tokenBody }, (app) =>
      app.use(clientAuth(services)).post("/oauth/token", async ({ body, authenticated }) => {
        const { grant_type: grantType, client_id: _id, client_secret: _secret, ...params } = body;
        const issued = await runGrant(grantType, params, { services, client: authenticated.client });
        services.log.info("token.issued", {
          client_id: authenticated.client.clientId,
          grant_type: grantType,
          session_id: issued.sessionId,
        });
        return tokenResponse(issued);
      }),
    );
}
