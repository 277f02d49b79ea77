// The admin API under /admin/v1: clients, users, sessions, browser sessions, resources, Shared
// Signals streams and signing keys of a running server, as JSON. Who may call it: a request that
// came through the admin socket (a Unix domain socket of mode 0600 — its file permissions are the
// credential) or from the CLI in process; or, when TA_ADMIN_REMOTE is on, a bearer token this server issued (client_credentials)
// with the `ta:admin` scope (RFC 6750: 401 without a valid one, 403 without the scope). Every
// action is audit-logged: who, what, on what — never a secret.
import { Elysia, t } from "elysia";
import type { Client } from "../../db/schema.ts";
import type { FamilyRow } from "../../db/stores/sessions.ts";
import type { User } from "../../db/stores/users.ts";
import type { Config } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Administration, Page, StreamOverview } from "../oauth/admin.ts";
import type { BrowserSessionRow } from "../oauth/browser-sessions.ts";
import { metadataOf, metadataSchema, operatorMetadataSchema } from "../oauth/registration.ts";
import { ADMIN_SCOPE } from "../oauth/scopes.ts";
import { bearerClient } from "./bearer.ts";
import type { TokenPipeline } from "../oauth/token-pipeline.ts";
import { jsonResponse } from "./responses.ts";

export const ADMIN_PREFIX = "/admin/v1";
const REALM = "token-authority-admin";

export interface AdminHttpDeps {
  config: Pick<Config, "adminRemote">;
  log: Logger;
  admin: Administration;
  pipeline: TokenPipeline;
  /** Requests that came through the admin socket, or from the CLI in process. */
  localAdmin: WeakSet<Request>;
}

const iso = (at: Date | null) => (at === null ? null : at.toISOString());

export function describeClient(client: Client) {
  return {
    client_id: client.clientId,
    client_type: client.type,
    /** operator, dynamic (RFC 7591) or document (a client ID metadata document, fetched again when stale). */
    registration: client.registration,
    ...metadataOf(client),
    ...(client.registration === "document" ? { document_expires_at: iso(client.documentExpiresAt) } : {}),
    first_used_at: iso(client.firstUsedAt),
    created_at: client.createdAt.toISOString(),
    updated_at: client.updatedAt.toISOString(),
    secret_rotation_grace_until: iso(client.previousSecretExpiresAt),
  };
}

export function describeUser(user: User) {
  return {
    id: user.id,
    username: user.username,
    disabled: user.disabledAt !== null,
    disabled_at: iso(user.disabledAt),
    /** OpenID Connect Core §5.1 claims (src/oauth/profiles.ts). */
    profile: user.profile,
    created_at: user.createdAt.toISOString(),
    updated_at: user.updatedAt.toISOString(),
  };
}

function describeFamily(row: FamilyRow) {
  return {
    family_id: row.familyId,
    session_id: row.sessionId,
    grant_id: row.grantId,
    client_id: row.clientId,
    subject: row.subject,
    status: row.status,
    scope: row.scope,
    created_at: row.createdAt.toISOString(),
    last_refresh_at: iso(row.lastRefreshAt),
    revoked_at: iso(row.revokedAt),
    revocation_reason: row.revocationReason,
  };
}

function describeStream({ stream, depth, lagSeconds }: StreamOverview) {
  return {
    stream_id: stream.id,
    receiver: stream.clientId,
    status: stream.status,
    status_reason: stream.statusReason,
    delivery_method: stream.deliveryMethod,
    endpoint_url: stream.endpointUrl,
    events_delivered: stream.eventsDelivered,
    description: stream.description,
    position: stream.position,
    /** Log entries above its position (some may not be for it) and the age of the oldest. */
    backlog: depth,
    lag_seconds: Math.round(lagSeconds * 1000) / 1000,
    failures: stream.failures,
    last_error: stream.lastError,
    next_attempt_at: iso(stream.nextAttemptAt),
    created_at: stream.createdAt.toISOString(),
  };
}

function describeBrowserSession(session: BrowserSessionRow) {
  return {
    id: session.id,
    user_id: session.userId,
    user_agent: session.userAgent,
    created_at: session.createdAt.toISOString(),
    last_seen_at: session.lastSeenAt.toISOString(),
    expires_at: session.expiresAt.toISOString(),
  };
}

const page = <T, R>(result: Page<T>, describe: (item: T) => R) => ({ items: result.items.map(describe), next_cursor: result.nextCursor });

const pageQuery = {
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 500 })),
  cursor: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
};
const pageOf = (query: { limit?: number; cursor?: string }) => ({ limit: query.limit ?? 100, cursor: query.cursor });

/** A client id or username in a path: what the server issues, bounded. */
const ref = t.String({ minLength: 1, maxLength: 256 });

/** RFC 7591 client metadata and the operator's fields; validated further by the one metadata path. */
const clientMetadata = t.Composite([metadataSchema, operatorMetadataSchema]);

const password = t.String({ minLength: 1, maxLength: 1024 });

/** Who is calling: `local` (the socket, the CLI), or the admin client of a bearer token. */
type Actor = string;

export function adminEndpoints({ config, log, admin, pipeline, localAdmin }: AdminHttpDeps) {
  /** RFC 6750 §3: who may call, decided before the request's body is validated. */
  async function actorOf(request: Request): Promise<Actor> {
    if (localAdmin.has(request)) return "local";
    if (!config.adminRemote) throw new OAuthError("not_found", "no such endpoint");
    return `client:${await bearerClient(pipeline, request, ADMIN_SCOPE, REALM)}`;
  }

  /** Runs an admin action, logs it (actor, action, target), answers JSON. */
  const act = async (actor: Actor, action: string, target: string | null, work: () => Promise<unknown>, status = 200) => {
    const body = await work();
    log.info("admin.action", { actor, action, target });
    return jsonResponse(body, status);
  };

  const detail = (summary: string) => ({ detail: { summary, tags: ["admin"] } });
  // Authentication comes before the body is validated, so an unauthenticated caller learns
  // nothing from the API's validation errors. (A transform hook of this plugin's routes only: an
  // asynchronous onRequest hook would make every request of the server wait on a promise.)
  const actors = new WeakMap<Request, Actor>();

  return new Elysia({ name: "admin", prefix: ADMIN_PREFIX })
    .onTransform(async ({ request }) => {
      actors.set(request, await actorOf(request));
    })
    .resolve(({ request }) => ({ actor: actors.get(request)! }))
    // ---- clients
    .get("/clients", ({ actor, query }) => act(actor, "clients.list", null, async () => page(await admin.listClients(pageOf(query)), describeClient)), {
      query: t.Object(pageQuery),
      ...detail("List clients, the newest first (paged)"),
    })
    .post(
      "/clients",
      ({ actor, body }) =>
        act(actor, "clients.create", null, async () => {
          const { client, secret } = await admin.createClient(body);
          return { ...describeClient(client), ...(secret ? { client_secret: secret } : {}) };
        }, 201),
      { body: clientMetadata, ...detail("Register a client (RFC 7591 metadata and the operator's fields); the secret is shown only here") },
    )
    .get("/clients/:client_id", ({ actor, params }) => act(actor, "clients.get", params.client_id, async () => describeClient(await admin.client(params.client_id))), {
      params: t.Object({ client_id: ref }),
      ...detail("A client"),
    })
    .patch(
      "/clients/:client_id",
      ({ actor, params, body }) =>
        act(actor, "clients.update", params.client_id, async () => describeClient(await admin.updateClient(params.client_id, body))),
      {
        params: t.Object({ client_id: ref }),
        body: t.Partial(clientMetadata),
        ...detail("Change a client's metadata: what is given replaces what was registered, and the whole is validated as registration is"),
      },
    )
    .delete("/clients/:client_id", ({ actor, params }) => act(actor, "clients.delete", params.client_id, async () => ({ sessions_revoked: await admin.deleteClient(params.client_id) })), {
      params: t.Object({ client_id: ref }),
      ...detail("Revoke every session of a client and delete it"),
    })
    .post(
      "/clients/:client_id/secret",
      ({ actor, params, body }) =>
        act(actor, "clients.rotate_secret", params.client_id, async () => {
          const { secret, revoked } = await admin.rotateClientSecret(params.client_id, {
            graceSeconds: body?.grace_seconds ?? 0,
            revokeTokens: body?.revoke_tokens ?? false,
          });
          return { client_id: params.client_id, client_secret: secret, sessions_revoked: revoked };
        }),
      {
        params: t.Object({ client_id: ref }),
        body: t.Optional(
          t.Object({
            /** Seconds the previous secret is still accepted (0: refused at once). */
            grace_seconds: t.Optional(t.Integer({ minimum: 0, maximum: 30 * 24 * 3600 })),
            revoke_tokens: t.Optional(t.Boolean()),
          }),
        ),
        ...detail("Give a client a new secret (shown only here); the old one refused at once or after a grace period"),
      },
    )
    // ---- users
    .get("/users", ({ actor, query }) => act(actor, "users.list", null, async () => page(await admin.listUsers(pageOf(query)), describeUser)), {
      query: t.Object(pageQuery),
      ...detail("List users, the newest first (paged)"),
    })
    .post("/users", ({ actor, body }) => act(actor, "users.create", body.username, async () => describeUser(await admin.createUser(body.username, body.password)), 201), {
      body: t.Object({ username: t.String({ minLength: 1, maxLength: 128 }), password }),
      ...detail("Create a user"),
    })
    .get("/users/:user", ({ actor, params }) => act(actor, "users.get", params.user, async () => describeUser(await admin.user(params.user))), {
      params: t.Object({ user: ref }),
      ...detail("A user, by id or username"),
    })
    .post(
      "/users/:user/disable",
      ({ actor, params }) =>
        act(actor, "users.disable", params.user, async () => {
          const { user, ended } = await admin.disableUser(params.user);
          return { ...describeUser(user), sessions_revoked: ended.revoked, browser_sessions_ended: ended.browserSessionsEnded };
        }),
      { params: t.Object({ user: ref }), ...detail("Disable a user: sign-in refused, every session ended") },
    )
    .patch(
      "/users/:user/profile",
      ({ actor, params, body }) => act(actor, "users.profile", params.user, async () => describeUser(await admin.setProfile(params.user, body))),
      {
        params: t.Object({ user: ref }),
        // Each claim a string, a boolean (*_verified) or null (removed); checked claim by claim by the domain.
        body: t.Record(t.String({ minLength: 1, maxLength: 64 }), t.Union([t.String({ maxLength: 256 }), t.Boolean(), t.Null()]), { maxProperties: 32 }),
        ...detail("Set (or, with null, remove) OpenID Connect standard claims of a user's profile"),
      },
    )
    .post("/users/:user/enable", ({ actor, params }) => act(actor, "users.enable", params.user, async () => describeUser(await admin.enableUser(params.user))), {
      params: t.Object({ user: ref }),
      ...detail("Enable a user again"),
    })
    .delete(
      "/users/:user",
      ({ actor, params }) =>
        act(actor, "users.delete", params.user, async () => {
          const ended = await admin.deleteUser(params.user);
          return { sessions_revoked: ended.revoked, browser_sessions_ended: ended.browserSessionsEnded };
        }),
      { params: t.Object({ user: ref }), ...detail("Revoke every session of a user and delete the user") },
    )
    .put(
      "/users/:user/password",
      ({ actor, params, body }) =>
        act(actor, "users.set_password", params.user, async () => {
          const ended = await admin.setPassword(params.user, body.password, { keepSessions: body.keep_sessions ?? false });
          return { sessions_revoked: ended.revoked, browser_sessions_ended: ended.browserSessionsEnded };
        }),
      {
        params: t.Object({ user: ref }),
        body: t.Object({ password, keep_sessions: t.Optional(t.Boolean()) }),
        ...detail("Set a user's password; their sessions end unless keep_sessions"),
      },
    )
    .get(
      "/users/:user/browser-sessions",
      ({ actor, params }) =>
        act(actor, "browser_sessions.list", params.user, async () => ({
          items: (await admin.browserSessionsOf(await admin.user(params.user))).map(describeBrowserSession),
        })),
      { params: t.Object({ user: ref }), ...detail("A user's live browser sessions") },
    )
    .delete(
      "/browser-sessions/:id",
      ({ actor, params }) =>
        act(actor, "browser_sessions.end", params.id, async () => {
          await admin.endBrowserSession(params.id);
          return { ended: true };
        }),
      { params: t.Object({ id: ref }), ...detail("End a browser session (its cookie stops working at once)") },
    )
    // ---- sessions (token families)
    .get(
      "/sessions",
      ({ actor, query }) =>
        act(actor, "sessions.list", query.user ?? query.client ?? null, async () =>
          page(await admin.families({ user: query.user, client: query.client }, pageOf(query)), describeFamily)),
      {
        query: t.Object({ user: t.Optional(ref), client: t.Optional(ref), ...pageQuery }),
        ...detail("Token families of a user or of a client, the newest first (paged)"),
      },
    )
    .delete("/sessions/:session_id", ({ actor, params }) => act(actor, "sessions.revoke", params.session_id, async () => ({ revoked: await admin.revokeSession(params.session_id) })), {
      params: t.Object({ session_id: ref }),
      ...detail("Revoke a session and its family"),
    })
    .post(
      "/sessions/revoke",
      ({ actor, body }) =>
        act(actor, "sessions.revoke_all", body.user ?? body.client ?? null, async () => ({ revoked: await admin.revokeSessions(body) })),
      {
        body: t.Object({ user: t.Optional(ref), client: t.Optional(ref) }),
        ...detail("Revoke every live session of a user, of a client, or of a user for a client"),
      },
    )
    // ---- resources (RFC 8707)
    .get("/resources", ({ actor }) => act(actor, "resources.list", null, async () => ({ items: await admin.listResources() })), detail("The resources tokens may be for"))
    .post(
      "/resources",
      ({ actor, body }) =>
        act(actor, "resources.add", body.resource, async () => {
          const scopes = body.scopes ?? [];
          const { resource, client } = await admin.addResource(body.resource, scopes, body.client ?? true);
          return {
            ...resource,
            ...(client ? { client_id: client.client.clientId, client_secret: client.secret } : {}),
          };
        }, 201),
      {
        body: t.Object({
          resource: t.String({ minLength: 1, maxLength: 2048 }),
          scopes: t.Optional(t.Array(t.String({ minLength: 1, maxLength: 128 }), { maxItems: 50 })),
          /** Also create the confidential client the resource server authenticates with (default true). */
          client: t.Optional(t.Boolean()),
        }),
        ...detail("Register an API or MCP server tokens may be for, and (by default) the client it authenticates with"),
      },
    )
    .delete(
      "/resources",
      ({ actor, query }) =>
        act(actor, "resources.remove", query.resource, async () => {
          await admin.removeResource(query.resource);
          return { removed: query.resource };
        }),
      { query: t.Object({ resource: t.String({ minLength: 1, maxLength: 2048 }) }), ...detail("Remove a registered resource") },
    )
    // ---- Shared Signals streams (SSF 1.0), of every receiver
    .get("/ssf/streams", ({ actor }) => act(actor, "ssf.streams.list", null, async () => ({ items: (await admin.listStreams()).map(describeStream) })), detail("Every Shared Signals stream, with its backlog and delivery state"))
    .post(
      "/ssf/streams/:stream_id/status",
      ({ actor, params, body }) =>
        act(actor, "ssf.streams.status", params.stream_id, () => admin.setStreamStatus(params.stream_id, body.status, body.reason)),
      {
        params: t.Object({ stream_id: ref }),
        body: t.Object({
          status: t.Union([t.Literal("enabled"), t.Literal("paused"), t.Literal("disabled")]),
          reason: t.Optional(t.String({ maxLength: 1000 })),
        }),
        ...detail("Enable, pause or disable a stream as the transmitter: its receiver gets a stream-updated event (SSF 1.0 §8.1.5)"),
      },
    )
    // ---- signing keys
    .get(
      "/keys",
      ({ actor }) =>
        act(actor, "keys.list", null, async () => ({
          items: (await admin.listKeys()).map((key) => ({
            kid: key.kid,
            alg: key.alg,
            status: key.status,
            created_at: key.createdAt.toISOString(),
            retired_at: iso(key.retiredAt),
            verify_until: iso(key.verifyUntil),
          })),
        })),
      detail("Signing keys, the newest first"),
    )
    .post(
      "/keys/rotate",
      ({ actor }) =>
        act(actor, "keys.rotate", null, async () => {
          const { active, retired } = await admin.rotateKey();
          return { active_kid: active, retired_kid: retired ?? null };
        }),
      detail("Make a new active signing key; the old one keeps verifying until its tokens expire"),
    )
    .post(
      "/keys/:kid/revoke",
      ({ actor, params }) => act(actor, "keys.revoke", params.kid, async () => ({ kid: params.kid, sessions_revoked: await admin.revokeKey(params.kid) })),
      { params: t.Object({ kid: ref }), ...detail("Revoke a signing key: gone from the JWKS, every token it signed refused") },
    );
}
