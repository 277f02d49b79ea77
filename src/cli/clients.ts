// `clients create|list|get|update|delete|rotate-secret`: through the admin API (the running
// server's socket, or in process), validated as registration validates client metadata.
import type { Command } from "./command.ts";
import { parseFlags, positiveInteger, UsageError } from "./command.ts";
import { runAdmin, segment } from "./admin-client.ts";

const metadataFlags = {
  name: { type: "string" },
  "redirect-uri": { type: "string", multiple: true },
  "grant-type": { type: "string", multiple: true },
  scope: { type: "string" },
  "resource-server": { type: "string" },
  "access-token-ttl": { type: "string" },
  "refresh-token-ttl": { type: "string" },
  "dpop-bound-access-tokens": { type: "boolean" },
  "post-logout-redirect-uri": { type: "string", multiple: true },
  "backchannel-logout-uri": { type: "string" },
  "backchannel-logout-session-required": { type: "boolean" },
} as const;

type MetadataValues = {
  [K in keyof typeof metadataFlags]?: (typeof metadataFlags)[K] extends { multiple: true } ? string[] : (typeof metadataFlags)[K] extends { type: "boolean" } ? boolean : string;
};

/** The flags as RFC 7591 metadata (and the operator's fields); only what was given. */
function metadataOf(values: MetadataValues): Record<string, unknown> {
  const metadata: Record<string, unknown> = {};
  if (values.name !== undefined) metadata.client_name = values.name;
  if (values["redirect-uri"] !== undefined) metadata.redirect_uris = values["redirect-uri"];
  if (values["grant-type"] !== undefined) metadata.grant_types = values["grant-type"];
  if (values.scope !== undefined) metadata.scope = values.scope;
  if (values["resource-server"] !== undefined) metadata.resource_server = values["resource-server"];
  const accessTtl = positiveInteger("access-token-ttl", values["access-token-ttl"]);
  const refreshTtl = positiveInteger("refresh-token-ttl", values["refresh-token-ttl"]);
  if (accessTtl !== undefined) metadata.access_token_ttl = accessTtl;
  if (refreshTtl !== undefined) metadata.refresh_token_ttl = refreshTtl;
  // RFC 9449 §5.2: the client's token requests must carry a DPoP proof.
  if (values["dpop-bound-access-tokens"]) metadata.dpop_bound_access_tokens = true;
  // OpenID Connect RP-Initiated Logout 1.0 §3.1 and Back-Channel Logout 1.0 §2.2.
  if (values["post-logout-redirect-uri"] !== undefined) metadata.post_logout_redirect_uris = values["post-logout-redirect-uri"];
  if (values["backchannel-logout-uri"] !== undefined) metadata.backchannel_logout_uri = values["backchannel-logout-uri"];
  if (values["backchannel-logout-session-required"]) metadata.backchannel_logout_session_required = true;
  return metadata;
}

/** One CLIENT_ID positional, whatever it begins with. */
function clientIdOf(positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError("exactly one CLIENT_ID is required");
  return positionals[0]!;
}

const pageFlags = { limit: { type: "string" }, cursor: { type: "string" } } as const;
function pageQuery(values: { limit?: string; cursor?: string }, extra: Record<string, string | undefined> = {}): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(extra)) if (value !== undefined) query.set(name, value);
  if (values.limit !== undefined) {
    if (!/^\d{1,3}$/.test(values.limit) || Number(values.limit) < 1 || Number(values.limit) > 500) throw new UsageError("--limit must be 1 to 500");
    query.set("limit", values.limit);
  }
  if (values.cursor !== undefined) query.set("cursor", values.cursor);
  const text = query.toString();
  return text === "" ? "" : `?${text}`;
}

export const clientsCreate: Command = {
  path: ["clients", "create"],
  summary: "register a client and print it as JSON (the secret is shown only here)",
  usage: `token-authority clients create --name NAME [--public] [--redirect-uri URI]... [--grant-type GRANT]...
                                 [--scope "a b"] [--resource-server URI]
                                 [--access-token-ttl SECONDS] [--refresh-token-ttl SECONDS] [--dpop-bound-access-tokens]
                                 [--post-logout-redirect-uri URI]... [--backchannel-logout-uri URI] [--backchannel-logout-session-required]
  A confidential client gets the client_credentials grant unless --grant-type says otherwise;
  a public one (--public) the authorization_code and refresh_token grants, which need a
  --redirect-uri. The scope defaults to every scope the server knows.`,
  async run(argv, io) {
    const { values } = parseFlags(argv, { ...metadataFlags, public: { type: "boolean" } });
    if (!values.name) throw new UsageError("--name is required");
    const metadata = metadataOf(values);
    metadata.token_endpoint_auth_method = values.public ? "none" : "client_secret_basic";
    metadata.grant_types ??= values.public ? ["authorization_code", "refresh_token"] : ["client_credentials"];
    return runAdmin(io, "POST", "/admin/v1/clients", metadata);
  },
};

export const clientsList: Command = {
  path: ["clients", "list"],
  summary: "list registered clients as JSON, the newest first (never their secrets)",
  usage: "token-authority clients list [--limit N] [--cursor CURSOR]   (N up to 500, default 100; the cursor is the last page's next_cursor)",
  async run(argv, io) {
    const { values } = parseFlags(argv, pageFlags);
    return runAdmin(io, "GET", `/admin/v1/clients${pageQuery(values)}`);
  },
};

export const clientsUpdate: Command = {
  path: ["clients", "update"],
  summary: "change a client's metadata (what is given replaces what was registered)",
  usage: `token-authority clients update CLIENT_ID [--name NAME] [--redirect-uri URI]... [--grant-type GRANT]...
                                 [--scope "a b"] [--resource-server URI]
                                 [--access-token-ttl SECONDS] [--refresh-token-ttl SECONDS] [--dpop-bound-access-tokens]
                                 [--post-logout-redirect-uri URI]... [--backchannel-logout-uri URI] [--backchannel-logout-session-required]`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, metadataFlags, true);
    const change = metadataOf(values);
    if (Object.keys(change).length === 0) throw new UsageError("nothing to change: give at least one flag");
    return runAdmin(io, "PATCH", `/admin/v1/clients/${segment(clientIdOf(positionals))}`, change);
  },
};

/** A command on one client, with no flags: one admin call. */
const onClient = (word: string, summary: string, method: string): Command => ({
  path: ["clients", word],
  summary,
  usage: `token-authority clients ${word} CLIENT_ID`,
  async run(argv, io) {
    const { positionals } = parseFlags(argv, {}, true);
    return runAdmin(io, method, `/admin/v1/clients/${segment(clientIdOf(positionals))}`);
  },
});

export const clientsGet = onClient("get", "print one client as JSON", "GET");
export const clientsDelete = onClient("delete", "revoke every session of a client and delete it", "DELETE");

export const clientsRotateSecret: Command = {
  path: ["clients", "rotate-secret"],
  summary: "give a client a new secret (shown only here); the old one is refused at once, or after --grace",
  usage: "token-authority clients rotate-secret CLIENT_ID [--grace SECONDS] [--revoke-tokens]",
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { grace: { type: "string" }, "revoke-tokens": { type: "boolean" } }, true);
    const grace = values.grace === undefined ? 0 : positiveInteger("grace", values.grace);
    return runAdmin(io, "POST", `/admin/v1/clients/${segment(clientIdOf(positionals))}/secret`, {
      grace_seconds: grace,
      revoke_tokens: values["revoke-tokens"] ?? false,
    });
  },
};

export const clientCommands: readonly Command[] = [clientsCreate, clientsList, clientsGet, clientsUpdate, clientsDelete, clientsRotateSecret];
