// OpenID Connect RP-Initiated Logout 1.0 §2–3: who asks (the client an id_token_hint or
// client_id names), for whom (the hint's subject and sign-in) and where the browser goes after
// (a post_logout_redirect_uri registered for that client, exactly; with `state`). Anything else is
// shown to the user and never redirected to (no open redirect).
import type { Client, Clients } from "./clients.ts";
import type { IdTokenClaims, IdTokens } from "./id-tokens.ts";

/** A logout request that cannot be honoured as asked: shown, never redirected. */
export class InvalidLogoutRequest extends Error {
  override name = "InvalidLogoutRequest";
}

export interface LogoutRequest {
  client: Client | undefined;
  /** The ID token hint's claims, its signature checked. */
  hint: IdTokenClaims | undefined;
  /** Where to send the browser after: registered for the client, with state added (§3). */
  redirectTo: string | undefined;
  /** The request's parameters, for the confirmation form. */
  fields: [string, string][];
}

const PARAMETERS = ["id_token_hint", "logout_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales"] as const;
const MAX_LENGTH = 4096;

export async function validateLogoutRequest(
  deps: { clients: Clients; idTokens: IdTokens },
  params: URLSearchParams,
): Promise<LogoutRequest> {
  const value = (name: string): string | undefined => {
    const values = params.getAll(name);
    if (values.length > 1) throw new InvalidLogoutRequest(`parameter ${name} is repeated`);
    if (values[0] !== undefined && values[0].length > MAX_LENGTH) throw new InvalidLogoutRequest(`parameter ${name} is too long`);
    return values[0] || undefined;
  };
  const fields = PARAMETERS.flatMap((name): [string, string][] => {
    const v = value(name);
    return v === undefined ? [] : [[name, v]];
  });
  const hintToken = value("id_token_hint");
  const hint = hintToken === undefined ? undefined : await deps.idTokens.read(hintToken);
  if (hintToken !== undefined && !hint) throw new InvalidLogoutRequest("id_token_hint is not an ID token of this server");
  const hintedClient = hint ? (Array.isArray(hint.aud) ? (hint.aud.length === 1 ? hint.aud[0] : hint.azp) : hint.aud) : undefined;
  const clientId = value("client_id");
  // §2: "If both client_id and id_token_hint are present, the OP MUST verify that the Client Identifier matches the one used when issuing the ID Token."
  if (clientId !== undefined && hintedClient !== undefined && clientId !== hintedClient) {
    throw new InvalidLogoutRequest("client_id is not the client the id_token_hint was issued to");
  }
  const id = clientId ?? hintedClient;
  const client = id === undefined ? undefined : await deps.clients.find(id).catch(() => undefined);
  if (id !== undefined && !client) throw new InvalidLogoutRequest("unknown client");
  const redirect = value("post_logout_redirect_uri");
  let redirectTo: string | undefined;
  if (redirect !== undefined) {
    // §2: the OP "MUST NOT perform post-logout redirection unless" it can tell the client wants it; §3.1: registered URIs, compared exactly.
    if (!client) throw new InvalidLogoutRequest("post_logout_redirect_uri needs id_token_hint or client_id");
    const registered = client.metadata.post_logout_redirect_uris;
    if (!Array.isArray(registered) || !registered.includes(redirect)) {
      throw new InvalidLogoutRequest("post_logout_redirect_uri is not registered for this client");
    }
    const url = new URL(redirect);
    const state = value("state");
    if (state !== undefined) url.searchParams.append("state", state);
    redirectTo = url.toString();
  }
  return { client, hint, redirectTo, fields };
}
