// `serve` (the default command): run the HTTP server.
import { loadConfig } from "../config.ts";
import { createLogger } from "../log.ts";
import { startServer } from "../server.ts";
import type { Command } from "./command.ts";
import { parseFlags, UsageError } from "./command.ts";

export const serveCommand: Command = {
  path: ["serve"],
  summary: "run the authorization server (the default command)",
  usage: "token-authority serve [--port PORT] [--host HOST] [--no-migrate]",
  async run(argv, io) {
    const { values } = parseFlags(argv, {
      port: { type: "string" },
      host: { type: "string" },
      "no-migrate": { type: "boolean" },
    });
    let port: number | undefined;
    if (values.port !== undefined) {
      if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) throw new UsageError("--port must be 0-65535");
      port = Number(values.port);
    }
    const config = loadConfig(io.env, { port, host: values.host });
    const log = createLogger(config.logLevel);
    const server = await startServer(config, log, { migrate: !values["no-migrate"] });
    await new Promise<void>((resolve) => {
      const shutdown = () => void server.stop().then(resolve);
      process.once("SIGTERM", shutdown);
      process.once("SIGINT", shutdown);
    });
    return 0;
  },
};
