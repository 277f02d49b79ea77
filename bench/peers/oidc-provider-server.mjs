// node-oidc-provider as the peer of `bun run bench --peers` (bench/peers.ts, bench/README.md):
// one confidential client_credentials client (client_secret_basic), revocation and introspection
// enabled, access tokens for a resource indicator, and the provider's documented Adapter interface
// (example/my_adapter.js in its repository) over PostgreSQL through a node-postgres pool.
//
// Environment: PORT, DATABASE_URL, PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_DB_POOL (default 10,
// node-postgres's default, and the fastest of 4, 10 and 16 here: bench/README.md). Logs one line
// when it listens and nothing per request.
//
// Two resource servers, chosen by the token request's `resource` (the default when absent is the
// first): opaque tokens, which the provider stores through the adapter, the only kind its
// revocation and introspection endpoints accept; and JWT access tokens (ES256, RFC 9068), which it
// signs and does not store, and whose revocation or introspection it answers with
// unsupported_token_type.
import { generateKeyPairSync } from "node:crypto";
import { createRequire } from "node:module";
import Provider, { errors } from "oidc-provider";
import pg from "pg";

const PORT = Number(process.env.PORT ?? 3000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const RESOURCES = {
  opaque: "http://127.0.0.1/api",
  jwt: "http://127.0.0.1/api-jwt",
};
const ACCESS_TOKEN_TTL = 3600; // TokenAuthority's default (TA_ACCESS_TOKEN_TTL)

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.PEER_DB_POOL ?? 10) });

// One table for every model, keyed by (model, id), with the payload as JSONB and the columns the
// adapter's lookups need: grant_id (revokeByGrantId), uid (findByUid: sessions), user_code
// (findByUserCode: device flow), each indexed where present.
const SCHEMA = `
create table if not exists oidc_payloads (
  model       text not null,
  id          text not null,
  payload     jsonb not null,
  grant_id    text,
  uid         text,
  user_code   text,
  expires_at  timestamptz,
  consumed_at timestamptz,
  primary key (model, id)
);
create index if not exists oidc_payloads_grant_id on oidc_payloads (grant_id) where grant_id is not null;
create index if not exists oidc_payloads_uid on oidc_payloads (uid) where uid is not null;
create index if not exists oidc_payloads_user_code on oidc_payloads (user_code) where user_code is not null;
create index if not exists oidc_payloads_expires_at on oidc_payloads (expires_at);
`;

// Named statements: node-postgres prepares each once per connection.
const live = "(expires_at is null or expires_at > now())";
const STATEMENTS = {
  upsert: `insert into oidc_payloads (model, id, payload, grant_id, uid, user_code, expires_at)
           values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
           on conflict (model, id) do update
              set payload = excluded.payload, grant_id = excluded.grant_id, uid = excluded.uid,
                  user_code = excluded.user_code, expires_at = excluded.expires_at, consumed_at = null`,
  find: `select payload, consumed_at from oidc_payloads where model = $1 and id = $2 and ${live}`,
  findByUid: `select payload, consumed_at from oidc_payloads where model = $1 and uid = $2 and ${live}`,
  findByUserCode: `select payload, consumed_at from oidc_payloads where model = $1 and user_code = $2 and ${live}`,
  consume: `update oidc_payloads set consumed_at = now() where model = $1 and id = $2`,
  destroy: `delete from oidc_payloads where model = $1 and id = $2`,
  revokeByGrantId: `delete from oidc_payloads where model = $1 and grant_id = $2`,
};

const query = (name, values) => pool.query({ name, text: STATEMENTS[name], values });

function stored(result) {
  const row = result.rows[0];
  if (!row) return undefined;
  return row.consumed_at ? { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) } : row.payload;
}

/** The provider's Adapter interface, one instance per model (AccessToken, ClientCredentials, Grant, ...). */
class PostgresAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    await query("upsert", [
      this.model,
      id,
      payload,
      payload.grantId ?? null,
      payload.uid ?? null,
      payload.userCode ?? null,
      typeof expiresIn === "number" ? expiresIn : null,
    ]);
  }

  async find(id) {
    return stored(await query("find", [this.model, id]));
  }

  async findByUid(uid) {
    return stored(await query("findByUid", [this.model, uid]));
  }

  async findByUserCode(userCode) {
    return stored(await query("findByUserCode", [this.model, userCode]));
  }

  async consume(id) {
    await query("consume", [this.model, id]);
  }

  async destroy(id) {
    await query("destroy", [this.model, id]);
  }

  async revokeByGrantId(grantId) {
    await query("revokeByGrantId", [this.model, grantId]);
  }
}

const signingKey = { ...generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" }), kid: "bench-es256", use: "sig", alg: "ES256" };
// Cookie keys are required by the provider; nothing in the benchmark sets a cookie.
const cookieKeys = [crypto.randomUUID()];

const provider = new Provider(ISSUER, {
  adapter: PostgresAdapter,
  clients: [
    {
      client_id: process.env.PEER_CLIENT_ID,
      client_secret: process.env.PEER_CLIENT_SECRET,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
      scope: "read write",
    },
  ],
  scopes: ["openid", "offline_access", "read", "write"],
  clientDefaults: { id_token_signed_response_alg: "ES256" },
  jwks: { keys: [signingKey] },
  cookies: { keys: cookieKeys },
  ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ACCESS_TOKEN_TTL },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // The provider's default policies, written out (the defaults print a notice on first use):
    // a confidential client may introspect any token, and revoke its own.
    introspection: { enabled: true, allowedPolicy: (ctx, client, token) => client.clientAuthMethod !== "none" || token.clientId === client.clientId },
    revocation: {
      enabled: true,
      allowedPolicy(ctx, client, token) {
        if (token.clientId === client.clientId) return true;
        if (client.clientAuthMethod === "none") return false;
        throw new errors.InvalidRequest("client is not authorized to revoke the presented token");
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCES.opaque,
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator === RESOURCES.opaque) {
          return { scope: "read write", accessTokenTTL: ACCESS_TOKEN_TTL, accessTokenFormat: "opaque" };
        }
        if (resourceIndicator === RESOURCES.jwt) {
          return { scope: "read write", accessTokenTTL: ACCESS_TOKEN_TTL, accessTokenFormat: "jwt", jwt: { sign: { alg: "ES256" } } };
        }
        throw new errors.InvalidTarget();
      },
    },
  },
});

await pool.query(SCHEMA);
const server = provider.listen(PORT, "127.0.0.1", () => {
  console.log(JSON.stringify({ event: "peer.started", port: PORT, node: process.version, oidc_provider: createRequire(import.meta.url)("oidc-provider/package.json").version, pool: pool.options.max }));
});
// Keep-alive connections outlive a pause between the benchmark's phases.
server.keepAliveTimeout = 30_000;

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    pool.end().finally(() => process.exit(0));
  });
}
