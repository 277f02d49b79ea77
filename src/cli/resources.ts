// `resources add|list|remove`: the APIs and MCP servers tokens are for (RFC 8707), through the
// admin API. `add` also creates the confidential client the resource server authenticates with
// (to the introspection endpoint and the revocation feed), unless --no-client.
import type { Command } from "./command.ts";
import { parseFlags, UsageError } from "./command.ts";
import { runAdmin } from "./admin-client.ts";
import { parseScope } from "../oauth/scopes.ts";

function uriOf(positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError("exactly one URL is required");
  return positionals[0]!;
}

export const resourceCommands: readonly Command[] = [
  {
    path: ["resources", "add"],
    summary: "register an API or MCP server tokens may be for, and the client it authenticates with",
    usage: `token-authority resources add URL [--scope "a b"] [--no-client]
  URL is compared after RFC 3986 normalisation (http://Host:80 and http://host/ are one). The
  scopes are those it accepts (known to the server, TA_SCOPES). Prints the resource and, unless
  --no-client, the client_id and client_secret (shown only here) of its confidential client.`,
    async run(argv, io) {
      const { values, positionals } = parseFlags(argv, { scope: { type: "string" }, "no-client": { type: "boolean" } }, true);
      return runAdmin(io, "POST", "/admin/v1/resources", {
        resource: uriOf(positionals),
        scopes: values.scope === undefined ? [] : parseScope(values.scope),
        client: !values["no-client"],
      });
    },
  },
  {
    path: ["resources", "list"],
    summary: "list the resources tokens may be for (configured and registered)",
    usage: "token-authority resources list",
    async run(argv, io) {
      parseFlags(argv, {});
      return runAdmin(io, "GET", "/admin/v1/resources");
    },
  },
  {
    path: ["resources", "remove"],
    summary: "remove a registered resource (tokens for it are no longer issued)",
    usage: "token-authority resources remove URL",
    async run(argv, io) {
      const { positionals } = parseFlags(argv, {}, true);
      return runAdmin(io, "DELETE", `/admin/v1/resources?${new URLSearchParams({ resource: uriOf(positionals) })}`);
    },
  },
];
