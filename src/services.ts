// Builds the domain services from injected dependencies; shared by the HTTP app and the CLI.
import { sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { createMetrics } from "./metrics.ts";
import { ClientAuthGuard } from "./oauth/client-auth.ts";
import { ClientStore } from "./oauth/clients.ts";
import { IntrospectionService } from "./oauth/introspection.ts";
import { IntrospectionCache } from "./oauth/introspection-cache.ts";
import { KeyStore } from "./oauth/keys.ts";
import { RevocationService } from "./oauth/revocation.ts";
import { RevocationFeed } from "./oauth/revocation-feed.ts";
import { RevocationNotifier } from "./oauth/revocation-notifier.ts";
import { SessionService } from "./oauth/sessions.ts";
import type { TokenService } from "./oauth/tokens.ts";
import { createTokenService } from "./oauth/tokens.ts";
import { TokenVerifier } from "./oauth/verification.ts";

export interface Deps {
  config: Config;
  database: Database;
  log: Logger;
  /** Milliseconds since the epoch; tests inject a fixed clock. */
  now?: () => number;
  /** Prometheus metrics; created (with pool figures of `database`) when not given. */
  metrics?: Metrics;
}

export interface Services extends Required<Deps> {
  keys: KeyStore;
  clients: ClientStore;
  /** Per-instance throttling of failed client authentication (shared by every endpoint). */
  clientAuthGuard: ClientAuthGuard;
  tokens: TokenService;
  sessions: SessionService;
  revocation: RevocationService;
  notifier: RevocationNotifier;
  verifier: TokenVerifier;
  introspection: IntrospectionService;
  /** Verified live tokens for introspection; absent when TA_INTROSPECTION_CACHE_TTL is 0. */
  introspectionCache: IntrospectionCache | undefined;
  /** The revocation feed: one LISTEN per process, shared by every subscriber. */
  feed: RevocationFeed;
}

/** Longest lifetime of any token this server may have signed, in seconds. */
async function maxTokenLifetime(database: Database, config: Config): Promise<number> {
  const [row] = await database.rows<{ longest: number | null }>(
    sql`select max(greatest(coalesce(access_token_ttl, 0), coalesce(refresh_token_ttl, 0))) as longest from clients`,
  );
  return Math.max(config.accessTokenTtl, config.refreshTokenTtl, Number(row?.longest ?? 0));
}

export async function createServices(deps: Deps): Promise<Services> {
  const { config, database, log } = deps;
  const now = deps.now ?? Date.now;
  const metrics = deps.metrics ?? createMetrics({ database, poolSize: config.dbPoolSize });
  const keys = await KeyStore.open(database, {
    maxTokenLifetime: () => maxTokenLifetime(database, config),
    signingLag: config.keyReloadInterval,
  });
  const clients = new ClientStore(database, config.clientCacheTtl);
  const clientAuthGuard = new ClientAuthGuard(config, now);
  const tokens = createTokenService(keys, config.issuer, now);
  const notifier = new RevocationNotifier(database, log);
  const sessions = new SessionService(database, tokens, config, now, notifier);
  const verifier = new TokenVerifier(database, tokens, now);
  const revocation = new RevocationService(database, tokens, log, notifier, metrics);
  const introspectionCache =
    config.introspectionCacheTtl > 0 ? new IntrospectionCache(database, notifier, log, { ttlMs: config.introspectionCacheTtl * 1000 }) : undefined;
  const introspection = new IntrospectionService(database, tokens, log, now, introspectionCache);
  const feed = new RevocationFeed(database, log, notifier);
  return {
    config, database, log, now, metrics, keys, clients, clientAuthGuard, tokens, sessions, revocation, verifier, notifier, introspection,
    introspectionCache, feed,
  };
}
