// createApp: composes the endpoint plugins over injected services. No globals, so tests build
// as many independent apps as they like.
import { randomUUID } from "node:crypto";
import { Elysia } from "elysia";
import { errorPlugin } from "./errors.ts";
import { cors } from "./http/cors.ts";
import { healthEndpoints } from "./http/health.ts";
import { introspectEndpoint } from "./http/introspect.ts";
import { revocationsEndpoint } from "./http/revocations.ts";
import { revokeEndpoint } from "./http/revoke.ts";
import type { Services } from "./services.ts";

export function createApp(services: Services) {
  const { config } = services;
  return new Elysia()
    .use(errorPlugin(services.log))
    .onRequest(({ set }) => {
      set.headers["x-request-id"] = randomUUID();
    })
    .use(cors(["/oauth/revoke"], config.corsOrigins))
    .use(healthEndpoints(services))
    .use(revokeEndpoint(services))
    .use(introspectEndpoint(services))
    .use(revocationsEndpoint(services));
}

export type App = ReturnType<typeof createApp>;
