// Registered clients: creation (secret shown once, stored as SHA-256), lookup with a short
// in-process cache (client authentication must not cost a round trip on the hot path), and
// constant-time secret comparison.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { desc, eq } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import type { Client, ClientMetadata } from "../../db/schema.ts";
import { clients } from "../../db/schema.ts";

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
}

export interface CreatedClient {
  client: Client;
  /** The secret in clear, returned once and never stored. */
  secret: string | undefined;
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** Constant-time comparison of a presented secret with the stored hash. */
export function secretMatches(client: Client, presented: string): boolean {
  if (!client.secretHash) return false;
  const expected = Buffer.from(client.secretHash, "hex");
  const actual = createHash("sha256").update(presented).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

const randomToken = (bytes: number) => randomBytes(bytes).toString("base64url");

export class ClientStore {
  private readonly cache = new Map<string, { client: Client | undefined; until: number }>();

  constructor(
    private readonly database: Database,
    /** Seconds a looked-up client is remembered; 0 disables the cache. */
    private readonly cacheTtl: number,
  ) {}

  async create(input: NewClient): Promise<CreatedClient> {
    const confidential = input.type === "confidential";
    const secret = confidential ? randomToken(32) : undefined; // 256 bits
    const defaultGrants = confidential ? ["client_credentials"] : ["authorization_code", "refresh_token"];
    const grantTypes = input.grantTypes?.length ? input.grantTypes : defaultGrants;
    const [client] = await this.database.db
      .insert(clients)
      .values({
        clientId: randomToken(16),
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
      })
      .returning();
    this.cache.delete(client!.clientId);
    return { client: client!, secret };
  }

  async find(clientId: string): Promise<Client | undefined> {
    // PostgreSQL text cannot hold NUL: such an id names no client (and would fail the query).
    if (clientId.includes("\0")) return undefined;
    const now = Date.now();
    const cached = this.cache.get(clientId);
    if (cached && cached.until > now) return cached.client;
    const [client] = await this.database.db.select().from(clients).where(eq(clients.clientId, clientId)).limit(1);
    if (this.cacheTtl > 0) {
      if (this.cache.size > 10_000) this.cache.clear();
      // Unknown ids are remembered briefly too, so random ids cannot hammer the database.
      this.cache.set(clientId, { client, until: now + (client ? this.cacheTtl : Math.min(this.cacheTtl, 5)) * 1000 });
    }
    return client;
  }

  list(): Promise<Client[]> {
    return this.database.db.select().from(clients).orderBy(desc(clients.createdAt));
  }
}
