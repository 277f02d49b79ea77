// The fetch-handler form: protect(verifier, handler) is a `(request) => Promise<Response>` for
// Bun.serve, Deno, workers or any router, that answers the resource's RFC 9728 metadata itself
// and hands every other request to the handler only with a verified bearer token.
//   Bun.serve({ fetch: protect(verifier, (request, claims) => Response.json({ sub: claims.sub }), { scopes: ["read"] }) })
import { BearerError, jsonError } from "./errors.ts";
import { resourceMetadataResponse, WELL_KNOWN_PATH } from "./metadata.ts";
import type { AccessTokenClaims, AccessTokenVerifier } from "./verifier.ts";

export type ProtectedHandler = (request: Request, claims: AccessTokenClaims) => Response | Promise<Response>;

export interface ProtectOptions {
  /** The scopes every request needs (what a 401 asks for). Default none: any valid token. */
  scopes?: readonly string[];
}

/**
 * A BearerError the verifier or the handler throws (use `verifier.requireScopes` for a need the
 * handler finds) becomes its response: status, challenge, JSON body, `Cache-Control: no-store`.
 */
export function protect(verifier: AccessTokenVerifier, handler: ProtectedHandler, options: ProtectOptions = {}) {
  const scopes = options.scopes ?? [];
  const metadataPath = new URL(verifier.resourceMetadataUrl).pathname;
  return async (request: Request): Promise<Response> => {
    const { pathname } = new URL(request.url);
    if (pathname === metadataPath) return resourceMetadataResponse(verifier.resourceMetadata, request.method);
    // RFC 9728 §3.3: the document is served only at the path derived from its resource.
    if (pathname === WELL_KNOWN_PATH || pathname.startsWith(`${WELL_KNOWN_PATH}/`)) {
      return jsonError(404, "not_found", `the metadata of this resource is at ${metadataPath}`);
    }
    try {
      return await handler(request, await verifier.verifyRequest(request, scopes));
    } catch (error) {
      if (error instanceof BearerError) return error.toResponse();
      throw error;
    }
  };
}
