// `users create|list|get|disable|enable|delete|set-password|set-profile`: through the admin API. Passwords are
// read from standard input, never taken as arguments.
import type { Command, CommandIo } from "./command.ts";
import { parseFlags, UsageError } from "./command.ts";
import { runAdmin, segment } from "./admin-client.ts";

function userOf(positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError("exactly one USER (a username or a user id) is required");
  return positionals[0]!;
}

async function passwordFrom(io: CommandIo, given: boolean | undefined): Promise<string> {
  if (!given) throw new UsageError("--password-stdin is required (passwords are never taken as arguments)");
  return (await io.readStdin()).replace(/\r?\n$/, "");
}

const userCommand = (word: string, summary: string, method: string, suffix: string): Command => ({
  path: ["users", word],
  summary,
  usage: `token-authority users ${word} USER   (a username or a user id)`,
  async run(argv, io) {
    const { positionals } = parseFlags(argv, {}, true);
    return runAdmin(io, method, `/admin/v1/users/${segment(userOf(positionals))}${suffix}`);
  },
});

export const usersCreate: Command = {
  path: ["users", "create"],
  summary: "create a user; the password is read from standard input",
  usage: "token-authority users create USERNAME --password-stdin",
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { "password-stdin": { type: "boolean" } }, true);
    const [username, ...extra] = positionals;
    if (!username || extra.length > 0) throw new UsageError("exactly one USERNAME is required");
    return runAdmin(io, "POST", "/admin/v1/users", { username, password: await passwordFrom(io, values["password-stdin"]) });
  },
};

export const usersList: Command = {
  path: ["users", "list"],
  summary: "list users as JSON, the newest first",
  usage: "token-authority users list [--limit N] [--cursor CURSOR]",
  async run(argv, io) {
    const { values } = parseFlags(argv, { limit: { type: "string" }, cursor: { type: "string" } });
    const query = new URLSearchParams(Object.entries(values).filter((entry): entry is [string, string] => typeof entry[1] === "string"));
    return runAdmin(io, "GET", `/admin/v1/users${query.size ? `?${query}` : ""}`);
  },
};

export const usersSetPassword: Command = {
  path: ["users", "set-password"],
  summary: "set a user's password (from standard input); their sessions end unless --keep-sessions",
  usage: "token-authority users set-password USER --password-stdin [--keep-sessions]",
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { "password-stdin": { type: "boolean" }, "keep-sessions": { type: "boolean" } }, true);
    const user = userOf(positionals);
    const password = await passwordFrom(io, values["password-stdin"]);
    return runAdmin(io, "PUT", `/admin/v1/users/${segment(user)}/password`, { password, keep_sessions: values["keep-sessions"] ?? false });
  },
};

export const usersSetProfile: Command = {
  path: ["users", "set-profile"],
  summary: "set or remove OpenID Connect standard claims of a user's profile (name, email, …)",
  usage: `token-authority users set-profile USER [--set CLAIM=VALUE]... [--remove CLAIM]...
  CLAIM is a standard claim of OpenID Connect Core §5.1 (name, given_name, family_name, nickname,
  preferred_username, picture, website, email, email_verified, phone_number, locale, …);
  email_verified and phone_number_verified take true or false.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { set: { type: "string", multiple: true }, remove: { type: "string", multiple: true } }, true);
    const change: Record<string, string | boolean | null> = {};
    for (const pair of values.set ?? []) {
      const equals = pair.indexOf("=");
      if (equals < 1) throw new UsageError(`--set takes CLAIM=VALUE, not "${pair.slice(0, 40)}"`);
      const [claim, value] = [pair.slice(0, equals), pair.slice(equals + 1)];
      change[claim] = claim.endsWith("_verified") ? value === "true" || (value === "false" ? false : value) : value;
    }
    for (const claim of values.remove ?? []) change[claim] = null;
    if (Object.keys(change).length === 0) throw new UsageError("nothing to change: give --set or --remove");
    return runAdmin(io, "PATCH", `/admin/v1/users/${segment(userOf(positionals))}/profile`, change);
  },
};

export const userCommands: readonly Command[] = [
  usersCreate,
  usersList,
  userCommand("get", "print one user as JSON", "GET", ""),
  userCommand("disable", "disable a user: sign-in refused, every session of theirs ended", "POST", "/disable"),
  userCommand("enable", "enable a disabled user again", "POST", "/enable"),
  userCommand("delete", "revoke every session of a user and delete the user", "DELETE", ""),
  usersSetPassword,
  usersSetProfile,
];
