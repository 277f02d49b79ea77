// An Elysia plugin over the access-token verifier: a `bearer` route option that verifies the
// request's token (and the scopes listed) and puts its claims in the context as `accessToken`,
// and the resource's RFC 9728 metadata at the path its challenges name.
//   app.use(bearerAuth(verifier)).get("/notes", ({ accessToken }) => ..., { bearer: ["read"] })
import { Elysia } from "elysia";
import { resourceMetadataResponse } from "./metadata.ts";
import type { AccessTokenVerifier } from "./verifier.ts";

export function bearerAuth(verifier: AccessTokenVerifier) {
  return new Elysia()
    .all(new URL(verifier.resourceMetadataUrl).pathname, ({ request }) => resourceMetadataResponse(verifier.resourceMetadata, request.method))
    .macro({
      /** `true`: any valid token; a list: a valid token with every one of these scopes. */
      bearer: (scopes: true | readonly string[]) => ({
        async resolve({ request }) {
          // A failure throws a BearerError, whose toResponse() Elysia sends as is. DPoP-bound
          // tokens are checked against the request's proof, method and URL (RFC 9449 §7.1).
          const accessToken = await verifier.verifyRequest(request, scopes === true ? [] : scopes);
          return { accessToken };
        },
      }),
    });
}
