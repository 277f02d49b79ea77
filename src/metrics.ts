// Prometheus metrics (prom-client, which works inside the compiled executable): one registry
// per app for the server's own counters, plus the process metrics (CPU, memory, event loop),
// which belong to the process and are collected once however many apps it builds.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Database } from "../db/client.ts";
import { connectionsByState } from "../db/client.ts";
import { VERSION } from "./version.ts";

export type RevocationOutcomeLabel = "revoked" | "already_revoked" | "unknown" | "other_client" | "undecodable";

export interface Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  /** Requests by method, route pattern (never the raw URL) and status. */
  readonly httpRequests: Counter<"method" | "route" | "status">;
  readonly httpDuration: Histogram<"method" | "route" | "status">;
  /** Revocation requests by outcome (RFC 7009 answers 200 for all but undecodable). */
  readonly revocations: Counter<"outcome">;
  /** Token sessions revoked (each with its family), by reason: revoked_by_client, user_disabled, key_revoked, … */
  readonly sessionsRevoked: Counter<"reason">;
  /** Refresh-token reuse detections (the token endpoint increments it). */
  readonly refreshReuse: Counter;
  readonly clientAuthFailures: Counter;
  /** Requests refused with 429, by limit (client_id, ip, username, ...). */
  readonly rateLimited: Counter<"limit">;
  /** Database failures seen by request handling: unavailable (→ 503) or query (→ 500). */
  readonly dbErrors: Counter<"kind">;
  /** Rows deleted by pruning, by table. */
  readonly pruned: Counter<"table">;
  /** Requests the server made to other hosts (src/outbound.ts), by purpose and result (ok | error). */
  readonly outboundRequests: Counter<"purpose" | "result">;
  /** Client ID metadata documents looked up: cached (no fetch), fetched, or refused (invalid, unreachable). */
  readonly clientDocuments: Counter<"result">;
  /** Security Event Tokens by delivery method and result (push: delivered, rejected, failed; poll: returned, acknowledged). */
  readonly ssfDeliveries: Counter<"method" | "result">;
  /** Events a stream never received: pruning dropped them past TA_SSF_RETENTION. */
  readonly ssfEventsDropped: Counter<"stream_id">;
  /** Back-Channel Logout attempts by result: delivered, retried (the receiver failed, tried again later), failed (refused or out of attempts). */
  readonly backchannelLogouts: Counter<"result">;
  /** Session lookups by jti (introspection, verification) by where they were answered, with TA_DATABASE_READ_URL: replica, primary. */
  readonly sessionLookups: Counter<"source">;
  /** Where the per-stream queue depth and delivery lag are read from at scrape (set by the SSF services). */
  ssfBacklog: (() => Promise<Array<{ streamId: string; status: string; depth: number; lagSeconds: number }>>) | undefined;
  /** HTTP requests being handled now: what background work yields to, and ta_http_requests_in_flight at scrape. */
  readonly requestsInFlight: { value: number };
  /** The Prometheus text exposition of this app's metrics and the process metrics. */
  render(): Promise<string>;
}

let processRegistry: Registry | undefined;

function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** Seconds: from a cached client lookup (sub-millisecond) to a statement timeout (5 s). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface MetricsOptions {
  /** Reports pool size and connection counts when given. */
  database?: Database;
  poolSize?: number;
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const { database } = options;

  const build = new Gauge({
    name: "ta_build_info",
    help: "Version of the running server (always 1)",
    labelNames: ["version", "bun"],
    registers,
  });
  build.set({ version: VERSION, bun: Bun.version }, 1);

  const dbErrors = new Counter({
    name: "ta_db_errors_total",
    help: "Database failures met while handling requests, by kind (unavailable = 503, query = 500)",
    labelNames: ["kind"],
    registers,
  });

  new Gauge({
    name: "ta_db_pool_size",
    help: "Connections this instance may open (PostgreSQL pool size; 1 for the embedded database)",
    registers,
  }).set(database?.kind === "pglite" ? 1 : (options.poolSize ?? 0));

  if (database?.kind === "postgres") {
    new Gauge({
      name: "ta_db_connections",
      help: "Connections of every TokenAuthority instance to this PostgreSQL database, by state (pg_stat_activity, read at scrape)",
      labelNames: ["state"],
      registers,
      async collect() {
        this.reset();
        try {
          for (const { state, count } of await connectionsByState(database)) this.set({ state }, count);
        } catch {
          dbErrors.inc({ kind: "unavailable" });
        }
      },
    });
  }

  const requestsInFlight = { value: 0 };
  new Gauge({
    name: "ta_http_requests_in_flight",
    help: "HTTP requests being handled",
    registers,
    collect() {
      this.set(requestsInFlight.value);
    },
  });
  const metrics: Metrics = {
    registry,
    contentType: registry.contentType,
    httpRequests: new Counter({
      name: "ta_http_requests_total",
      help: "HTTP requests by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      registers,
    }),
    httpDuration: new Histogram({
      name: "ta_http_request_duration_seconds",
      help: "HTTP request latency by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    revocations: new Counter({
      name: "ta_revocations_total",
      help: "Revocation requests by outcome: revoked, already_revoked, unknown, other_client, undecodable",
      labelNames: ["outcome"],
      registers,
    }),
    sessionsRevoked: new Counter({
      name: "ta_sessions_revoked_total",
      help: "Token sessions revoked, by reason (revoked_by_client, refresh_token_reuse, user_disabled, password_changed, client_deleted, key_revoked, signed_out, ...)",
      labelNames: ["reason"],
      registers,
    }),
    refreshReuse: new Counter({
      name: "ta_refresh_token_reuse_total",
      help: "Refresh-token reuse detections (each revoked a token family)",
      registers,
    }),
    clientAuthFailures: new Counter({
      name: "ta_client_auth_failures_total",
      help: "Failed client authentications (401 invalid_client)",
      registers,
    }),
    rateLimited: new Counter({
      name: "ta_rate_limited_total",
      help: "Requests refused with 429 by an in-process limit",
      labelNames: ["limit"],
      registers,
    }),
    dbErrors,
    pruned: new Counter({
      name: "ta_pruned_rows_total",
      help: "Rows deleted by pruning, by table",
      labelNames: ["table"],
      registers,
    }),
    outboundRequests: new Counter({
      name: "ta_outbound_requests_total",
      help: "Requests the server made to other hosts, by purpose (client_metadata_document, ...) and result (ok: answered, error: refused or failed)",
      labelNames: ["purpose", "result"],
      registers,
    }),
    clientDocuments: new Counter({
      name: "ta_client_documents_total",
      help: "Client ID metadata documents looked up, by result: cached (no fetch), fetched, refused",
      labelNames: ["result"],
      registers,
    }),
    ssfDeliveries: new Counter({
      name: "ta_ssf_deliveries_total",
      help: "Security Event Tokens by delivery method (push, poll) and result (push: delivered, rejected, failed; poll: returned, acknowledged)",
      labelNames: ["method", "result"],
      registers,
    }),
    ssfEventsDropped: new Counter({
      name: "ta_ssf_events_dropped_total",
      help: "Events a stream never received: pruning dropped them past TA_SSF_RETENTION",
      labelNames: ["stream_id"],
      registers,
    }),
    backchannelLogouts: new Counter({
      name: "ta_backchannel_logouts_total",
      help: "OpenID Connect Back-Channel Logout attempts by result: delivered, retried, failed",
      labelNames: ["result"],
      registers,
    }),
    sessionLookups: new Counter({
      name: "ta_session_lookups_total",
      help: "Session lookups by jti (introspection, verification) by where they were answered when a read URL is set: replica, primary",
      labelNames: ["source"],
      registers,
    }),
    ssfBacklog: undefined,
    requestsInFlight,
    async render() {
      const [own, process] = await Promise.all([registry.metrics(), processMetrics().metrics()]);
      return `${own}\n${process}`;
    },
  };
  // Outcomes appear at 0 from the start, so a rate() over them is defined before the first event.
  for (const outcome of ["revoked", "already_revoked", "unknown", "other_client", "undecodable"] as const) {
    metrics.revocations.inc({ outcome }, 0);
  }
  for (const kind of ["unavailable", "query"]) dbErrors.inc({ kind }, 0);
  for (const result of ["cached", "fetched", "refused"]) metrics.clientDocuments.inc({ result }, 0);
  // Per stream, read at scrape: log entries above its position, and how old the oldest is.
  const backlog = async () => {
    try {
      return (await metrics.ssfBacklog?.()) ?? [];
    } catch {
      dbErrors.inc({ kind: "unavailable" });
      return [];
    }
  };
  new Gauge({
    name: "ta_ssf_queue_depth",
    help: "Shared Signals: event-log entries above each stream's position (not yet delivered or acknowledged, or not for it)",
    labelNames: ["stream_id", "status"],
    registers,
    async collect() {
      this.reset();
      for (const row of await backlog()) this.set({ stream_id: row.streamId, status: row.status }, row.depth);
    },
  });
  new Gauge({
    name: "ta_ssf_delivery_lag_seconds",
    help: "Shared Signals: age of the oldest event-log entry above each stream's position (0 when none)",
    labelNames: ["stream_id", "status"],
    registers,
    async collect() {
      this.reset();
      for (const row of await backlog()) this.set({ stream_id: row.streamId, status: row.status }, row.lagSeconds);
    },
  });
  return metrics;
}
