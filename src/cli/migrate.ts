// `migrate`: apply pending migrations and exit.
import { openDatabase } from "../../db/client.ts";
import { migrate } from "../../db/migrate.ts";
import { loadConfig } from "../config.ts";
import type { Command } from "./command.ts";
import { parseFlags } from "./command.ts";

export const migrateCommand: Command = {
  path: ["migrate"],
  summary: "apply pending database migrations and exit",
  usage: "token-authority migrate",
  async run(argv, io) {
    parseFlags(argv, {});
    const config = loadConfig(io.env);
    const database = await openDatabase({ ...config, poolSize: 1, connectTimeout: config.dbConnectTimeout, statementTimeout: 600 });
    try {
      const { applied, total } = await migrate(database);
      io.stdout(JSON.stringify({ applied, total, database: database.kind }));
      return 0;
    } finally {
      await database.close();
    }
  },
};
