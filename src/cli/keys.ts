// `keys list|rotate|revoke`: the signing keys, through the admin API.
import type { Command } from "./command.ts";
import { parseFlags, UsageError } from "./command.ts";
import { runAdmin, segment } from "./admin-client.ts";

export const keyCommands: readonly Command[] = [
  {
    path: ["keys", "list"],
    summary: "list the signing keys (public parts only), the newest first",
    usage: "token-authority keys list",
    async run(argv, io) {
      parseFlags(argv, {});
      return runAdmin(io, "GET", "/admin/v1/keys");
    },
  },
  {
    path: ["keys", "rotate"],
    summary: "add a new active signing key and retire the current one (it verifies until its tokens expire)",
    usage: "token-authority keys rotate",
    async run(argv, io) {
      parseFlags(argv, {});
      return runAdmin(io, "POST", "/admin/v1/keys/rotate");
    },
  },
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
