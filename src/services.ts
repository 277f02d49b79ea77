// Builds the domain services from injected dependencies; shared by the HTTP app and the CLI.
import type { Database } from "../db/client.ts";
import type { Stores } from "../db/stores/index.ts";
import { createStores } from "../db/stores/index.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { createMetrics } from "./metrics.ts";
import { Accounts } from "./oauth/accounts.ts";
import { Administration } from "./oauth/admin.ts";
import { AuthorizationCodes } from "./oauth/authorization-codes.ts";
import { BrowserSessions } from "./oauth/browser-sessions.ts";
import { ClientAuthGuard } from "./oauth/client-auth.ts";
import { ClientDocuments } from "./oauth/client-documents.ts";
import { Clients } from "./oauth/clients.ts";
import { Consents } from "./oauth/consents.ts";
import { IntrospectionService } from "./oauth/introspection.ts";
import { IntrospectionCache } from "./oauth/introspection-cache.ts";
import { InvalidationListener } from "./oauth/invalidation.ts";
import { KeyStore } from "./oauth/keys.ts";
import { Resources } from "./oauth/resources.ts";
import { RevocationService } from "./oauth/revocation.ts";
import { RevocationFeed } from "./oauth/revocation-feed.ts";
import { RevocationNotifier } from "./oauth/revocation-notifier.ts";
import { ReplicaReads } from "./oauth/replica-reads.ts";
import { SessionService } from "./oauth/sessions.ts";
import { TokenPipeline } from "./oauth/token-pipeline.ts";
import { BackchannelLogout } from "./oauth/backchannel-logout.ts";
import { IdTokens } from "./oauth/id-tokens.ts";
import { UserInfo } from "./oauth/userinfo.ts";
import type { TokenService } from "./oauth/tokens.ts";
import { createTokenService } from "./oauth/tokens.ts";
import { Outbound } from "./outbound.ts";
import { PollService } from "./ssf/poll.ts";
import { DpopVerifier } from "./oauth/dpop.ts";
import { PushDelivery } from "./ssf/push.ts";
import { StreamReader } from "./ssf/reader.ts";
import { Streams } from "./ssf/streams.ts";
import type { Subject } from "./ssf/events.ts";

export interface Deps {
  config: Config;
  database: Database;
  log: Logger;
  /** Milliseconds since the epoch; tests inject a fixed clock. */
  now?: () => number;
  /** Prometheus metrics; created (with pool figures of `database`) when not given. */
  metrics?: Metrics;
  /** Replicas session lookups may be answered from (TA_DATABASE_READ_URL); absent = the primary only. */
  replica?: Database;
}

export interface Services extends Required<Omit<Deps, "replica">> {
  /** Reads from replicas (TA_DATABASE_READ_URL): started by the server; absent without one. */
  replicaReads: ReplicaReads | undefined;
  /** The storage ports (db/stores): the only place SQL is built. */
  stores: Stores;
  keys: KeyStore;
  /** Everything the server fetches or pushes goes through it (https only, no private addresses, bounded). */
  outbound: Outbound;
  /** Client ID metadata documents: URL client ids (used through `clients`). */
  clientDocuments: ClientDocuments;
  clients: Clients;
  accounts: Accounts;
  browserSessions: BrowserSessions;
  /** Per-instance throttling of failed client authentication (shared by every endpoint). */
  clientAuthGuard: ClientAuthGuard;
  tokens: TokenService;
  /** OpenID Connect ID tokens: signed at the token endpoint, read back as hints. */
  idTokens: IdTokens;
  /** Recognises a presented token for every caller (revocation, introspection, refresh, verification). */
  pipeline: TokenPipeline;
  codes: AuthorizationCodes;
  /** The resources tokens may be for (RFC 8707): configured and registered. */
  resources: Resources;
  sessions: SessionService;
  consents: Consents;
  revocation: RevocationService;
  notifier: RevocationNotifier;
  introspection: IntrospectionService;
  /** Verified live tokens for introspection; absent when TA_INTROSPECTION_CACHE_TTL is 0. */
  introspectionCache: IntrospectionCache | undefined;
  /** The revocation feed: one LISTEN per process, shared by every subscriber. */
  feed: RevocationFeed;
  /** Operating the server: the admin API's service. */
  admin: Administration;
  /** Requests that came through the admin socket, or from the CLI in process (trusted as local). */
  localAdmin: WeakSet<Request>;
  /** Drops cached clients and reloads keys when another instance says they changed (started by the server). */
  invalidation: InvalidationListener;
  /** Shared Signals: stream management, poll delivery, push delivery (started by the server). */
  ssf: { streams: Streams; poll: PollService; push: PushDelivery; reader: StreamReader };
  /** DPoP proofs (RFC 9449). */
  dpop: DpopVerifier;
  /** OpenID Connect UserInfo (Core §5.3). */
  userinfo: UserInfo;
  /** OpenID Connect Back-Channel Logout delivery (started by the server). */
  backchannelLogout: BackchannelLogout;
}

export async function createServices(deps: Deps): Promise<Services> {
  const { config, database, log } = deps;
  const now = deps.now ?? Date.now;
  const metrics = deps.metrics ?? createMetrics({ database, poolSize: config.dbPoolSize });
  const notifier = new RevocationNotifier(database, log);
  const replicaReads = deps.replica && new ReplicaReads(deps.replica, database, notifier, log, metrics, { maxLagMs: config.readMaxLag * 1000 });
  const stores = createStores(database, { clientCacheTtl: config.clientCacheTtl, eventRetention: config.ssfRetention, replica: replicaReads });
  const keys = await KeyStore.open(stores.signingKeys, {
    // The longest lifetime of any token this server may have signed: how long a retired key verifies.
    maxTokenLifetime: async () => Math.max(config.accessTokenTtl, config.refreshTokenTtl, await stores.clients.longestTokenTtl()),
    signingLag: config.keyReloadInterval,
  });
  const outbound = new Outbound({ allowHosts: config.outboundAllowHosts }, metrics.outboundRequests);
  const clientDocuments = new ClientDocuments({ store: stores.clients, outbound, config, metrics, now });
  const clients = new Clients(stores.clients, clientDocuments);
  const accounts = new Accounts(stores.users);
  const browserSessions = new BrowserSessions(stores.browserSessions);
  const clientAuthGuard = new ClientAuthGuard(config, now);
  const tokens = createTokenService(keys, config.issuer, now);
  const pipeline = new TokenPipeline(tokens, stores.sessions, now);
  const codes = new AuthorizationCodes(stores.sessions, keys, config.defaultAudience);
  const resources = new Resources(stores.resources, config);
  const idTokens = new IdTokens(keys, config.issuer, config.accessTokenTtl, now);
  const sessions = new SessionService(stores.sessions, tokens, codes, config, now, notifier, metrics, idTokens);
  const consents = new Consents(stores.consents, stores.sessions, sessions);
  const revocation = new RevocationService({ pipeline, store: stores.sessions, log, notifier, metrics });
  const introspectionCache =
    config.introspectionCacheTtl > 0 ? new IntrospectionCache(database, notifier, log, { ttlMs: config.introspectionCacheTtl * 1000 }) : undefined;
  const introspection = new IntrospectionService(pipeline, log, now, introspectionCache);
  const feed = new RevocationFeed(database, stores.revocationEvents, log, notifier);
  const invalidation = new InvalidationListener(
    database,
    { forgetClient: (id) => stores.clients.forget(id), reloadKeys: () => keys.reload(), forgetResources: () => resources.forget() },
    log,
  );
  const reader = new StreamReader(stores.ssf, keys, config.issuer, async (id) => (await stores.ssf.excludedSubjects(id)) as Subject[], now);
  const push = new PushDelivery({ store: stores.ssf, reader, outbound, log, metrics, watch: (listener) => notifier.onCommitted(listener), exclusive: database.kind === "pglite" });
  const ssf = {
    reader,
    push,
    streams: new Streams({ store: stores.ssf, config, outbound, changed: () => push.changed() }),
    poll: new PollService({ store: stores.ssf, reader, config, log, metrics, wait: (ms, signal) => waitForEntries(notifier, feed, ms, signal) }),
  };
  metrics.ssfBacklog = () => stores.ssf.backlog();
  const dpop = new DpopVerifier(keys, stores.dpopProofs, now);
  const admin = new Administration({ config, stores, clients, sessions, browserSessions, keys, notifier, log, resources, streams: ssf.streams });
  return {
    ssf,
    dpop,
    userinfo: new UserInfo(pipeline, accounts, dpop),
    backchannelLogout: new BackchannelLogout({ store: stores.logoutDeliveries, keys, outbound, issuer: config.issuer, log, metrics, now }),
    config, database, log, now, metrics, stores, keys, outbound, clientDocuments, clients, accounts, browserSessions, clientAuthGuard, tokens, idTokens, pipeline, codes,
    resources, sessions, consents, revocation, notifier, introspection, introspectionCache, feed, admin, localAdmin: new WeakSet(), invalidation,
    replicaReads,
  };
}

/** Resolves when log entries may have been written (here, or at another instance), after `ms`, or on abort. */
function waitForEntries(notifier: RevocationNotifier, feed: RevocationFeed, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      unlocal();
      unwatch();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const unlocal = notifier.onCommitted(done);
    const unwatch = feed.watch(done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
