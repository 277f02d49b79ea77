// createApp: composes the endpoint plugins over injected services. No globals, so tests build
// as many independent apps as they like.
import { Elysia } from "elysia";
import { errorPlugin } from "./errors.ts";
import { cors } from "./http/cors.ts";
import { healthEndpoints } from "./http/health.ts";
import { requestLimits } from "./http/limits.ts";
import { observability } from "./http/observability.ts";
import { openapiEndpoints } from "./http/openapi.ts";
import { revokeEndpoint } from "./http/revoke.ts";
import type { Services } from "./services.ts";

export function createApp(services: Services) {
  const { config } = services;
  return new Elysia()
    .use(observability(services))
    .use(errorPlugin(services.log))
    .use(requestLimits(config))
    .use(cors(["/oauth/revoke"], config.corsOrigins))
    .use(healthEndpoints(services))
    .use(revokeEndpoint(services))
    .use(openapiEndpoints(services));
}

export type App = ReturnType<typeof createApp>;
