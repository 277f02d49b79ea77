// Scopes (RFC 6749 §3.3): parsing a scope string and narrowing a request against what the
// server knows and what was granted. A scope is never widened.
import { OAuthError } from "../errors.ts";

/**
 * The scope of the admin API's bearer tokens (client_credentials only). No server scope list
 * (TA_SCOPES) holds it: only an operator can give it to a client (src/oauth/registration.ts).
 */
export const ADMIN_SCOPE = "ta:admin";

/**
 * The scope of a Shared Signals receiver's bearer tokens (client_credentials only): it manages
 * its own streams and polls them. Like ADMIN_SCOPE, only an operator can give it, since its
 * streams carry security events about every user.
 */
export const SSF_SCOPE = "ssf";

/** Scopes only an operator gives, each to a client_credentials client. */
export const OPERATOR_SCOPES: readonly string[] = [ADMIN_SCOPE, SSF_SCOPE];

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** Splits a space-delimited scope string into its distinct tokens, in order. */
export function parseScope(scope: string): string[] {
  return [...new Set(scope.split(" ").filter((token) => token !== ""))];
}

/**
 * The scope to issue: the requested one if every token of it is known to the server and
 * within `granted`, else invalid_scope; without a request, `granted` itself (RFC 6749 §3.3,
 * §6: the requested scope MUST NOT include any scope not originally granted).
 */
export function narrowScope(requested: string | undefined, granted: string, serverScopes: readonly string[]): string {
  if (requested === undefined) return parseScope(granted).join(" ");
  const allowed = new Set(parseScope(granted));
  const known = new Set(serverScopes);
  const tokens = parseScope(requested);
  for (const token of tokens) {
    if (!SCOPE_TOKEN.test(token) || !known.has(token)) throw OAuthError.invalidScope("unknown scope");
    if (!allowed.has(token)) throw OAuthError.invalidScope(`scope "${token}" was not granted to this client`);
  }
  return tokens.join(" ");
}

/** Checks a scope string is well-formed and known to the server; returns it normalized. */
export function knownScope(scope: string, serverScopes: readonly string[]): string {
  return narrowScope(scope, serverScopes.join(" "), serverScopes);
}
