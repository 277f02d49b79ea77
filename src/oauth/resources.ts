// Resource indicators (RFC 8707): the audience of an issued token, narrowed to one requested
// resource, never widened beyond what was granted.
import { OAuthError } from "../errors.ts";

/** RFC 8707 §2: an absolute URI without a fragment, else invalid_target. */
export function parseResource(resource: string): string {
  let url: URL;
  try {
    url = new URL(resource);
  } catch {
    throw OAuthError.invalidTarget("resource must be an absolute URI");
  }
  // RFC 8707 §2: "It MUST NOT include a fragment component."
  if (resource.includes("#") || url.hash) throw OAuthError.invalidTarget("resource must not contain a fragment");
  return resource;
}

/**
 * The audience of the token: `[requested]` when it is one of `allowed`, else invalid_target;
 * without a request, every allowed resource.
 */
export function narrowAudience(requested: string | undefined, allowed: readonly string[]): string[] {
  if (requested === undefined) return [...allowed];
  const resource = parseResource(requested);
  if (!allowed.includes(resource)) throw OAuthError.invalidTarget("the resource is not one this grant allows");
  return [resource];
}
