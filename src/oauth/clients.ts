// Registered clients: creation (an id and a secret of their own, the secret shown once and
// stored as SHA-256), lookup (db/stores/clients.ts, cached), and constant-time secret comparison.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Client, ClientMetadata } from "../../db/schema.ts";
import type { ClientStore } from "../../db/stores/clients.ts";

export type { Client };

export type TokenEndpointAuthMethod = "client_secret_basic" | "client_secret_post" | "none";
export const GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

export interface NewClient {
  name: string;
  type: "confidential" | "public";
  tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
  redirectUris?: string[];
  grantTypes?: string[];
  responseTypes?: string[];
  scope?: string;
  accessTokenTtl?: number | null;
  refreshTokenTtl?: number | null;
  resourceServer?: string | null;
  metadata?: ClientMetadata;
  /** operator (CLI, admin API) unless said otherwise. */
  registration?: "operator" | "dynamic";
}

export interface CreatedClient {
  client: Client;
  /** The secret in clear, returned once and never stored. */
  secret: string | undefined;
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/**
 * Constant-time comparison of a presented secret with the stored hash — and, through a rotation's
 * grace period, with the previous one (both compared every time, so timing tells nothing).
 */
export function secretMatches(client: Client, presented: string, now = Date.now()): boolean {
  if (!client.secretHash) return false;
  const actual = createHash("sha256").update(presented).digest();
  const equal = (hash: string) => {
    const expected = Buffer.from(hash, "hex");
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  };
  const current = equal(client.secretHash);
  const previous = client.previousSecretHash !== null && equal(client.previousSecretHash);
  return current || (previous && client.previousSecretExpiresAt !== null && client.previousSecretExpiresAt.getTime() > now);
}

const randomToken = (bytes: number) => randomBytes(bytes).toString("base64url");

/**
 * A new client id: 128 random bits, base64url, never beginning with "-" or "_" — a leading "-"
 * made the id read as a flag on the command line (`--client -Bb…`), and so failed 1 CLI run in 64.
 */
export function newClientId(): string {
  for (;;) {
    const id = randomToken(16);
    if (/^[A-Za-z0-9]/.test(id)) return id;
  }
}

/** A new client secret: 256 random bits, base64url (shown once, stored as its SHA-256). */
export const newSecret = () => randomToken(32);

/** Resolves client ids that are URLs of client ID metadata documents (client-documents.ts). */
export interface DocumentResolver {
  recognizes(clientId: string): boolean;
  resolve(clientId: string): Promise<Client>;
}

export class Clients {
  constructor(
    private readonly store: ClientStore,
    private readonly documents?: DocumentResolver,
  ) {}

  async create(input: NewClient): Promise<CreatedClient> {
    const confidential = input.type === "confidential";
    const secret = confidential ? newSecret() : undefined;
    const defaultGrants = confidential ? ["client_credentials"] : ["authorization_code", "refresh_token"];
    const grantTypes = input.grantTypes?.length ? input.grantTypes : defaultGrants;
    const client = await this.store.insert({
      clientId: newClientId(),
      registration: input.registration ?? "operator",
      name: input.name,
      type: input.type,
      secretHash: secret ? hashSecret(secret) : null,
      tokenEndpointAuthMethod: input.tokenEndpointAuthMethod ?? (confidential ? "client_secret_basic" : "none"),
      redirectUris: input.redirectUris ?? [],
      grantTypes,
      responseTypes: input.responseTypes ?? (grantTypes.includes("authorization_code") ? ["code"] : []),
      scope: input.scope ?? "",
      accessTokenTtl: input.accessTokenTtl ?? null,
      refreshTokenTtl: input.refreshTokenTtl ?? null,
      resourceServer: input.resourceServer ?? null,
      metadata: input.metadata ?? {},
    });
    return { client, secret };
  }

  /**
   * The client an id names: a registered one, or the one a client ID metadata document describes
   * (fetched when not fresh; throws invalid_client with the reason when it cannot be used).
   */
  find(clientId: string): Promise<Client | undefined> {
    if (this.documents?.recognizes(clientId)) return this.documents.resolve(clientId);
    return this.store.find(clientId);
  }

  list(): Promise<Client[]> {
    return this.store.list();
  }
}
