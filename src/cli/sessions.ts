// `sessions revoke`: operators revoke one session, or every live session of a client or user.
import type { SessionFilter } from "../oauth/sessions.ts";
import type { Command } from "./command.ts";
import { parseFlags, UsageError, withServices } from "./command.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const sessionsRevoke: Command = {
  path: ["sessions", "revoke"],
  summary: "revoke a session, or every live session of a client or a user (one transaction)",
  usage: "token-authority sessions revoke --session ID | --client CLIENT_ID | --user USERNAME",
  async run(argv, io) {
    const { values } = parseFlags(argv, {
      session: { type: "string" },
      client: { type: "string" },
      user: { type: "string" },
    });
    const given = [values.session, values.client, values.user].filter((v) => v !== undefined);
    if (given.length !== 1) throw new UsageError("give exactly one of --session, --client, --user");
    if (values.session !== undefined && !UUID.test(values.session)) throw new UsageError("--session must be a session id (uuid)");
    return withServices(io.env, async (services) => {
      let filter: SessionFilter;
      if (values.session !== undefined) filter = { sessionId: values.session };
      else if (values.client !== undefined) filter = { clientId: values.client };
      else {
        const user = await services.accounts.findByUsername(values.user!);
        if (!user) throw new UsageError(`no user ${values.user}`);
        filter = { userId: user.id };
      }
      const revoked = await services.sessions.revoke(filter, "revoked_by_operator");
      services.log.info("token.revocation.operator", { revoked });
      io.stdout(JSON.stringify({ revoked }));
      return 0;
    });
  },
};
