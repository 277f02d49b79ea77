// `ssf streams` and `ssf status`: the Shared Signals streams receivers made (SSF 1.0), through the
// admin API — each with its backlog and delivery state — and the transmitter's own status
// change, which the stream's receiver hears of in a stream-updated event (§8.1.5).
import type { Command } from "./command.ts";
import { parseFlags, UsageError } from "./command.ts";
import { runAdmin } from "./admin-client.ts";

const STATUSES = ["enabled", "paused", "disabled"];

export const ssfCommands: readonly Command[] = [
  {
    path: ["ssf", "streams"],
    summary: "list every Shared Signals stream, with its receiver, backlog and delivery state",
    usage: "token-authority ssf streams",
    async run(argv, io) {
      parseFlags(argv, {});
      return runAdmin(io, "GET", "/admin/v1/ssf/streams");
    },
  },
  {
    path: ["ssf", "status"],
    summary: "enable, pause or disable a stream (its receiver is told in a stream-updated event)",
    usage: `token-authority ssf status STREAM_ID enabled|paused|disabled [--reason TEXT]
  A paused stream holds its events until it is enabled again; a disabled one drops them.`,
    async run(argv, io) {
      const { values, positionals } = parseFlags(argv, { reason: { type: "string" } }, true);
      const [streamId, status] = positionals;
      if (positionals.length !== 2 || !STATUSES.includes(status!)) throw new UsageError("a stream id and one of enabled, paused, disabled are required");
      return runAdmin(io, "POST", `/admin/v1/ssf/streams/${encodeURIComponent(streamId!)}/status`, {
        status,
        ...(values.reason === undefined ? {} : { reason: values.reason }),
      });
    },
  },
];
