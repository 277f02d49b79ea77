// `sessions list|revoke`: token families of a user or a client, through the admin API.
import type { Command } from "./command.ts";
import { parseFlags, UsageError } from "./command.ts";
import { runAdmin, segment } from "./admin-client.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const sessionsList: Command = {
  path: ["sessions", "list"],
  summary: "list the token families of a user or a client (status, client, created, last refresh)",
  usage: "token-authority sessions list --user USER | --client CLIENT_ID [--limit N] [--cursor CURSOR]",
  async run(argv, io) {
    const { values } = parseFlags(argv, { user: { type: "string" }, client: { type: "string" }, limit: { type: "string" }, cursor: { type: "string" } });
    if (values.user === undefined && values.client === undefined) throw new UsageError("give --user or --client");
    const query = new URLSearchParams(Object.entries(values).filter((entry): entry is [string, string] => typeof entry[1] === "string"));
    return runAdmin(io, "GET", `/admin/v1/sessions?${query}`);
  },
};

export const sessionsRevoke: Command = {
  path: ["sessions", "revoke"],
  summary: "revoke a session, or every live session of a client or a user (one transaction)",
  usage: "token-authority sessions revoke --session ID | --client CLIENT_ID | --user USER",
  async run(argv, io) {
    const { values } = parseFlags(argv, { session: { type: "string" }, client: { type: "string" }, user: { type: "string" } });
    const given = [values.session, values.client, values.user].filter((v) => v !== undefined);
    if (given.length !== 1) throw new UsageError("give exactly one of --session, --client, --user");
    if (values.session !== undefined) {
      if (!UUID.test(values.session)) throw new UsageError("--session must be a session id (uuid)");
      return runAdmin(io, "DELETE", `/admin/v1/sessions/${segment(values.session)}`);
    }
    return runAdmin(io, "POST", "/admin/v1/sessions/revoke", values.client !== undefined ? { client: values.client } : { user: values.user });
  },
};
