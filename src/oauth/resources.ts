// Resource indicators (RFC 8707): the APIs and MCP servers tokens are for — the configured ones
// (TA_DEFAULT_AUDIENCE, TA_RESOURCES) and those an operator registered (db/stores/resources.ts)
// — compared after RFC 3986 normalisation, and the audience of an issued token, narrowed to one
// requested resource, never widened beyond what was granted.
import type { ResourceStore } from "../../db/stores/resources.ts";
import type { Config, ProtectedResource } from "../config.ts";
import { OAuthError } from "../errors.ts";
import { parseScope } from "./scopes.ts";

export type { ProtectedResource };

/**
 * RFC 8707 §2: an absolute URI without a fragment, else invalid_target; answered normalised
 * (RFC 3986 §6.2.2, §6.2.3: scheme and host in lower case, no default port, an empty path as
 * "/", dot segments removed), so `http://Host:80` and `http://host/` are one resource.
 */
export function parseResource(resource: string): string {
  let url: URL;
  try {
    url = new URL(resource);
  } catch {
    throw OAuthError.invalidTarget("resource must be an absolute URI");
  }
  // RFC 8707 §2: "It MUST NOT include a fragment component."
  if (resource.includes("#") || url.hash) throw OAuthError.invalidTarget("resource must not contain a fragment");
  return url.href;
}

/** The normalised form of a resource URI, or the string itself when it is not one. */
export function normalizeResource(resource: string): string {
  try {
    return new URL(resource).href;
  } catch {
    return resource;
  }
}

/**
 * The audience of the token: the allowed resource a request names (as it was granted), else
 * invalid_target; without a request, every allowed resource.
 */
export function narrowAudience(requested: string | undefined, allowed: readonly string[]): string[] {
  if (requested === undefined) return [...allowed];
  const resource = parseResource(requested);
  const granted = allowed.find((candidate) => normalizeResource(candidate) === resource);
  if (granted === undefined) throw OAuthError.invalidTarget("the resource is not one this grant allows");
  return [granted];
}

/** How long the registered resources are remembered between reloads (changes also reload at once). */
const CACHE_MS = 30_000;

export class Resources {
  private cached: { at: number; list: Promise<ProtectedResource[]> } | undefined;

  constructor(
    private readonly store: ResourceStore,
    private readonly config: Pick<Config, "resources" | "defaultAudience" | "scopes">,
  ) {}

  /** Every resource an authorization request may name: the configured and the registered. */
  all(): Promise<ProtectedResource[]> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at > CACHE_MS) {
      const list = this.load();
      this.cached = { at: now, list };
      list.catch(() => (this.cached = undefined));
    }
    return this.cached.list;
  }

  /** The resource a URI names (after normalisation), if tokens may be for it. */
  async find(uri: string): Promise<ProtectedResource | undefined> {
    const wanted = normalizeResource(uri);
    return (await this.all()).find((resource) => normalizeResource(resource.resource) === wanted);
  }

  /** Registers a resource (or changes its scopes); answers it as stored. */
  async add(uri: string, scopes: readonly string[]): Promise<ProtectedResource> {
    let resource: string;
    try {
      resource = parseResource(uri);
    } catch (error) {
      throw OAuthError.invalidRequest((error as OAuthError).description);
    }
    if (!/^https?:$/.test(new URL(resource).protocol)) throw OAuthError.invalidRequest("a resource is an http or https URI");
    const unknown = scopes.filter((scope) => !this.config.scopes.includes(scope));
    if (unknown.length > 0) throw OAuthError.invalidRequest(`scope not known to the server (TA_SCOPES): ${unknown.join(" ").slice(0, 100)}`);
    const row = await this.store.put(resource, [...new Set(scopes)].join(" "));
    this.forget();
    return { resource: row.uri, scopes: parseScope(row.scope) };
  }

  async remove(uri: string): Promise<boolean> {
    const removed = await this.store.remove(normalizeResource(uri));
    this.forget();
    return removed;
  }

  /** Drops the cache (a change here, or another instance said so). */
  forget(): void {
    this.cached = undefined;
  }

  private async load(): Promise<ProtectedResource[]> {
    const registered = (await this.store.list()).map((row) => ({ resource: row.uri, scopes: parseScope(row.scope) }));
    // (TA_RESOURCES, or — when it is unset — the default audience with every scope.)
    const seen = new Set<string>();
    return [...this.config.resources, ...registered].filter((resource) => {
      const key = normalizeResource(resource.resource);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
}
