// `keys list|rotate|revoke`: the signing keys, through the admin API.
import type { Command } from "./command.ts";
import { parseFlags, UsageError } from "./command.ts";
import { runAdmin, segment } from "./admin-client.ts";

/** A command without arguments: one admin call. */
const call = (word: string, summary: string, method: string, path: string): Command => ({
  path: ["keys", word],
  summary,
  usage: `token-authority keys ${word}`,
  async run(argv, io) {
    parseFlags(argv, {});
    return runAdmin(io, method, path);
  },
});

export const keyCommands: readonly Command[] = [
  call("list", "list the signing keys (public parts only), the newest first", "GET", "/admin/v1/keys"),
  call("rotate", "add a new active signing key and retire the current one (it verifies until its tokens expire)", "POST", "/admin/v1/keys/rotate"),
  {
    path: ["keys", "revoke"],
    summary: "revoke a retired signing key: gone from the JWKS, every token it signed refused",
    usage: "token-authority keys revoke KID",
    async run(argv, io) {
      const { positionals } = parseFlags(argv, {}, true);
      if (positionals.length !== 1) throw new UsageError("exactly one KID is required");
      return runAdmin(io, "POST", `/admin/v1/keys/${segment(positionals[0]!)}/revoke`);
    },
  },
];
