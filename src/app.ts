// createApp: composes the endpoint plugins over injected services. No globals, so tests build
// as many independent apps as they like.
import { Elysia } from "elysia";
import { accountEndpoints } from "./http/account.ts";
import { adminEndpoints } from "./http/admin.ts";
import { assetEndpoints } from "./http/assets.ts";
import { authorizeEndpoints } from "./http/authorize.ts";
import { cors } from "./http/cors.ts";
import { discoveryEndpoints } from "./http/discovery.ts";
import { endSessionEndpoint } from "./http/end-session.ts";
import { errorPlugin } from "./http/error-plugin.ts";
import { healthEndpoints } from "./http/health.ts";
import { introspectEndpoint } from "./http/introspect.ts";
import { requestLimits } from "./http/limits.ts";
import { loginEndpoints } from "./http/login.ts";
import { observability } from "./http/observability.ts";
import { openapiEndpoints } from "./http/openapi.ts";
import { registrationEndpoint } from "./http/register.ts";
import { revocationsEndpoint } from "./http/revocations.ts";
import { revokeEndpoint } from "./http/revoke.ts";
import { ssfEndpoints } from "./http/ssf.ts";
import { tokenEndpoint } from "./http/token.ts";
import { USERINFO_PATH, userinfoEndpoint } from "./http/userinfo.ts";
import type { Services } from "./services.ts";

export function createApp(services: Services) {
  const { config } = services;
  return new Elysia()
    .use(observability(services))
    .use(errorPlugin(services.log))
    .use(requestLimits(config))
    .use(cors({ "/oauth/revoke": ["POST"], "/oauth/token": ["POST"], [USERINFO_PATH]: ["GET", "POST"] }, config.corsOrigins))
    .use(healthEndpoints(services))
    .use(revokeEndpoint(services))
    .use(tokenEndpoint(services))
    .use(registrationEndpoint(services))
    .use(discoveryEndpoints(services))
    .use(authorizeEndpoints(services))
    .use(loginEndpoints(services))
    .use(endSessionEndpoint(services))
    .use(accountEndpoints(services))
    .use(assetEndpoints())
    .use(introspectEndpoint(services))
    .use(userinfoEndpoint(services))
    .use(revocationsEndpoint(services))
    .use(ssfEndpoints(services))
    .use(adminEndpoints(services))
    .use(openapiEndpoints(services));
}

export type App = ReturnType<typeof createApp>;
