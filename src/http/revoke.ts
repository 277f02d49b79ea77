// POST /oauth/revoke — token revocation (RFC 7009). One route for every token kind: the
// strategy map in oauth/sessions.ts does the per-kind work.
import { Elysia, t } from "elysia";
import type { Services } from "../services.ts";
import { MAX_TOKEN_LENGTH } from "../oauth/tokens.ts";
import { clientAuth } from "./client-auth.ts";
import { clientCredentialFields, parseForm } from "./form.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { emptyResponse } from "./responses.ts";

export const revokeBody = t.Object({
  token: t.String({ minLength: 1, maxLength: MAX_TOKEN_LENGTH }),
  // RFC 7009 §2.2: an unrecognised hint is ignored, so any string is accepted here — of any
  // length: refusing a long one would not be ignoring it (the body size bounds it anyway).
  token_type_hint: t.Optional(t.String()),
  ...clientCredentialFields,
});

export function revokeEndpoint(services: Services) {
  const { revocation } = services;
  return new Elysia()
    .use(onlyMethods("/oauth/revoke", ["POST"]))
    .guard({ parse: parseForm, body: revokeBody }, (app) =>
      app.use(clientAuth(services)).post("/oauth/revoke", async ({ body, authenticated }) => {
        await revocation.revoke({
          token: body.token,
          tokenTypeHint: body.token_type_hint,
          clientId: authenticated.client.clientId,
        });
        // RFC 7009 §2.2: 200 whether the token was revoked, already invalid, or unknown.
        return emptyResponse(200);
      }, { detail: { summary: "Revoke an access or refresh token and its session family (RFC 7009)", tags: ["oauth"] } }),
    );
}
