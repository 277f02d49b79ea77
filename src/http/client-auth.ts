// The client-authentication plugin shared by every endpoint that needs it: an Elysia
// `resolve` that yields the authenticated client or throws invalid_client — or, after too many
// failures for the presented client id or from the source address, 429 with Retry-After
// (RFC 6585 §4) before the credentials are even checked.
import type { Server } from "bun";
import { Elysia } from "elysia";
import type { Config } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { AuthenticatedClient, ClientAuthGuard, ClientCredentials } from "../oauth/client-auth.ts";
import { authenticateClient, presentedClientId } from "../oauth/client-auth.ts";
import type { Clients } from "../oauth/clients.ts";
import { clientIp } from "./client-ip.ts";

export interface ClientAuthDeps {
  clients: Clients;
  clientAuthGuard: ClientAuthGuard;
  metrics: Pick<Metrics, "clientAuthFailures" | "rateLimited">;
  config: Pick<Config, "clientIpHeader">;
  log: Logger;
}

/**
 * Authenticates a client, refusing with 429 first when its client id or address has failed too
 * often, and counting invalid_client failures. Shared by every client-authenticating endpoint.
 */
export async function authenticateThrottled(
  { clients, clientAuthGuard, metrics, config, log }: ClientAuthDeps,
  credentials: ClientCredentials,
  request: Request,
  server: Server<unknown> | null | undefined,
): Promise<AuthenticatedClient> {
  const clientId = presentedClientId(credentials);
  let address: string | undefined | null = null;
  const addressOf = () => (address === null ? (address = clientIp(request, server, config.clientIpHeader)) : address);
  const refusal = clientAuthGuard.refusal(clientId, addressOf);
  if (refusal) {
    metrics.rateLimited.inc({ limit: refusal.by });
    log.warn("security.client_auth.throttled", { client_id: clientId ?? null, limit: refusal.by });
    throw OAuthError.tooManyRequests(refusal.retryAfter);
  }
  try {
    const authenticated = await authenticateClient(clients, credentials);
    clientAuthGuard.succeeded(authenticated.client.clientId);
    return authenticated;
  } catch (error) {
    if (error instanceof OAuthError && error.code === "invalid_client") {
      clientAuthGuard.failed(clientId, addressOf());
      metrics.clientAuthFailures.inc();
    }
    throw error;
  }
}

export function clientAuth(deps: ClientAuthDeps) {
  return new Elysia().resolve({ as: "scoped" }, async ({ headers, body, request, server }) => {
    const form = (body ?? {}) as { client_id?: string; client_secret?: string };
    const credentials = { authorization: headers.authorization, clientId: form.client_id, clientSecret: form.client_secret };
    return { authenticated: await authenticateThrottled(deps, credentials, request, server) };
  });
}
