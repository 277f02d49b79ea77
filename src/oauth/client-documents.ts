// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-01, as the MCP
// authorization spec profiles it): a client_id that is an https URL names a JSON document, the
// client's registration, which this server fetches (src/outbound.ts), validates through the one
// metadata validation path (registration.ts), stores as a public client (so its sessions,
// consents and revocations work like any client's) and trusts until its HTTP freshness runs out.
// Nothing about a failed fetch or an invalid document is kept.
import type { ClientIdDocumentPolicy, Config } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { ClientStore } from "../../db/stores/clients.ts";
import type { Metrics } from "../metrics.ts";
import type { Outbound } from "../outbound.ts";
import { OutboundError } from "../outbound.ts";
import type { Client } from "./clients.ts";
import { clientFields, validateMetadata } from "./registration.ts";

/** The bounds: 5 s, 64 KiB (the draft recommends documents of at most 5 KB). */
export const DOCUMENT_TIMEOUT_MS = 5000;
export const DOCUMENT_MAX_BYTES = 64 * 1024;
/** A document is trusted at least this long, whatever its headers say (bounded refetching). */
export const DOCUMENT_MIN_AGE = 60;
/** Without freshness information (RFC 9111 §4.2.2 leaves the heuristic to the cache). */
export const DOCUMENT_DEFAULT_AGE = 3600;
/** Documents fetched at once, at most (each coalesced per URL). */
const MAX_FETCHES_IN_FLIGHT = 32;
const MAX_CLIENT_ID_LENGTH = 2048;

export type DocumentDeps = {
  store: ClientStore;
  outbound: Outbound;
  config: Pick<Config, "scopes" | "clientIdDocuments" | "clientDocumentMaxAge">;
  metrics: Pick<Metrics, "clientDocuments">;
  now?: () => number;
  /** The fetch's time bound; DOCUMENT_TIMEOUT_MS unless a test needs it shorter. */
  timeoutMs?: number;
};

const refuse = (description: string) => OAuthError.invalidClient(`client metadata document: ${description}`);

/** The draft's §3 rules for a client identifier URL; answers the parsed URL or throws invalid_client. */
function checkClientIdUrl(clientId: string, outbound: Outbound): URL {
  if (clientId.length > MAX_CLIENT_ID_LENGTH) throw refuse("the client_id URL is too long");
  let url: URL;
  try {
    url = new URL(clientId);
  } catch {
    throw refuse("the client_id is not a URL");
  }
  // "Client identifier URLs MUST have an "https" scheme" (plain http only for a host of
  // TA_OUTBOUND_ALLOW_HOSTS: local development and tests).
  if (url.protocol !== "https:" && !(url.protocol === "http:" && outbound.allows(url))) throw refuse("the client_id URL must use https");
  // "... MUST contain a path component, MUST NOT contain single-dot or double-dot path segments,
  // MUST NOT contain a fragment component and MUST NOT contain a username or password".
  if (url.pathname === "/" || url.pathname === "") throw refuse("the client_id URL must have a path");
  const rawPath = clientId.slice(clientId.indexOf("/", clientId.indexOf("//") + 2)).split(/[?#]/)[0]!;
  if (rawPath.split("/").some((segment) => /^(\.|%2e){1,2}$/i.test(segment))) throw refuse("the client_id URL must not have . or .. segments");
  if (clientId.includes("#")) throw refuse("the client_id URL must not have a fragment");
  if (url.username || url.password || /^[a-z]+:\/\/[^/]*@/i.test(clientId)) throw refuse("the client_id URL must not hold a user name or password");
  return url;
}

function hostAllowed(policy: ClientIdDocumentPolicy, url: URL): boolean {
  if (policy.mode !== "hosts") return policy.mode === "all";
  const host = url.hostname.toLowerCase();
  return policy.hosts.has(host) || policy.hosts.has(`${host}:${url.port || (url.protocol === "https:" ? "443" : "80")}`) ||
    (url.port !== "" && policy.hosts.has(`${host}:${url.port}`));
}

/**
 * Seconds the document stays fresh by its headers (RFC 9111 §4.2.1: s-maxage, max-age, then
 * Expires − Date, less Age), within [DOCUMENT_MIN_AGE, maxAge]; no-store and no-cache get the
 * minimum (the draft lets the server set its own bounds).
 */
export function freshnessSeconds(headers: Headers, maxAge: number, now: number): number {
  const control = (headers.get("cache-control") ?? "").toLowerCase();
  const directive = (name: string) => new RegExp(`(?:^|,)\\s*${name}\\s*=\\s*"?(\\d+)`).exec(control)?.[1];
  let lifetime: number | undefined;
  if (/(?:^|,)\s*(no-store|no-cache)\b/.test(control)) lifetime = 0;
  else {
    const seconds = directive("s-maxage") ?? directive("max-age");
    if (seconds !== undefined) lifetime = Number(seconds);
    else if (headers.has("expires")) {
      const expires = Date.parse(headers.get("expires")!);
      const date = Date.parse(headers.get("date") ?? "") || now;
      lifetime = Number.isNaN(expires) ? 0 : Math.max(0, Math.floor((expires - date) / 1000));
    }
  }
  const age = Number(headers.get("age") ?? 0) || 0;
  const fresh = lifetime === undefined ? DOCUMENT_DEFAULT_AGE : lifetime - age;
  return Math.min(maxAge, Math.max(DOCUMENT_MIN_AGE, fresh));
}

const JSON_TYPE = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i;

export class ClientDocuments {
  private readonly inFlight = new Map<string, Promise<Client>>();
  private readonly now: () => number;

  constructor(private readonly deps: DocumentDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Whether the server publishes client_id_metadata_document_supported. */
  get enabled(): boolean {
    return this.deps.config.clientIdDocuments.mode !== "none";
  }

  /**
   * A client_id that names a metadata document: an https URL (or http to an allowed host). The
   * server's own ids are random base64url and never contain ":" (the draft: an AS supporting
   * both "SHOULD ensure that the client_id strings it generates do not start with https://").
   */
  recognizes(clientId: string): boolean {
    return clientId.startsWith("https://") || clientId.startsWith("http://");
  }

  /** The client the document names: stored and fresh, or fetched now. Throws invalid_client. */
  async resolve(clientId: string): Promise<Client> {
    const { store, config, metrics } = this.deps;
    if (!this.enabled) throw refuse("this server does not accept client ID metadata documents");
    const url = checkClientIdUrl(clientId, this.deps.outbound);
    if (!hostAllowed(config.clientIdDocuments, url)) throw refuse(`${url.host} may not serve client metadata documents here`);
    const stored = await store.find(clientId);
    if (stored && (stored.registration !== "document" || (stored.documentExpiresAt?.getTime() ?? 0) > this.now())) {
      metrics.clientDocuments.inc({ result: "cached" });
      return stored;
    }
    let pending = this.inFlight.get(clientId);
    if (!pending) {
      if (this.inFlight.size >= MAX_FETCHES_IN_FLIGHT) throw OAuthError.temporarilyUnavailable("too many client metadata documents are being fetched");
      pending = this.fetchAndStore(clientId).finally(() => this.inFlight.delete(clientId));
      this.inFlight.set(clientId, pending);
    }
    return pending;
  }

  private async fetchAndStore(clientId: string): Promise<Client> {
    const { store, config, metrics } = this.deps;
    try {
      const { document, headers } = await this.fetchDocument(clientId);
      const metadata = validateDocument(document, clientId, config);
      const fields = clientFields(metadata);
      const client = await store.saveDocument({
        clientId,
        name: fields.name || new URL(clientId).host,
        type: "public",
        secretHash: null,
        tokenEndpointAuthMethod: "none",
        redirectUris: metadata.redirect_uris,
        grantTypes: metadata.grant_types,
        responseTypes: metadata.response_types,
        scope: fields.scope,
        accessTokenTtl: null,
        refreshTokenTtl: null,
        resourceServer: null,
        metadata: fields.metadata,
        documentExpiresAt: new Date(this.now() + freshnessSeconds(headers, config.clientDocumentMaxAge, this.now()) * 1000),
      });
      if (!client) throw refuse("the client_id is registered here in another way");
      metrics.clientDocuments.inc({ result: "fetched" });
      return client;
    } catch (error) {
      if (error instanceof OAuthError && error.code === "invalid_client") metrics.clientDocuments.inc({ result: "refused" });
      throw error;
    }
  }

  /** GET the document by the draft's §4 rules: 200 only, no redirects, JSON, bounded. */
  private async fetchDocument(clientId: string): Promise<{ document: unknown; headers: Headers }> {
    let response;
    try {
      response = await this.deps.outbound.fetch("client_metadata_document", clientId, {
        headers: { accept: "application/json" },
        timeoutMs: this.deps.timeoutMs ?? DOCUMENT_TIMEOUT_MS,
        maxBytes: DOCUMENT_MAX_BYTES,
        // "The authorization server MUST NOT automatically follow HTTP redirects".
        maxRedirects: 0,
      });
    } catch (error) {
      if (error instanceof OutboundError) throw refuse(error.message);
      throw error;
    }
    // "A successful response MUST use the 200 OK HTTP status code ... MUST treat all other HTTP
    // status codes as an error response."
    if (response.status !== 200) throw refuse(`fetching it answered HTTP ${response.status}, not 200`);
    const type = response.headers.get("content-type") ?? "";
    if (!JSON_TYPE.test(type)) throw refuse(`it must be served as JSON, not ${JSON.stringify(type.slice(0, 60) || "without a content type")}`);
    let document: unknown;
    try {
      document = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(response.body));
    } catch {
      throw refuse("it is not valid JSON");
    }
    return { document, headers: response.headers };
  }
}

/** The draft's §4.1 rules on top of RFC 7591's, then the one metadata validation path. */
function validateDocument(document: unknown, clientId: string, config: Pick<Config, "scopes">) {
  if (typeof document !== "object" || document === null || Array.isArray(document)) throw refuse("it must be a JSON object");
  const fields = document as Record<string, unknown>;
  // "MUST contain a client_id property whose value MUST match the URL of the document using
  // simple string comparison".
  if (fields.client_id !== clientId) throw refuse("its client_id does not match the URL it was fetched from");
  // "the client_secret and client_secret_expires_at properties MUST NOT be used".
  if ("client_secret" in fields || "client_secret_expires_at" in fields) throw refuse("it must not contain a client_secret");
  if (!Array.isArray(fields.redirect_uris) || fields.redirect_uris.length === 0) throw refuse("it must list redirect_uris");
  try {
    return validateMetadata(fields, config, { document: true });
  } catch (error) {
    if (error instanceof OAuthError) throw refuse(error.description ?? error.code);
    throw error;
  }
}
