// `keys rotate`: a new active signing key; the old one is retired but still verifies.
import type { Command } from "./command.ts";
import { parseFlags, withServices } from "./command.ts";

export const keysRotate: Command = {
  path: ["keys", "rotate"],
  summary: "add a new active signing key and retire the current one",
  usage: "token-authority keys rotate",
  async run(argv, io) {
    parseFlags(argv, {});
    return withServices(io.env, async (services) => {
      const { retired, active } = await services.keys.rotate();
      io.stdout(JSON.stringify({ active_kid: active, retired_kid: retired ?? null }));
      return 0;
    });
  },
};
