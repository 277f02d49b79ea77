// `users create USERNAME --password-stdin`: built-in accounts for the login page.
import type { Command } from "./command.ts";
import { parseFlags, UsageError, withServices } from "./command.ts";

export const usersCreate: Command = {
  path: ["users", "create"],
  summary: "create a user; the password is read from standard input",
  usage: "token-authority users create USERNAME --password-stdin",
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { "password-stdin": { type: "boolean" } }, true);
    const [username, ...extra] = positionals;
    if (!username || extra.length > 0) throw new UsageError("exactly one USERNAME is required");
    if (!/^[\w.@+-]{1,128}$/.test(username)) throw new UsageError("USERNAME may hold letters, digits and . _ @ + - (at most 128)");
    if (!values["password-stdin"]) throw new UsageError("--password-stdin is required (passwords are never taken as arguments)");
    const password = (await io.readStdin()).replace(/\r?\n$/, "");
    if (password.length < 8) throw new UsageError("the password must have at least 8 characters");
    return withServices(io.env, async (services) => {
      const id = await services.stores.users.insert(username, await Bun.password.hash(password));
      if (id === undefined) throw new UsageError(`user ${username} already exists`);
      io.stdout(JSON.stringify({ id, username }));
      return 0;
    });
  },
};
