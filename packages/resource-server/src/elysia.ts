// An Elysia plugin over the access-token verifier: a `bearer` route option that verifies the
// request's token (and the scopes listed) and puts its claims in the context as `accessToken`.
//   app.use(bearerAuth(verifier)).get("/notes", ({ accessToken }) => ..., { bearer: ["read"] })
import { Elysia } from "elysia";
import type { AccessTokenVerifier } from "./verifier.ts";

export function bearerAuth(verifier: AccessTokenVerifier) {
  return new Elysia().macro({
    /** `true`: any valid token; a list: a valid token with every one of these scopes. */
    bearer: (scopes: true | readonly string[]) => ({
      async resolve({ headers }) {
        // A failure throws a BearerError, whose toResponse() Elysia sends as is.
        const accessToken = await verifier.verify(headers.authorization, scopes === true ? [] : scopes);
        return { accessToken };
      },
    }),
  });
}
