// Server configuration: read once from the environment (and command-line flags) at boot,
// validated, frozen. Every duration is in seconds; every list is comma-separated.

export class ConfigError extends Error {
  override name = "ConfigError";
}

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];
/** OpenID Connect Core §3.1.2.1: the scope that makes an authorization request an OpenID one. */
export const OPENID_SCOPE = "openid";

export interface ProtectedResource {
  resource: string;
  scopes: string[];
}

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly issuer: string;
  /** postgres:// URL; absent means the embedded PGlite in `dataDir`. */
  readonly databaseUrl: string | undefined;
  /**
   * postgres:// URL of replicas that session lookups (introspection, verification) may be
   * answered from (src/oauth/replica-reads.ts); absent = the primary answers them all.
   */
  readonly databaseReadUrl: string | undefined;
  /** Seconds (fractions allowed) a replica may be behind the primary and still be read. */
  readonly readMaxLag: number;
  readonly dbPoolSize: number;
  readonly dbConnectTimeout: number;
  readonly dbStatementTimeout: number;
  readonly dataDir: string;
  readonly accessTokenTtl: number;
  readonly refreshTokenTtl: number;
  readonly authorizationCodeTtl: number;
  /** Seconds during which a retried refresh replaces its child instead of revoking the family. 0 = off. */
  readonly refreshReuseGrace: number;
  readonly scopes: readonly string[];
  readonly defaultAudience: string;
  readonly resources: readonly ProtectedResource[];
  readonly corsOrigins: readonly string[];
  readonly registrationToken: string | undefined;
  readonly trustedUserHeader: string | undefined;
  /** Header a reverse proxy sets with the client's IP (login throttling per IP); absent = the socket's peer. */
  readonly clientIpHeader: string | undefined;
  readonly clientCacheTtl: number;
  /** Seconds (fractions allowed) a verified live token is remembered for introspection. 0 = off. */
  readonly introspectionCacheTtl: number;
  readonly logLevel: LogLevel;
  readonly maxBodyBytes: number;
  /** Seconds between two runs of the pruning job; 0 = no periodic pruning. */
  readonly pruneInterval: number;
  /**
   * Seconds between two checks of the tables' statistics; where PostgreSQL runs no autovacuum the
   * server analyzes and vacuums its tables itself (src/oauth/pruning.ts startUpkeep). 0 = never.
   */
  readonly upkeepInterval: number;
  /** Seconds between two reloads of the signing keys (picks up `keys rotate` from another process). */
  readonly keyReloadInterval: number;
  /** Failed client authentications per client id, then per IP, before 429 (per instance). */
  readonly authFailureLimit: number;
  readonly authFailureIpLimit: number;
  /** Seconds over which failed authentications are counted (and the longest lockout). */
  readonly authFailureWindow: number;
  /** Where the admin socket listens (a Unix domain socket, mode 0600); undefined = none. */
  readonly adminSocket: string | undefined;
  /** The admin API over HTTP with `ta:admin` bearer tokens; off by default (the socket always works). */
  readonly adminRemote: boolean;
  /** host[:port] (lower case) that every outbound fetch may reach over plain http and on any address. */
  readonly outboundAllowHosts: ReadonlySet<string>;
  /** Which hosts may serve client ID metadata documents: every public host, those listed, or none. */
  readonly clientIdDocuments: ClientIdDocumentPolicy;
  /** The longest a fetched client metadata document is trusted before it is fetched again (seconds). */
  readonly clientDocumentMaxAge: number;
  /** Dynamic registrations per client address within `registrationWindow` (open registration only). */
  readonly registrationLimit: number;
  readonly registrationWindow: number;
  /** Seconds after which a self-registered client never seen in use is pruned; 0 = never. */
  readonly unusedClientTtl: number;
  /** Shared Signals: how long undelivered events are kept for a stream (and events naming no token at all). */
  readonly ssfRetention: number;
  /** Streams one receiver may have, and subjects one stream may name. */
  readonly ssfMaxStreams: number;
  readonly ssfMaxSubjects: number;
  /** The longest a long poll (RFC 8936) waits for an event, in seconds. */
  readonly ssfLongPoll: number;
  /** RFC 9449 §8: DPoP proofs at the token endpoint must carry a nonce of this server. */
  readonly dpopNonce: boolean;
}

export type ClientIdDocumentPolicy = { mode: "all" } | { mode: "none" } | { mode: "hosts"; hosts: ReadonlySet<string> };

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  return value;
}

function seconds(env: Env, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+(\.\d+)?$/.test(raw.trim())) throw new ConfigError(`${name} must be a number of seconds, got "${raw}"`);
  const value = Number(raw.trim());
  if (value > max) throw new ConfigError(`${name} must be between 0 and ${max}, got ${value}`);
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return fallback;
  if (["1", "true", "on", "yes"].includes(raw)) return true;
  if (["0", "false", "off", "no"].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

function list(env: Env, name: string, fallback: readonly string[]): string[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return [...fallback];
  return raw.split(",").map((item) => item.trim()).filter((item) => item !== "");
}

function url(name: string, value: string, protocols: readonly string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new ConfigError(`${name} must be a URL, got "${value}"`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must use ${protocols.join(" or ")}, got "${parsed.protocol}"`);
  }
  return value;
}

/** postgres.js's values of target_session_attrs (libpq's, less `any`). */
const TARGET_SESSION_ATTRS = ["read-write", "primary", "read-only", "standby", "prefer-standby"];

/**
 * DATABASE_URL: postgres:// with one host, or several — libpq's multi-host form
 * (`postgres://user@host1:5432,host2:5432/db?target_session_attrs=primary`), which postgres.js
 * reads, trying the hosts in order at each connection. Several hosts need
 * target_session_attrs=primary: the server writes, and a connection that landed on a replica
 * would refuse every write. Not `read-write`: postgres.js 3.4 decides it from
 * default_transaction_read_only, which a hot standby of PostgreSQL 14+ reports as off
 * (node_modules/postgres/src/connection.js, tryNext), so it would accept a replica. Never echoed
 * (it may hold a password).
 */
function checkDatabaseUrl(value: string): string {
  const { hosts, attrs } = postgresUrl("DATABASE_URL", value);
  if (hosts > 1 && attrs !== "primary") {
    throw new ConfigError("DATABASE_URL names several hosts: add target_session_attrs=primary, so that the server connects to the primary (read-write is not enough with postgres.js: see docs/high-availability.md)");
  }
  return value;
}

/**
 * TA_DATABASE_READ_URL: one replica, or several with target_session_attrs=standby or
 * prefer-standby (postgres.js then spreads nothing: each connection takes the first that
 * qualifies). A primary there is harmless — the lookup asks the primary whenever the host is
 * not replaying WAL (db/stores/sessions.ts) — but reads nothing off it.
 */
function checkReadUrl(value: string): void {
  const { hosts, attrs } = postgresUrl("TA_DATABASE_READ_URL", value);
  if (hosts > 1 && attrs !== "standby" && attrs !== "prefer-standby") {
    throw new ConfigError("TA_DATABASE_READ_URL names several hosts: add target_session_attrs=standby (or prefer-standby), so that the server reads a replica");
  }
}

/** A postgres:// URL of one host or several: how many, and its target_session_attrs. Never echoed (it may hold a password). */
function postgresUrl(name: string, value: string): { hosts: number; attrs: string | null } {
  const match = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)(.*)$/.exec(value);
  if (!match) throw new ConfigError(`${name} must be a postgres:// or postgresql:// URL`);
  const [, scheme, userinfo, hostList, rest] = match;
  const hosts = hostList!.split(",");
  for (const host of hosts) {
    if (host === "" || !URL.canParse(`${scheme}${userinfo ? `${userinfo}@` : ""}${host}${rest}`)) {
      throw new ConfigError(`${name} must be a postgres:// URL with host[:port] entries separated by commas`);
    }
  }
  const query = rest!.indexOf("?") >= 0 ? new URLSearchParams(rest!.slice(rest!.indexOf("?") + 1).split("#")[0]) : new URLSearchParams();
  const attrs = query.get("target_session_attrs");
  if (attrs !== null && !TARGET_SESSION_ATTRS.includes(attrs)) throw new ConfigError(`${name}: target_session_attrs must be one of ${TARGET_SESSION_ATTRS.join(", ")}`);
  return { hosts: hosts.length, attrs };
}

/** TA_READ_MAX_LAG: seconds, at least 0.02 (the floor is read again every half of it). */
function readMaxLag(env: Env): number {
  const value = seconds(env, "TA_READ_MAX_LAG", 1, 60);
  if (value < 0.02) throw new ConfigError(`TA_READ_MAX_LAG must be between 0.02 and 60, got ${value}`);
  return value;
}

function resources(env: Env, audience: string, scopes: readonly string[]): ProtectedResource[] {
  const raw = env.TA_RESOURCES;
  if (raw === undefined || raw.trim() === "") return [{ resource: audience, scopes: [...scopes] }];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError('TA_RESOURCES must be a JSON list like [{"resource":"https://api.example","scopes":["read"]}]');
  }
  if (!Array.isArray(parsed)) throw new ConfigError("TA_RESOURCES must be a JSON list");
  return parsed.map((entry, i) => {
    const item = entry as Partial<ProtectedResource> | null;
    if (typeof item?.resource !== "string") throw new ConfigError(`TA_RESOURCES[${i}].resource must be a string`);
    url(`TA_RESOURCES[${i}].resource`, item.resource, ["https:", "http:"]);
    const itemScopes = item.scopes ?? [...scopes];
    if (!Array.isArray(itemScopes) || itemScopes.some((s) => typeof s !== "string")) {
      throw new ConfigError(`TA_RESOURCES[${i}].scopes must be a list of strings`);
    }
    return { resource: item.resource, scopes: itemScopes };
  });
}

/** host[:port] entries, lower case; a scheme, path or wildcard is refused. */
function hostList(name: string, raw: string | undefined): Set<string> {
  const hosts = new Set<string>();
  for (const entry of (raw ?? "").split(",").map((item) => item.trim().toLowerCase()).filter((item) => item !== "")) {
    if (!/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/.test(entry)) throw new ConfigError(`${name}: "${entry}" is not a host[:port]`);
    hosts.add(entry);
  }
  return hosts;
}

function clientIdDocuments(raw: string | undefined): ClientIdDocumentPolicy {
  const value = raw?.trim().toLowerCase();
  if (!value || value === "all") return { mode: "all" };
  if (value === "none") return { mode: "none" };
  return { mode: "hosts", hosts: hostList("TA_CLIENT_ID_DOCUMENTS", value) };
}

export interface ConfigOverrides {
  port?: number;
  host?: string;
}

/** Reads and validates the configuration; throws ConfigError with a one-line message. */
export function loadConfig(env: Env = process.env, overrides: ConfigOverrides = {}): Config {
  const port = overrides.port ?? integer(env, "PORT", 3000, 0, 65535);
  const host = overrides.host ?? (env.HOST || "127.0.0.1");
  const issuer = url("TA_ISSUER", env.TA_ISSUER || `http://localhost:${port}`, ["https:", "http:"]).replace(/\/$/, "");
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl) checkDatabaseUrl(databaseUrl);
  const databaseReadUrl = env.TA_DATABASE_READ_URL || undefined;
  if (databaseReadUrl) {
    if (!databaseUrl) throw new ConfigError("TA_DATABASE_READ_URL needs DATABASE_URL: replicas are read beside a PostgreSQL primary, never beside the embedded database");
    checkReadUrl(databaseReadUrl);
  }
  const configured = list(env, "TA_SCOPES", ["profile", "email", "offline_access", "read", "write"]);
  // The server is an OpenID Provider: `openid` (Core §3.1.2.1) is always a scope of it, first.
  const scopes = [OPENID_SCOPE, ...configured.filter((scope) => scope !== OPENID_SCOPE)];
  for (const scope of scopes) {
    // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    if (!/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(scope)) throw new ConfigError(`TA_SCOPES: "${scope}" is not a valid scope token`);
  }
  const defaultAudience = url("TA_DEFAULT_AUDIENCE", env.TA_DEFAULT_AUDIENCE || `${issuer}/api`, ["https:", "http:"]);
  const corsOrigins = list(env, "TA_CORS_ORIGINS", []);
  for (const origin of corsOrigins) {
    if (origin === "*") throw new ConfigError("TA_CORS_ORIGINS takes exact origins; '*' is not allowed");
    if (new URL(url("TA_CORS_ORIGINS", origin, ["https:", "http:"])).origin !== origin) {
      throw new ConfigError(`TA_CORS_ORIGINS: "${origin}" is not an origin (scheme://host[:port], no path)`);
    }
  }
  const dataDir = env.TA_DATA_DIR || "./data";
  const socket = env.TA_ADMIN_SOCKET?.trim();
  const adminSocket = socket === "off" ? undefined : socket || `${dataDir.replace(/\/$/, "")}/admin.sock`;
  // A Unix socket path holds at most 107 bytes on Linux (sockaddr_un.sun_path).
  if (adminSocket && Buffer.byteLength(adminSocket) > 107) throw new ConfigError(`TA_ADMIN_SOCKET must be at most 107 bytes long: ${adminSocket}`);
  const logLevel = (env.TA_LOG_LEVEL || "info") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`TA_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}`);

  return Object.freeze({
    port,
    host,
    issuer,
    databaseUrl,
    databaseReadUrl,
    readMaxLag: readMaxLag(env),
    // 4: on 2 cores, revocation at c=32 ran 4300 req/s with 4 connections, 3500 with 10 and
    // 3000 with 16 (bench/profile.ts --plain): fewer connections pipeline more per round trip.
    dbPoolSize: integer(env, "TA_DB_POOL", 4, 1, 1000),
    dbConnectTimeout: integer(env, "TA_DB_CONNECT_TIMEOUT", 5, 1, 600),
    dbStatementTimeout: integer(env, "TA_DB_STATEMENT_TIMEOUT", 5, 1, 3600),
    dataDir,
    accessTokenTtl: integer(env, "TA_ACCESS_TOKEN_TTL", 3600, 1),
    refreshTokenTtl: integer(env, "TA_REFRESH_TOKEN_TTL", 14 * 24 * 3600, 1),
    authorizationCodeTtl: integer(env, "TA_AUTHORIZATION_CODE_TTL", 60, 1, 600),
    refreshReuseGrace: integer(env, "TA_REFRESH_REUSE_GRACE", 0, 0, 300),
    scopes: Object.freeze(scopes),
    defaultAudience,
    // `openid` asks for an ID token, not access to an API: no resource offers it.
    resources: Object.freeze(resources(env, defaultAudience, configured.filter((scope) => scope !== OPENID_SCOPE))),
    corsOrigins: Object.freeze(corsOrigins),
    registrationToken: env.TA_REGISTRATION_TOKEN || undefined,
    trustedUserHeader: env.TA_TRUSTED_USER_HEADER?.toLowerCase() || undefined,
    clientIpHeader: env.TA_CLIENT_IP_HEADER?.toLowerCase() || undefined,
    clientCacheTtl: integer(env, "TA_CLIENT_CACHE_TTL", 30, 0, 3600),
    introspectionCacheTtl: seconds(env, "TA_INTROSPECTION_CACHE_TTL", 1, 60),
    logLevel,
    maxBodyBytes: integer(env, "TA_MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
    pruneInterval: integer(env, "TA_PRUNE_INTERVAL", 0, 0, 7 * 24 * 3600),
    upkeepInterval: integer(env, "TA_UPKEEP_INTERVAL", 10, 0, 24 * 3600),
    keyReloadInterval: integer(env, "TA_KEY_RELOAD_INTERVAL", 10, 1, 3600),
    authFailureLimit: integer(env, "TA_AUTH_FAILURE_LIMIT", 10, 1, 1_000_000),
    authFailureIpLimit: integer(env, "TA_AUTH_FAILURE_IP_LIMIT", 100, 1, 1_000_000),
    authFailureWindow: integer(env, "TA_AUTH_FAILURE_WINDOW", 300, 1, 24 * 3600),
    adminSocket,
    adminRemote: boolean(env, "TA_ADMIN_REMOTE", false),
    outboundAllowHosts: Object.freeze(hostList("TA_OUTBOUND_ALLOW_HOSTS", env.TA_OUTBOUND_ALLOW_HOSTS)),
    clientIdDocuments: Object.freeze(clientIdDocuments(env.TA_CLIENT_ID_DOCUMENTS)),
    clientDocumentMaxAge: integer(env, "TA_CLIENT_DOCUMENT_MAX_AGE", 24 * 3600, 60, 7 * 24 * 3600),
    registrationLimit: integer(env, "TA_REGISTRATION_LIMIT", 20, 1, 1_000_000),
    registrationWindow: integer(env, "TA_REGISTRATION_WINDOW", 3600, 1, 24 * 3600),
    unusedClientTtl: integer(env, "TA_UNUSED_CLIENT_TTL", 7 * 24 * 3600, 0, 365 * 24 * 3600),
    ssfRetention: integer(env, "TA_SSF_RETENTION", 7 * 24 * 3600, 60, 90 * 24 * 3600),
    ssfMaxStreams: integer(env, "TA_SSF_MAX_STREAMS", 10, 1, 1000),
    ssfMaxSubjects: integer(env, "TA_SSF_MAX_SUBJECTS", 10_000, 1, 1_000_000),
    ssfLongPoll: integer(env, "TA_SSF_LONG_POLL", 20, 1, 300),
    dpopNonce: boolean(env, "TA_DPOP_NONCE", false),
  });
}
