// Entry point of the `token-authority` executable: picks a command from the arguments.
import { ConfigError } from "./config.ts";
import { DataDirLockedError } from "../db/data-dir-lock.ts";
import { clientCommands } from "./cli/clients.ts";
import type { Command, CommandIo } from "./cli/command.ts";
import { UsageError } from "./cli/command.ts";
import { keyCommands } from "./cli/keys.ts";
import { resourceCommands } from "./cli/resources.ts";
import { ssfCommands } from "./cli/ssf.ts";
import { migrateCommand } from "./cli/migrate.ts";
import { serveCommand } from "./cli/serve.ts";
import { sessionsPrune } from "./cli/prune.ts";
import { sessionsList, sessionsRevoke } from "./cli/sessions.ts";
import { exportCommand, importCommand } from "./cli/transfer.ts";
import { userCommands } from "./cli/users.ts";
import { describeError } from "./log.ts";
import { AdminSocketError } from "./admin-socket.ts";
import { AddressInUseError } from "./server.ts";
import { VERSION } from "./version.ts";

const versionCommand: Command = {
  path: ["version"],
  summary: "print the version",
  usage: "token-authority version",
  async run(_argv, io) {
    io.stdout(VERSION);
    return 0;
  },
};

export const commands: readonly Command[] = [
  serveCommand,
  migrateCommand,
  ...clientCommands,
  ...userCommands,
  sessionsList,
  sessionsRevoke,
  sessionsPrune,
  ...keyCommands,
  ...resourceCommands,
  ...ssfCommands,
  exportCommand,
  importCommand,
  versionCommand,
];

function overview(): string {
  const width = Math.max(...commands.map((c) => c.path.join(" ").length));
  return [
    "usage: token-authority [COMMAND] [FLAGS]   (COMMAND defaults to serve)",
    "",
    ...commands.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`),
    "",
    "Run `token-authority COMMAND --help` for a command's flags. Configuration is read from",
    "the environment (DATABASE_URL, TA_DATA_DIR, TA_ISSUER, ...): see docs/configuration.md.",
  ].join("\n");
}

function groupOverview(name: string, group: readonly Command[]): string {
  const width = Math.max(...group.map((c) => c.path.join(" ").length));
  return [
    `usage: token-authority ${name} COMMAND [FLAGS]`,
    "",
    ...group.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`),
    "",
    `Run \`token-authority ${name} COMMAND --help\` for a command's flags. With a server running, these`,
    "commands go through its admin socket (TA_ADMIN_SOCKET); without one, straight to the database.",
  ].join("\n");
}

function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  if (argv.length === 0 || argv[0]!.startsWith("-")) return { command: serveCommand, rest: argv };
  for (const command of [...commands].sort((a, b) => b.path.length - a.path.length)) {
    if (command.path.every((word, i) => argv[i] === word)) return { command, rest: argv.slice(command.path.length) };
  }
  return undefined;
}

export async function main(argv: string[], io: CommandIo): Promise<number> {
  if (argv[0] === "help" || argv[0] === "--help" || argv[0] === "-h") {
    io.stdout(overview());
    return 0;
  }
  if (argv[0] === "--version") argv = ["version"];
  const found = findCommand(argv);
  const group = found ? undefined : commands.filter((c) => c.path.length > 1 && c.path[0] === argv[0]);
  if (group && group.length > 0) {
    // `clients`, `clients --help`: the group's commands.
    const help = argv.length === 2 && (argv[1] === "--help" || argv[1] === "-h");
    const text = groupOverview(argv[0]!, group);
    if (help) {
      io.stdout(text);
      return 0;
    }
    process.stderr.write(`token-authority: ${argv.length < 2 ? `${argv[0]} needs a command` : `unknown command "${argv.slice(0, 2).join(" ")}"`}\n\n${text}\n`);
    return 2;
  }
  if (!found) {
    process.stderr.write(`token-authority: unknown command "${argv.slice(0, 2).join(" ")}"\n\n${overview()}\n`);
    return 2;
  }
  if (found.rest.includes("--help") || found.rest.includes("-h")) {
    io.stdout(`usage: ${found.command.usage}\n\n${found.command.summary}`);
    return 0;
  }
  try {
    return await found.command.run(found.rest, io);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError || error instanceof DataDirLockedError || error instanceof AddressInUseError || error instanceof AdminSocketError) {
      process.stderr.write(`token-authority: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`token-authority: ${describeError(error)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  const io: CommandIo = {
    env: process.env,
    stdout: (text) => process.stdout.write(text + "\n"),
    readStdin: () => Bun.stdin.text(),
  };
  const code = await main(process.argv.slice(2), io);
  process.exit(code);
}
