// POST /oauth/register — dynamic client registration (RFC 7591). JSON in, 201 with the
// registered metadata out.
import { Elysia } from "elysia";
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
  // PostgreSQL text and jsonb hold neither NUL nor lone surrogates: refuse them here, as bad
  // metadata, rather than fail at the INSERT (found by test/fuzz-register.test.ts).
  if (!storable(parsed)) throw OAuthError.invalidClientMetadata("a value holds a NUL character or invalid Unicode");
  return parsed;
}

function storable(value: unknown, depth = 0): boolean {
  if (depth > 32) return false;
  if (typeof value === "string") return value.isWellFormed() && !value.includes("\u0000");
  if (Array.isArray(value)) return value.every((item) => storable(item, depth + 1));
  if (value && typeof value === "object") {
    return Object.entries(value).every(([key, item]) => storable(key, depth + 1) && storable(item, depth + 1));
  }
  return true;
}

export function registrationEndpoint({ clients, config, log }: Services) {
  return new Elysia()
    .use(onlyMethods("/oauth/register", ["POST"]))
    .post("/oauth/register", async ({ request }) => {
      checkInitialAccessToken(config.registrationToken, request.headers.get("authorization"));
      const registered = await registerClient(clients, config, await readJson(request));
      log.info("client.registered", { client_id: registered.client.clientId, type: registered.client.type });
      return jsonResponse(registrationResponse(registered), 201);
    });
}
