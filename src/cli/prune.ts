// `sessions prune`: deletes expired sessions, authorization codes and revocation-feed entries,
// and self-registered clients never used (TA_UNUSED_CLIENT_TTL), in batches (see src/oauth/pruning.ts for what is kept); prints the counts.
import type { Command } from "./command.ts";
import { parseFlags, UsageError, withServices } from "./command.ts";
import { DEFAULT_PRUNE_BATCH, prune } from "../oauth/pruning.ts";

export const sessionsPrune: Command = {
  path: ["sessions", "prune"],
  summary: "delete expired sessions, authorization codes and revocation-feed entries, in batches",
  usage: `token-authority sessions prune [--batch-size N]   (default ${DEFAULT_PRUNE_BATCH} rows per statement)`,
  async run(argv, io) {
    const { values } = parseFlags(argv, { "batch-size": { type: "string" } });
    const raw = values["batch-size"];
    if (raw !== undefined && !/^[1-9]\d{0,5}$/.test(raw)) throw new UsageError("--batch-size must be a whole number from 1 to 999999");
    const batchSize = raw === undefined ? undefined : Number(raw);
    return withServices(io.env, async (services, database) => {
      const counts = await prune(database, { batchSize, unusedClientTtl: services.config.unusedClientTtl, eventRetention: services.config.ssfRetention });
      io.stdout(
        JSON.stringify({
          sessions: counts.sessions,
          authorization_codes: counts.authorizationCodes,
          revocation_events: counts.revocationEvents,
          unused_clients: counts.clients,
          dpop_proofs: counts.dpopProofs,
          // Shared Signals streams that lost entries to TA_SSF_RETENTION, and how many.
          ...(Object.keys(counts.droppedByStream).length > 0 ? { ssf_events_dropped: counts.droppedByStream } : {}),
        }),
      );
      return 0;
    });
  },
};
