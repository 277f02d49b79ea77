// Operating a running server: clients, users, sessions and signing keys, for the admin API
// (src/http/admin.ts) and through it the CLI. Every change that ends sessions is one transaction
// (db/stores/lifecycle.ts) whose feed entries name the reason; every instance hears of a changed
// client or key at once (src/oauth/invalidation.ts).
import type { Client } from "../../db/schema.ts";
import type { FamilyRow } from "../../db/stores/sessions.ts";
import type { Stores } from "../../db/stores/index.ts";
import type { EndedSessions } from "../../db/stores/lifecycle.ts";
import type { User } from "../../db/stores/users.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { OAuthError } from "../errors.ts";
import type { BrowserSessionRow, BrowserSessions } from "./browser-sessions.ts";
import type { Clients } from "./clients.ts";
import { hashSecret, newSecret } from "./clients.ts";
import type { KeyStore } from "./keys.ts";
import { clientFields, metadataOf, registerClient, validateMetadata } from "./registration.ts";
import type { RegistrationResult } from "./registration.ts";
import type { ProtectedResource, Resources } from "./resources.ts";
import { normalizeResource } from "./resources.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import { ADMIN_SCOPE, parseScope } from "./scopes.ts";
import type { SessionService } from "./sessions.ts";
import type { ProfileChange } from "./profiles.ts";
import { changedProfile } from "./profiles.ts";
import type { SsfStream, StreamStatus } from "../../db/stores/ssf.ts";
import type { Streams } from "../ssf/streams.ts";

export interface Page<T> {
  items: T[];
  /** Where the next page starts; null on the last page. */
  nextCursor: string | null;
}

export interface PageRequest {
  limit: number;
  cursor?: string;
}

/** A page cursor: the last item's creation time and id, opaque to callers. */
interface Cursor {
  createdAt: Date;
  id: string;
}

function decodeCursor(cursor: string | undefined): Cursor | undefined {
  if (cursor === undefined) return undefined;
  try {
    const { t, id } = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { t: string; id: string };
    const createdAt = new Date(t);
    if (Number.isNaN(createdAt.getTime()) || typeof id !== "string" || !UUID.test(id)) throw new Error("bad cursor");
    return { createdAt, id };
  } catch {
    throw OAuthError.invalidRequest("invalid cursor");
  }
}

const encodeCursor = (createdAt: Date, id: string) => Buffer.from(JSON.stringify({ t: createdAt.toISOString(), id })).toString("base64url");

function paged<T>(rows: T[], limit: number, key: (row: T) => Cursor): Page<T> {
  const last = rows.length === limit ? rows.at(-1) : undefined;
  return { items: rows, nextCursor: last === undefined ? null : encodeCursor(key(last).createdAt, key(last).id) };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Usernames: letters, digits and . _ @ + - (at most 128), and never shaped like a user id. */
const USERNAME = /^[\w.@+-]{1,128}$/;
export const MIN_PASSWORD_LENGTH = 8;
const MAX_PASSWORD_LENGTH = 1024;

export interface AdminDeps {
  config: Pick<Config, "scopes" | "keyReloadInterval">;
  stores: Pick<Stores, "clients" | "users" | "sessions" | "signingKeys" | "lifecycle" | "resources" | "ssf">;
  clients: Clients;
  sessions: SessionService;
  browserSessions: BrowserSessions;
  keys: KeyStore;
  notifier: RevocationNotifier;
  log: Logger;
  resources: Resources;
  streams: Streams;
}

/** A Shared Signals stream as an operator sees it: its receiver, its state and what it has yet to receive. */
export interface StreamOverview {
  stream: SsfStream;
  /** Log entries above its position (not all of them may be for it), and the age of the oldest in seconds. */
  depth: number;
  lagSeconds: number;
}

export class Administration {
  constructor(private readonly deps: AdminDeps) {}

  // ---- clients

  /** Registers a client from RFC 7591 metadata and the operator's fields (one validation path). */
  createClient(input: unknown): Promise<RegistrationResult> {
    return registerClient(this.deps.clients, this.deps.config, input, { operator: true });
  }

  async listClients(page: PageRequest): Promise<Page<Client>> {
    const rows = await this.deps.stores.clients.list({ limit: page.limit, after: decodeCursor(page.cursor) });
    return paged(rows, page.limit, (client) => ({ createdAt: client.createdAt, id: client.id }));
  }

  async client(clientId: string): Promise<Client> {
    const client = await this.deps.stores.clients.find(clientId);
    if (!client) throw new OAuthError("not_found", "no such client");
    return client;
  }

  /** Changes a client's metadata: the current registration with the change, validated as a whole. */
  async updateClient(clientId: string, change: Record<string, unknown>): Promise<Client> {
    const current = await this.client(clientId);
    const metadata = validateMetadata({ ...metadataOf(current), ...change }, this.deps.config, { operator: true });
    const { type, ...fields } = clientFields(metadata);
    if (type !== current.type) throw OAuthError.invalidClientMetadata("token_endpoint_auth_method cannot turn a public client into a confidential one, or back");
    if (current.scope.split(" ").includes(ADMIN_SCOPE) && !parseScope(metadata.scope).includes(ADMIN_SCOPE)) await this.refuseLastAdmin(current);
    const updated = await this.deps.stores.clients.update(clientId, {
      name: fields.name,
      tokenEndpointAuthMethod: fields.tokenEndpointAuthMethod,
      redirectUris: fields.redirectUris,
      grantTypes: fields.grantTypes,
      responseTypes: fields.responseTypes,
      scope: fields.scope,
      accessTokenTtl: fields.accessTokenTtl,
      refreshTokenTtl: fields.refreshTokenTtl,
      resourceServer: fields.resourceServer,
      metadata: fields.metadata,
    });
    if (!updated) throw new OAuthError("not_found", "no such client");
    await this.deps.notifier.invalidate({ client: clientId });
    return updated;
  }

  /** Revokes every session of the client, then deletes it. Answers the sessions revoked. */
  async deleteClient(clientId: string): Promise<number> {
    const client = await this.client(clientId);
    if (client.scope.split(" ").includes(ADMIN_SCOPE)) await this.refuseLastAdmin(client);
    const revoked = await this.deps.stores.lifecycle.deleteClient(clientId);
    if (revoked === undefined) throw new OAuthError("not_found", "no such client");
    this.deps.stores.clients.forget(clientId);
    this.ended({ revoked, browserSessionsEnded: 0 }, "client_deleted", { client_id: clientId });
    await this.deps.notifier.invalidate({ client: clientId });
    return revoked;
  }

  /**
   * A new secret (shown once); the old one is refused at once, or accepted `graceSeconds` more.
   * Tokens are kept unless `revokeTokens`.
   */
  async rotateClientSecret(clientId: string, options: { graceSeconds: number; revokeTokens: boolean }): Promise<{ secret: string; revoked: number }> {
    const client = await this.client(clientId);
    if (client.type !== "confidential") throw OAuthError.invalidRequest("a public client has no secret");
    const secret = newSecret();
    const revoked = await this.deps.stores.lifecycle.rotateClientSecret(clientId, hashSecret(secret), options.graceSeconds, options.revokeTokens);
    if (revoked === undefined) throw new OAuthError("not_found", "no such client");
    this.deps.stores.clients.forget(clientId);
    if (options.revokeTokens) this.ended({ revoked, browserSessionsEnded: 0 }, "secret_rotated", { client_id: clientId });
    else this.deps.notifier.committed(); // the credential-change event
    await this.deps.notifier.invalidate({ client: clientId });
    return { secret, revoked };
  }

  /** The admin API must stay reachable with a bearer token: its last admin client is kept. */
  private async refuseLastAdmin(client: Client): Promise<void> {
    if ((await this.deps.stores.clients.countWithScope(ADMIN_SCOPE)) <= 1) {
      throw OAuthError.invalidRequest(`${client.clientId} is the last client with the ${ADMIN_SCOPE} scope: create another one first`);
    }
  }

  // ---- users

  async createUser(username: string, password: string): Promise<User> {
    if (!USERNAME.test(username) || UUID.test(username)) {
      throw OAuthError.invalidRequest("username may hold letters, digits and . _ @ + - (at most 128), and may not look like a user id");
    }
    checkPassword(password);
    const id = await this.deps.stores.users.insert(username, await Bun.password.hash(password));
    if (id === undefined) throw new OAuthError("invalid_request", `user ${username} already exists`);
    return (await this.deps.stores.users.findById(id))!;
  }

  async listUsers(page: PageRequest): Promise<Page<User>> {
    const rows = await this.deps.stores.users.list({ limit: page.limit, after: decodeCursor(page.cursor) });
    return paged(rows, page.limit, (user) => ({ createdAt: user.createdAt, id: user.id }));
  }

  /** A user by id, or by username. */
  async user(ref: string): Promise<User> {
    const user = UUID.test(ref) ? await this.deps.stores.users.findById(ref) : await this.deps.stores.users.findByUsername(ref);
    if (!user) throw new OAuthError("not_found", "no such user");
    return user;
  }

  /** Disables a user: sign-in refused, every session (tokens, browser, codes) ended. */
  async disableUser(ref: string): Promise<{ user: User; ended: EndedSessions }> {
    const user = await this.user(ref);
    const ended = await this.deps.stores.lifecycle.disableUser(user.id);
    if (!ended) throw new OAuthError("not_found", "no such user");
    this.ended(ended, "user_disabled", { user_id: user.id });
    return { user: await this.user(user.id), ended };
  }

  /** Sets and removes claims of a user's profile (a patch: null removes, the rest stays). */
  async setProfile(ref: string, change: ProfileChange): Promise<User> {
    const user = await this.user(ref);
    const updated = await this.deps.stores.users.updateProfile(user.id, (current) => changedProfile(current, change));
    if (!updated) throw new OAuthError("not_found", "no such user");
    return updated;
  }

  async enableUser(ref: string): Promise<User> {
    const user = await this.user(ref);
    if (!(await this.deps.stores.lifecycle.enableUser(user.id))) throw new OAuthError("not_found", "no such user");
    this.deps.notifier.committed();
    return this.user(user.id);
  }

  async deleteUser(ref: string): Promise<EndedSessions> {
    const user = await this.user(ref);
    const ended = await this.deps.stores.lifecycle.deleteUser(user.id);
    if (!ended) throw new OAuthError("not_found", "no such user");
    this.ended(ended, "user_deleted", { user_id: user.id });
    return ended;
  }

  /** A new password; the user's other sessions end unless `keepSessions`. */
  async setPassword(ref: string, password: string, options: { keepSessions: boolean; keepBrowserSession?: string }): Promise<EndedSessions> {
    checkPassword(password);
    const user = await this.user(ref);
    const ended = await this.deps.stores.lifecycle.setPassword(user.id, await Bun.password.hash(password), options);
    if (!ended) throw new OAuthError("not_found", "no such user");
    this.ended(ended, "password_changed", { user_id: user.id });
    return ended;
  }

  /** "Sign out everywhere": every browser session and token family of the user ends. */
  async signOutEverywhere(userId: string): Promise<EndedSessions> {
    const ended = await this.deps.stores.lifecycle.endUserSessions(userId, "signed_out");
    this.ended(ended!, "signed_out", { user_id: userId });
    return ended!;
  }

  browserSessionsOf(user: User): Promise<BrowserSessionRow[]> {
    return this.deps.browserSessions.list(user.id);
  }

  async endBrowserSession(id: string): Promise<void> {
    if (!UUID.test(id) || !(await this.deps.browserSessions.end(id, "ended_by_operator"))) {
      throw new OAuthError("not_found", "no such live browser session");
    }
  }

  // ---- sessions (token families)

  async families(filter: { user?: string; client?: string }, page: PageRequest): Promise<Page<FamilyRow>> {
    if (filter.user === undefined && filter.client === undefined) throw OAuthError.invalidRequest("give user or client");
    const userId = filter.user === undefined ? undefined : (await this.user(filter.user)).id;
    if (filter.client !== undefined) await this.client(filter.client);
    const after = decodeCursor(page.cursor);
    const rows = await this.deps.stores.sessions.families({ userId, clientId: filter.client }, { limit: page.limit, after });
    return paged(rows, page.limit, (row) => ({ createdAt: row.createdAt, id: row.familyId }));
  }

  /** Revokes a session and its family. */
  async revokeSession(sessionId: string): Promise<number> {
    if (!UUID.test(sessionId)) throw new OAuthError("not_found", "no such session");
    return this.deps.sessions.revoke({ sessionId }, "revoked_by_operator");
  }

  /** Revokes every live session of a user, of a client, or of a user for a client. */
  async revokeSessions(filter: { user?: string; client?: string }): Promise<number> {
    if (filter.user === undefined && filter.client === undefined) throw OAuthError.invalidRequest("give user or client");
    const userId = filter.user === undefined ? undefined : (await this.user(filter.user)).id;
    if (filter.client !== undefined) await this.client(filter.client);
    const revoked = await this.deps.sessions.revoke(
      filter.client !== undefined ? { clientId: filter.client, userId } : { userId: userId! },
      "revoked_by_operator",
    );
    return revoked;
  }

  // ---- resources (RFC 8707)

  /** The resources tokens may be for, each marked configured (the environment) or registered. */
  async listResources(): Promise<Array<ProtectedResource & { registered: boolean }>> {
    const registered = new Set((await this.deps.stores.resources.list()).map((row) => row.uri));
    return (await this.deps.resources.all()).map((resource) => ({ ...resource, registered: registered.has(resource.resource) }));
  }

  /**
   * Registers an API or MCP server tokens may be for; with `client`, also the confidential client
   * it authenticates with to the introspection endpoint and the revocation feed (its secret
   * shown once).
   */
  async addResource(uri: string, scopes: readonly string[], client: boolean): Promise<{ resource: ProtectedResource; client?: RegistrationResult }> {
    const resource = await this.deps.resources.add(uri, scopes);
    await this.deps.notifier.invalidate("resources");
    if (!client) return { resource };
    const registered = await this.createClient({
      client_name: `resource server ${resource.resource}`.slice(0, 200),
      grant_types: ["client_credentials"],
      scope: resource.scopes.join(" ") || undefined,
      resource_server: resource.resource,
    });
    return { resource, client: registered };
  }

  async removeResource(uri: string): Promise<void> {
    if (!(await this.deps.resources.remove(uri))) {
      const configured = (await this.deps.resources.all()).some((r) => normalizeResource(r.resource) === normalizeResource(uri));
      throw new OAuthError("not_found", configured ? "the resource is configured (TA_RESOURCES), not registered" : "no such registered resource");
    }
    await this.deps.notifier.invalidate("resources");
  }

  // ---- Shared Signals streams (SSF 1.0), of every receiver

  async listStreams(): Promise<StreamOverview[]> {
    const [streams, backlog] = await Promise.all([this.deps.stores.ssf.list(), this.deps.stores.ssf.backlog()]);
    const byId = new Map(backlog.map((row) => [row.streamId, row]));
    return streams.map((stream) => ({ stream, depth: byId.get(stream.id)?.depth ?? 0, lagSeconds: byId.get(stream.id)?.lagSeconds ?? 0 }));
  }

  /** The transmitter changes a stream's status: its receiver is told in a stream-updated event (SSF 1.0 §8.1.5). */
  setStreamStatus(streamId: string, status: StreamStatus, reason: string | undefined) {
    return this.deps.streams.setStatusAsTransmitter(streamId, status, reason);
  }

  // ---- signing keys

  listKeys() {
    return this.deps.stores.signingKeys.list();
  }

  async rotateKey(): Promise<{ active: string; retired: string | undefined }> {
    const rotated = await this.deps.keys.rotate();
    await this.deps.notifier.invalidate("keys");
    return rotated;
  }

  /**
   * Revokes a key: gone from the JWKS, and every live session whose tokens it signed revoked, so
   * its tokens are refused everywhere (introspection, refresh, the feed's resource servers).
   */
  async revokeKey(kid: string): Promise<number> {
    const result = await this.deps.stores.lifecycle.revokeSigningKey(kid, this.deps.config.keyReloadInterval);
    if (result === "unknown") throw new OAuthError("not_found", "no such key (or revoked already)");
    if (result === "active") throw OAuthError.invalidRequest("this is the active signing key: rotate first, then revoke it");
    await this.deps.keys.reload();
    this.ended({ revoked: result.revoked, browserSessionsEnded: 0 }, "key_revoked", { kid });
    await this.deps.notifier.invalidate("keys");
    return result.revoked;
  }

  /** After a security event: other instances told, the count kept, the event logged with its reason. */
  private ended(ended: EndedSessions, reason: string, target: Record<string, string>): void {
    // Also when no session ended: the event itself is in the log (account-disabled, …).
    this.deps.notifier.committed();
    this.deps.sessions.counted(reason, ended.revoked);
    this.deps.log.info("security.sessions.ended", { reason, ...target, sessions_revoked: ended.revoked, browser_sessions_ended: ended.browserSessionsEnded });
  }
}

function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw OAuthError.invalidRequest(`the password must have ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`);
  }
}
