// Protected resource metadata (RFC 9728): the document that tells a client which authorization
// server issues tokens for this resource, where it is published (§3.1), and how it is served.
import { advertisedScopes, jsonError } from "./errors.ts";

export const WELL_KNOWN_PATH = "/.well-known/oauth-protected-resource";

/** What the metadata document says besides the resource and its authorization server. */
export interface ResourceMetadataOptions {
  /** `scopes_supported`: the scopes a client may ask for (offline_access is never listed). */
  scopes?: readonly string[];
  /** `resource_name`: a human-readable name of the resource. */
  name?: string;
  /** `resource_documentation`: a URL of documentation for developers. */
  documentation?: string;
}

/** RFC 9728 §2. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  scopes_supported?: string[];
  bearer_methods_supported: string[];
  resource_name?: string;
  resource_documentation?: string;
}

/**
 * RFC 9728 §3.1: the well-known path is inserted between the host and the path (and query) of
 * the resource identifier, `https://h/mcp` → `https://h/.well-known/oauth-protected-resource/mcp`;
 * "any terminating slash (/) following the host component MUST be removed" first.
 */
export function protectedResourceMetadataUrl(resource: string): string {
  const url = URL.canParse(resource) ? new URL(resource) : undefined;
  if (!url || !/^https?:$/.test(url.protocol)) throw new TypeError(`a resource identifier is an http or https URL, not ${JSON.stringify(resource)}`);
  return `${url.origin}${WELL_KNOWN_PATH}${url.pathname === "/" ? "" : url.pathname}${url.search}`;
}

/**
 * The metadata document of `resource`, whose tokens `issuer` issues. RFC 9728 §3.3: its
 * `resource` "MUST be identical to the protected resource's resource identifier value" from
 * which the URL was derived, so it is the configured string as it stands.
 */
export function protectedResourceMetadata(resource: string, issuer: string, options: ResourceMetadataOptions = {}): ProtectedResourceMetadata {
  const scopes = advertisedScopes(options.scopes ?? []);
  return {
    resource,
    authorization_servers: [issuer],
    ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
    // RFC 6750 §2.1 only: a token in a form body or a query string is not accepted.
    bearer_methods_supported: ["header"],
    ...(options.name ? { resource_name: options.name } : {}),
    ...(options.documentation ? { resource_documentation: options.documentation } : {}),
  };
}

/** Public and credential-free: any origin may read it (browser MCP clients do), briefly cached. */
const PUBLIC = { "Access-Control-Allow-Origin": "*" };

/** The answer at the metadata URL: the document to GET (and HEAD), a CORS preflight to OPTIONS. */
export function resourceMetadataResponse(document: ProtectedResourceMetadata, method: string): Response {
  if (method === "OPTIONS") {
    return new Response(null, {
      status: 204,
      headers: { ...PUBLIC, "Access-Control-Allow-Methods": "GET", "Access-Control-Allow-Headers": "*", "Access-Control-Max-Age": "600" },
    });
  }
  if (method !== "GET" && method !== "HEAD") {
    return jsonError(405, "method_not_allowed", "the metadata is read with GET", { Allow: "GET, HEAD, OPTIONS" });
  }
  return new Response(JSON.stringify(document), {
    headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "public, max-age=300", ...PUBLIC },
  });
}
