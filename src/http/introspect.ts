// POST /oauth/introspect — token introspection (RFC 7662) for confidential clients and the
// resource servers they represent. The strategy map in oauth/sessions.ts finds the session.
import { Elysia } from "elysia";
import { OAuthError } from "../errors.ts";
import { jsonResponse } from "./responses.ts";
import type { Services } from "../services.ts";
import { clientAuth } from "./client-auth.ts";
import { parseForm } from "./form.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { revokeBody } from "./revoke.ts";

/** RFC 7662 §2.1 takes the same parameters as RFC 7009 §2.1: token and token_type_hint. */
export const introspectBody = revokeBody;

export function introspectEndpoint(services: Services) {
  const { introspection } = services;
  return new Elysia()
    .use(onlyMethods("/oauth/introspect", ["POST"]))
    .guard({ parse: parseForm, body: introspectBody }, (app) =>
      app.use(clientAuth(services)).post("/oauth/introspect", async ({ body, authenticated }) => {
        // RFC 7662 §2.1: the endpoint MUST require some form of authorization; a public
        // client proves nothing about who is asking.
        if (authenticated.method === "none") {
          throw OAuthError.invalidClient("introspection requires a confidential client");
        }
        const result = await introspection.introspect({
          token: body.token,
          tokenTypeHint: body.token_type_hint,
          caller: authenticated.client,
        });
        // RFC 7662 §2.2 answers in JSON; a token description must never be cached.
        return jsonResponse(result);
      }),
    );
}
