// Client authentication (RFC 6749 §2.3): client_secret_basic, client_secret_post, and public
// clients identified by client_id alone (RFC 6749 §2.3.1, §3.2.1).
import { OAuthError } from "../errors.ts";
import { FailureThrottle } from "../throttle.ts";
import type { Client, Clients } from "./clients.ts";
import { secretMatches } from "./clients.ts";

export interface ClientCredentials {
  authorization: string | undefined;
  clientId: string | undefined;
  clientSecret: string | undefined;
}

export type ClientAuthMethod = "client_secret_basic" | "client_secret_post" | "none";

export interface AuthenticatedClient {
  client: Client;
  method: ClientAuthMethod;
}

export const BASIC_REALM = 'Basic realm="token-authority", charset="UTF-8"';

function decodeComponent(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, " "));
  } catch {
    throw OAuthError.invalidRequest("malformed Basic credentials");
  }
}

/** Splits Basic credentials; both parts are form-urlencoded inside (RFC 6749 §2.3.1). */
function parseBasic(header: string): { id: string; secret: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { id: decodeComponent(decoded.slice(0, colon)), secret: decodeComponent(decoded.slice(colon + 1)) };
}

export async function authenticateClient(store: Clients, credentials: ClientCredentials): Promise<AuthenticatedClient> {
  const { authorization, clientId, clientSecret } = credentials;
  if (authorization !== undefined && /^Basic\b/i.test(authorization)) {
    const fail = (description: string) => OAuthError.invalidClient(description, { "WWW-Authenticate": BASIC_REALM });
    const basic = parseBasic(authorization);
    if (!basic || basic.id === "") throw fail("malformed Basic credentials");
    // RFC 6749 §2.3: the client MUST NOT use more than one authentication method per request.
    if (clientSecret !== undefined) throw OAuthError.invalidRequest("more than one client authentication method");
    if (clientId !== undefined && clientId !== basic.id) throw OAuthError.invalidRequest("client_id does not match the Basic credentials");
    const client = await store.find(basic.id);
    if (!client || client.type !== "confidential" || !secretMatches(client, basic.secret)) {
      throw fail("client authentication failed");
    }
    return { client, method: "client_secret_basic" };
  }
  if (clientId === undefined) throw OAuthError.invalidClient("client authentication is required");
  const client = await store.find(clientId);
  if (clientSecret !== undefined) {
    if (!client || client.type !== "confidential" || !secretMatches(client, clientSecret)) {
      throw OAuthError.invalidClient("client authentication failed");
    }
    return { client, method: "client_secret_post" };
  }
  if (!client || client.type !== "public") throw OAuthError.invalidClient("client authentication failed");
  return { client, method: "none" };
}

/** The client id a request claims (Basic credentials first, then the form), unverified. */
export function presentedClientId({ authorization, clientId }: ClientCredentials): string | undefined {
  if (authorization !== undefined && /^Basic\b/i.test(authorization)) {
    try {
      return parseBasic(authorization)?.id.slice(0, 256) || undefined;
    } catch {
      return undefined;
    }
  }
  return clientId?.slice(0, 256);
}

export interface ClientAuthLimits {
  authFailureLimit: number;
  authFailureIpLimit: number;
  authFailureWindow: number;
}

export type ThrottledBy = "client_id" | "ip";

/**
 * Throttles guessing of client credentials: failures are counted per presented client id and
 * per source address when it is known (in process). A success resets its client id's count,
 * not its address's.
 */
export class ClientAuthGuard {
  private readonly byClient: FailureThrottle;
  private readonly byAddress: FailureThrottle;

  constructor(limits: ClientAuthLimits, now?: () => number) {
    this.byClient = new FailureThrottle({ limit: limits.authFailureLimit, windowSeconds: limits.authFailureWindow, now });
    this.byAddress = new FailureThrottle({ limit: limits.authFailureIpLimit, windowSeconds: limits.authFailureWindow, now });
  }

  /**
   * Which limit refuses this attempt and for how many seconds, if any. `address` is asked only
   * when some address has failed: reading the peer's address was 2–3 % of a revocation's server CPU.
   */
  refusal(clientId: string | undefined, address: () => string | undefined): { by: ThrottledBy; retryAfter: number } | undefined {
    const byClient = clientId === undefined ? 0 : this.byClient.retryAfter(clientId);
    if (byClient > 0) return { by: "client_id", retryAfter: byClient };
    if (this.byAddress.empty) return undefined;
    const ip = address();
    const byAddress = ip === undefined ? 0 : this.byAddress.retryAfter(ip);
    if (byAddress > 0) return { by: "ip", retryAfter: byAddress };
    return undefined;
  }

  failed(clientId: string | undefined, address: string | undefined): void {
    if (clientId !== undefined) this.byClient.fail(clientId);
    if (address !== undefined) this.byAddress.fail(address);
  }

  succeeded(clientId: string): void {
    this.byClient.reset(clientId);
  }
}
