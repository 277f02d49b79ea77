// `export` / `import`: the whole database as NDJSON (db/transfer.ts) — the way to move from the
// embedded PGlite to PostgreSQL, or to another host. The file holds signing keys and secret
// hashes: keep it as secret as the database.
import { exportData, importData, linesOf, TransferError } from "../../db/transfer.ts";
import type { Command } from "./command.ts";
import { parseFlags, UsageError, withDatabase } from "./command.ts";

export const exportCommand: Command = {
  path: ["export"],
  summary: "write every table (keys included) as NDJSON, from one consistent snapshot",
  usage: "token-authority export [--output FILE]   (default: standard output)",
  async run(argv, io) {
    const { values } = parseFlags(argv, { output: { type: "string", short: "o" } });
    return withDatabase(io.env, async (database) => {
      const sink = values.output ? Bun.file(values.output).writer() : Bun.stdout.writer();
      const counts = await exportData(database, (line) => {
        sink.write(line + "\n");
      });
      await sink.end();
      if (values.output) io.stdout(JSON.stringify(counts));
      return 0;
    });
  },
};

export const importCommand: Command = {
  path: ["import"],
  summary: "load an export into an empty database, in one transaction (all or nothing)",
  usage: "token-authority import [--input FILE]   (default: standard input)",
  async run(argv, io) {
    const { values } = parseFlags(argv, { input: { type: "string", short: "i" } });
    const input = values.input;
    if (input !== undefined && !(await Bun.file(input).exists())) throw new UsageError(`no such file: ${input}`);
    return withDatabase(io.env, async (database) => {
      try {
        const lines = input !== undefined ? linesOf(Bun.file(input).stream()) : (await io.readStdin()).split("\n");
        io.stdout(JSON.stringify(await importData(database, lines)));
        return 0;
      } catch (error) {
        if (!(error instanceof TransferError)) throw error;
        process.stderr.write(`token-authority: ${error.message}\n`);
        return 1;
      }
    });
  },
};
