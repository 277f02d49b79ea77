// Runs the app on Bun.serve, with graceful shutdown on SIGTERM and
// SIGINT (stop accepting, let in-flight requests finish, then close the database).
import type { Database } from "../db/client.ts";
import { openDatabase, openPostgres } from "../db/client.ts";
import { migrate } from "../db/migrate.ts";
import { openAdminSocket } from "./admin-socket.ts";
import type { AdminSocket } from "./admin-socket.ts";
import { createApp } from "./app.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { errorForLog } from "./log.ts";
import { startPruning, startUpkeep } from "./oauth/pruning.ts";
import { createServices } from "./services.ts";
import { VERSION } from "./version.ts";

/** The port is taken (by another server, most likely another instance of this one). */
export class AddressInUseError extends Error {
  override name = "AddressInUseError";
}

export interface RunningServer {
  url: string;
  stop(): Promise<void>;
}

export async function startServer(config: Config, log: Logger, options: { migrate: boolean }): Promise<RunningServer> {
  const startedAt = performance.now();
  const postgresOptions = {
    poolSize: config.dbPoolSize,
    connectTimeout: config.dbConnectTimeout,
    statementTimeout: config.dbStatementTimeout,
    // A revocation answered 200 is already replayed on every synchronous standby (src/oauth/replica-reads.ts).
    ...(config.databaseReadUrl ? { synchronousCommit: "remote_apply" as const } : {}),
  };
  const database: Database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, ...postgresOptions });
  // postgres.js connects when first asked: a replica that is down costs nothing until then.
  const replica = config.databaseReadUrl ? openPostgres(config.databaseReadUrl, postgresOptions) : undefined;
  try {
    if (options.migrate) {
      const { applied } = await migrate(database);
      if (applied.length > 0) log.info("db.migrated", { applied: applied.join(",") });
    }
    const services = await createServices({ config, database, log, replica });
    const app = createApp(services);
    const pruning = config.pruneInterval > 0 ? startPruning(services, config.pruneInterval, { unusedClientTtl: config.unusedClientTtl, eventRetention: config.ssfRetention }) : undefined;
    const upkeep = config.upkeepInterval > 0 ? startUpkeep(services, config.upkeepInterval) : undefined;
    const keyReload = services.keys.startReloading(config.keyReloadInterval, (error) =>
      log.warn("keys.reload_failed", { error: errorForLog(error) }),
    );
    let server: ReturnType<typeof Bun.serve>;
    try {
      server = Bun.serve({
        port: config.port,
        hostname: config.host,
        // Never share the port: with SO_REUSEPORT a second instance started by mistake would
        // receive half the connections, on a database of its own.
        reusePort: false,
        // Above the app's own limit, so the app answers 413 JSON first (src/http/limits.ts).
        maxRequestBodySize: config.maxBodyBytes * 2,
        development: false,
        // The app logs each request itself (src/http/observability.ts), with its route pattern.
        fetch: (request) => app.handle(request),
      });
    } catch (error) {
      if ((error as { code?: unknown }).code === "EADDRINUSE") {
        throw new AddressInUseError(`${hostPort(config.host, config.port)} is already in use (another server is listening there)`);
      }
      throw error;
    }
    let adminSocket: AdminSocket | undefined;
    try {
      await services.invalidation.start();
      // Requests on the admin socket are the local administrator's (src/http/admin.ts).
      adminSocket = config.adminSocket
        ? await openAdminSocket(config.adminSocket, (request) => {
            services.localAdmin.add(request);
            return app.handle(request);
          })
        : undefined;
    } catch (error) {
      await server.stop(true);
      await services.invalidation.close();
      throw error;
    }
    // Elysia's context.server (client IPs for login throttling) reads the app's server.
    (app as { server: unknown }).server = server;
    services.ssf.push.start();
    services.backchannelLogout.start();
    const url = `http://${hostPort(config.host, server.port!)}`;
    log.info("server.started", {
      version: VERSION,
      url,
      issuer: config.issuer,
      database: database.kind,
      read_replica: replica !== undefined,
      admin_socket: adminSocket?.path ?? null,
      startup_ms: Math.round(performance.now() - startedAt),
    });
    let stopping: Promise<void> | undefined;
    return {
      url,
      stop() {
        stopping ??= (async () => {
          log.info("server.stopping", {});
          await services.feed.close(); // ends the revocation-feed streams, which never finish on their own
          services.ssf.poll.close(); // long polls answer now
          await services.ssf.push.stop(); // the deliveries under way finish; their leases are given back
          await services.backchannelLogout.stop(); // likewise (a delivery cut short is retried by whoever looks next)
          await adminSocket?.stop();
          // Stop accepting; wait for in-flight requests (bounded), then close the database.
          const drained = server.stop(false);
          const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 10_000).unref());
          if ((await Promise.race([drained, timeout])) === "timeout") await server.stop(true);
          await pruning?.stop();
          await upkeep?.stop();
          await keyReload.stop();
          await services.introspectionCache?.close();
          await services.replicaReads?.close();
          await services.invalidation.close();
          await services.notifier.flush();
          await replica?.close();
          await database.close();
          log.info("server.stopped", {});
        })();
        return stopping;
      },
    };
  } catch (error) {
    await replica?.close();
    await database.close();
    throw error;
  }
}

function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
