// `clients create` and `clients list`.
import { GRANT_TYPES } from "../oauth/clients.ts";
import type { Client } from "../oauth/clients.ts";
import type { Command } from "./command.ts";
import { parseFlags, positiveInteger, UsageError, withServices } from "./command.ts";

function describe(client: Client) {
  return {
    client_id: client.clientId,
    client_name: client.name,
    client_type: client.type,
    token_endpoint_auth_method: client.tokenEndpointAuthMethod,
    redirect_uris: client.redirectUris,
    grant_types: client.grantTypes,
    scope: client.scope,
    access_token_ttl: client.accessTokenTtl,
    refresh_token_ttl: client.refreshTokenTtl,
    resource_server: client.resourceServer,
    created_at: client.createdAt.toISOString(),
  };
}

export const clientsCreate: Command = {
  path: ["clients", "create"],
  summary: "register a client and print it as JSON (the secret is shown only here)",
  usage: `token-authority clients create --name NAME [--public] [--redirect-uri URI]... [--grant-type GRANT]...
                                 [--scope "a b"] [--resource-server URI]
                                 [--access-token-ttl SECONDS] [--refresh-token-ttl SECONDS]`,
  async run(argv, io) {
    const { values } = parseFlags(argv, {
      name: { type: "string" },
      public: { type: "boolean" },
      "redirect-uri": { type: "string", multiple: true },
      "grant-type": { type: "string", multiple: true },
      scope: { type: "string" },
      "resource-server": { type: "string" },
      "access-token-ttl": { type: "string" },
      "refresh-token-ttl": { type: "string" },
    });
    if (!values.name) throw new UsageError("--name is required");
    const grantTypes = values["grant-type"] ?? [];
    for (const grant of grantTypes) {
      if (!(GRANT_TYPES as readonly string[]).includes(grant)) throw new UsageError(`unknown --grant-type ${grant} (one of ${GRANT_TYPES.join(", ")})`);
    }
    if (values.public && grantTypes.includes("client_credentials")) {
      throw new UsageError("a public client cannot use client_credentials (RFC 6749 §4.4)");
    }
    for (const uri of values["redirect-uri"] ?? []) {
      if (!URL.canParse(uri) || new URL(uri).hash) throw new UsageError(`--redirect-uri ${uri} is not an absolute URI without fragment`);
    }
    const resourceServer = values["resource-server"];
    if (resourceServer !== undefined && !URL.canParse(resourceServer)) throw new UsageError("--resource-server must be a URI");
    return withServices(io.env, async (services) => {
      const { client, secret } = await services.clients.create({
        name: values.name!,
        type: values.public ? "public" : "confidential",
        redirectUris: values["redirect-uri"] ?? [],
        grantTypes,
        scope: values.scope ?? services.config.scopes.join(" "),
        resourceServer: resourceServer ?? null,
        accessTokenTtl: positiveInteger("access-token-ttl", values["access-token-ttl"]) ?? null,
        refreshTokenTtl: positiveInteger("refresh-token-ttl", values["refresh-token-ttl"]) ?? null,
      });
      io.stdout(JSON.stringify({ ...describe(client), ...(secret ? { client_secret: secret } : {}) }, null, 2));
      return 0;
    });
  },
};

export const clientsList: Command = {
  path: ["clients", "list"],
  summary: "list registered clients as JSON (never their secrets)",
  usage: "token-authority clients list",
  async run(argv, io) {
    parseFlags(argv, {});
    return withServices(io.env, async (services) => {
      io.stdout(JSON.stringify((await services.clients.list()).map(describe), null, 2));
      return 0;
    });
  },
};
