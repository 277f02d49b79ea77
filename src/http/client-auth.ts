// The client-authentication plugin shared by every endpoint that needs it: an Elysia
// `resolve` that yields the authenticated client or throws invalid_client.
import { Elysia } from "elysia";
import type { ClientStore } from "../oauth/clients.ts";
import { authenticateClient } from "../oauth/client-auth.ts";

export function clientAuth(clients: ClientStore) {
  return new Elysia().resolve({ as: "scoped" }, async ({ headers, body }) => {
    const form = (body ?? {}) as { client_id?: string; client_secret?: string };
    return {
      authenticated: await authenticateClient(clients, {
        authorization: headers.authorization,
        clientId: form.client_id,
        clientSecret: form.client_secret,
      }),
    };
  });
}
