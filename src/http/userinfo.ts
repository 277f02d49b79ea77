// GET and POST /oauth/userinfo — OpenID Connect Core 1.0 §5.3: the signed-in user's claims for
// an access token in the Authorization header (Bearer, or DPoP with a proof).
import { Elysia } from "elysia";
import type { Services } from "../services.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { jsonResponse } from "./responses.ts";
import { dpopHeaders } from "./token.ts";

export const USERINFO_PATH = "/oauth/userinfo";

export function userinfoEndpoint(services: Services) {
  const { config, userinfo } = services;
  const answer = async (request: Request) =>
    // §5.3.2: a JSON object of the claims; no-store, as every answer about a user.
    jsonResponse(
      await userinfo.claims({
        authorization: request.headers.get("authorization"),
        dpop: dpopHeaders(request),
        method: request.method,
        url: `${config.issuer}${USERINFO_PATH}`,
        nonceRequired: config.dpopNonce,
      }),
    );
  const detail = { summary: "The signed-in user's claims (OpenID Connect Core §5.3)", tags: ["openid"] };
  return new Elysia()
    .use(onlyMethods(USERINFO_PATH, ["GET", "POST"]))
    // The body of a POST is not read: the token comes in the Authorization header only.
    .get(USERINFO_PATH, ({ request }) => answer(request), { detail })
    .post(USERINFO_PATH, ({ request }) => answer(request), { parse: "none", detail });
}
