// `sessions revoke`: operators revoke one session, or every live session of a client or user.
import { eq, sql } from "drizzle-orm";
import { sessions, users } from "../../db/schema.ts";
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
    return withServices(io.env, async (services, database) => {
      let where;
      if (values.session !== undefined) where = eq(sessions.id, values.session);
      else if (values.client !== undefined) where = eq(sessions.clientId, values.client);
      else {
        const [user] = await database.db.select({ id: users.id }).from(users).where(eq(users.username, values.user!));
        if (!user) throw new UsageError(`no user ${values.user}`);
        where = sql`${sessions.subject} = ${user.id}`;
      }
      const revoked = await services.sessions.revokeWhere(where, "revoked_by_operator");
      services.log.info("token.revocation.operator", { revoked });
      io.stdout(JSON.stringify({ revoked }));
      return 0;
    });
  },
};
