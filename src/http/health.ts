// GET /healthz (the process is up) and GET /readyz (the database answers).
import { Elysia } from "elysia";
import { OAuthError } from "../errors.ts";
import { jsonResponse } from "./responses.ts";
import type { Services } from "../services.ts";

export function healthEndpoints({ database }: Services) {
  return new Elysia()
    .get("/healthz", () => jsonResponse({ status: "ok" }), { detail: { summary: "The process is up", tags: ["operations"] } })
    .get("/readyz", async () => {
      try {
        await database.ping();
      } catch {
        throw OAuthError.temporarilyUnavailable("the database is not reachable");
      }
      return jsonResponse({ status: "ready", database: database.kind });
    }, { detail: { summary: "The database answers (503 otherwise)", tags: ["operations"] } });
}
