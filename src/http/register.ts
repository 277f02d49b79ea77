// POST /oauth/register — dynamic client registration (RFC 7591). JSON in, 201 with the
// registered metadata out. Open registration (no TA_REGISTRATION_TOKEN) is where anyone can
// register, so it is throttled per client address (429 with Retry-After).
import { Elysia } from "elysia";
import { FailureThrottle } from "../throttle.ts";
import { clientIp } from "./client-ip.ts";
import { OAuthError } from "../errors.ts";
import { jsonResponse } from "./responses.ts";
import { checkInitialAccessToken, registerClient, registrationResponse } from "../oauth/registration.ts";
import type { Services } from "../services.ts";
import { onlyMethods } from "./method-not-allowed.ts";

/** RFC 7591 §3: the body is a JSON object; read only after the caller is authorized. */
async function readJson(request: Request): Promise<unknown> {
  const type = request.headers.get("content-type")?.split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw OAuthError.invalidRequest("the body must be application/json");
  let parsed: unknown;
  try {
    parsed = JSON.parse(await request.text());
  } catch {
    throw OAuthError.invalidClientMetadata("the body is not valid JSON");
  }
  return parsed;
}

export function registrationEndpoint({ clients, config, log, metrics, now }: Services) {
  // Every registration counts (not only failures): TA_REGISTRATION_LIMIT per address and window.
  const throttle = new FailureThrottle({ limit: config.registrationLimit, windowSeconds: config.registrationWindow, now });
  return new Elysia()
    .use(onlyMethods("/oauth/register", ["POST"]))
    .post("/oauth/register", async ({ request, server }) => {
      checkInitialAccessToken(config.registrationToken, request.headers.get("authorization"));
      const address = config.registrationToken === undefined ? clientIp(request, server, config.clientIpHeader) : undefined;
      if (address !== undefined) {
        const retryAfter = throttle.retryAfter(address);
        if (retryAfter > 0) {
          metrics.rateLimited.inc({ limit: "registration" });
          log.warn("security.registration.throttled", { ip: address, retry_after: retryAfter });
          throw OAuthError.tooManyRequests(retryAfter);
        }
      }
      const registered = await registerClient(clients, config, await readJson(request), { registration: "dynamic" });
      if (address !== undefined) throttle.fail(address);
      log.info("client.registered", { client_id: registered.client.clientId, type: registered.client.type });
      return jsonResponse(registrationResponse(registered), 201);
    });
}
