// Drizzle tables of TokenAuthority: clients, users, authorization grants, OAuth sessions,
// signing keys and the revocation feed. Only JTIs are stored, never tokens.
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

const timestamps = {
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
};

export const clientType = pgEnum("client_type", ["confidential", "public"]);
export const sessionStatus = pgEnum("session_status", ["created", "refreshed", "revoked", "expired"]);
/** revoked: withdrawn before its time (a compromise): gone from the JWKS, nothing it signed is accepted. */
export const signingKeyStatus = pgEnum("signing_key_status", ["active", "retired", "revoked"]);

/** The kinds of token a session issues; each has its own jti (and digest) column. */
export const TOKEN_KINDS = ["access_token", "refresh_token"] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** RFC 7591 metadata that has no column of its own (client_uri, logo_uri, contacts, ...). */
export type ClientMetadata = Record<string, unknown>;

/**
 * How a client came to be: made by an operator (CLI, admin API), registered dynamically (RFC 7591,
 * `POST /oauth/register`), or read from its client ID metadata document (its client_id is the URL).
 */
export const clientRegistration = pgEnum("client_registration", ["operator", "dynamic", "document"]);

export const clients = pgTable("clients", {
  id: uuid("id").primaryKey().defaultRandom(),
  clientId: text("client_id").notNull().unique(),
  name: text("name").notNull(),
  type: clientType("type").notNull(),
  /** SHA-256 of the secret (secrets are 256-bit random, so a fast hash is enough). */
  secretHash: text("secret_hash"),
  tokenEndpointAuthMethod: text("token_endpoint_auth_method").notNull(),
  redirectUris: text("redirect_uris").array().notNull().default(sql`'{}'::text[]`),
  grantTypes: text("grant_types").array().notNull(),
  responseTypes: text("response_types").array().notNull().default(sql`'{}'::text[]`),
  scope: text("scope").notNull().default(""),
  /** Seconds; null means the server default. */
  accessTokenTtl: integer("access_token_ttl"),
  refreshTokenTtl: integer("refresh_token_ttl"),
  /** Resource URI this client serves; lets it introspect tokens whose aud contains it. */
  resourceServer: text("resource_server"),
  metadata: jsonb("metadata").$type<ClientMetadata>().notNull().default({}),
  /** After a secret rotation with a grace period: the previous secret's hash, accepted until then. */
  previousSecretHash: text("previous_secret_hash"),
  previousSecretExpiresAt: timestamp("previous_secret_expires_at", { withTimezone: true }),
  registration: clientRegistration("registration").notNull().default("operator"),
  /** A metadata-document client: until when the fetched document is fresh (then fetched again). */
  documentExpiresAt: timestamp("document_expires_at", { withTimezone: true }),
  /** When pruning first saw a code or a token of the client (clients never used are pruned). */
  firstUsedAt: timestamp("first_used_at", { withTimezone: true }),
  ...timestamps,
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
}, (table) => [
  // What pruning of unused clients reads: the few self-registered clients not yet seen in use.
  index("clients_unused_idx").on(table.createdAt).where(sql`registration <> 'operator' and first_used_at is null`),
]);

export const users = pgTable("users", {
  id: uuid("id").primaryKey().defaultRandom(),
  username: text("username").notNull().unique(),
  passwordHash: text("password_hash").notNull(),
  /** A disabled user cannot sign in, and every session of theirs was ended when it was disabled. */
  disabledAt: timestamp("disabled_at", { withTimezone: true }),
  /** OpenID Connect Core 1.0 §5.1 standard claims the operator set (src/oauth/profiles.ts). */
  profile: jsonb("profile").$type<Record<string, string | boolean>>().notNull().default({}),
  ...timestamps,
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

export const authorizationGrants = pgTable(
  "authorization_grants",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    /** SHA-256 of the authorization code; null for grants that never had a code. */
    codeHash: text("code_hash").unique(),
    clientId: text("client_id")
      .notNull()
      .references(() => clients.clientId, { onDelete: "cascade" }),
    userId: uuid("user_id").references(() => users.id, { onDelete: "cascade" }),
    codeChallenge: text("code_challenge"),
    codeChallengeMethod: text("code_challenge_method"),
    redirectUri: text("redirect_uri"),
    scope: text("scope").notNull().default(""),
    resources: text("resources").array().notNull().default(sql`'{}'::text[]`),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    redeemedAt: timestamp("redeemed_at", { withTimezone: true }),
    /**
     * The browser sign-in the grant was given in (OpenID Connect `sid`): whose end sends the
     * grant's client a logout token (Back-Channel Logout 1.0). Null without one (a trusted header).
     */
    browserSessionId: uuid("browser_session_id"),
    ...timestamps,
  },
  (table) => [
    index("authorization_grants_client_id_idx").on(table.clientId),
    index("authorization_grants_browser_session_idx").on(table.browserSessionId).where(sql`browser_session_id is not null`),
    index("authorization_grants_user_id_idx").on(table.userId),
    index("authorization_grants_expires_at_idx").on(table.expiresAt),
  ],
);

export const sessions = pgTable(
  "sessions",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    /** The authorization grant this session descends from; null for client_credentials. */
    grantId: uuid("grant_id").references(() => authorizationGrants.id, { onDelete: "cascade" }),
    /** The session this one was rotated from (refresh_token grant). */
    parentId: uuid("parent_id"),
    clientId: text("client_id")
      .notNull()
      .references(() => clients.clientId, { onDelete: "cascade" }),
    subject: text("subject").notNull(),
    scope: text("scope").notNull().default(""),
    audience: text("audience").array().notNull().default(sql`'{}'::text[]`),
    accessTokenJti: text("access_token_jti").notNull().unique(),
    refreshTokenJti: text("refresh_token_jti").unique(),
    /**
     * SHA-256 (base64url) of the access token as issued: a presented token equal to it is
     * ours without an ECDSA verification (src/oauth/tokens.ts). Null for sessions issued before
     * migration 0007 (or whose digests could not be stored): their tokens are verified.
     */
    accessTokenSha256: text("access_token_sha256"),
    /** SHA-256 (base64url) of the refresh token as issued, like accessTokenSha256. */
    refreshTokenSha256: text("refresh_token_sha256"),
    /** The signing key (kid) of the session's tokens; null for sessions issued before migration 0010. */
    signingKid: text("signing_kid"),
    status: sessionStatus("status").notNull().default("created"),
    accessExpiresAt: timestamp("access_expires_at", { withTimezone: true }).notNull(),
    refreshExpiresAt: timestamp("refresh_expires_at", { withTimezone: true }),
    ...timestamps,
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
    revocationReason: text("revocation_reason"),
  },
  (table) => [
    index("sessions_grant_id_idx").on(table.grantId),
    index("sessions_client_id_live_idx").on(table.clientId).where(sql`status = 'created'`),
    index("sessions_subject_live_idx").on(table.subject).where(sql`status = 'created'`),
    index("sessions_expiry_idx").on(table.refreshExpiresAt, table.accessExpiresAt),
    index("sessions_signing_kid_live_idx").on(table.signingKid).where(sql`status = 'created'`),
  ],
);

/**
 * A signed-in browser: the cookie holds a 256-bit random token, of which only the SHA-256 is
 * stored, so ending the row (logout, "Sign out everywhere", a disabled user) ends the cookie.
 */
export const browserSessions = pgTable(
  "browser_sessions",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    tokenHash: text("token_hash").notNull().unique(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    /** The User-Agent it signed in with (bounded), to tell sessions apart on the account page. */
    userAgent: text("user_agent"),
    ...timestamps,
    lastSeenAt: timestamp("last_seen_at", { withTimezone: true }).notNull().defaultNow(),
    /** When the user last proved who they are in it (OpenID Connect auth_time): a new sign-in moves it on. */
    authenticatedAt: timestamp("authenticated_at", { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    endedAt: timestamp("ended_at", { withTimezone: true }),
    endReason: text("end_reason"),
  },
  (table) => [
    index("browser_sessions_user_live_idx").on(table.userId).where(sql`ended_at is null`),
    index("browser_sessions_expires_at_idx").on(table.expiresAt),
  ],
);

export const signingKeys = pgTable(
  "signing_keys",
  {
    kid: text("kid").primaryKey(),
    alg: text("alg").notNull(),
    publicJwk: jsonb("public_jwk").$type<JsonWebKey>().notNull(),
    privateJwk: jsonb("private_jwk").$type<JsonWebKey>().notNull(),
    status: signingKeyStatus("status").notNull(),
    ...timestamps,
    retiredAt: timestamp("retired_at", { withTimezone: true }),
    /** A retired key is published and accepted until every token it signed has expired. */
    verifyUntil: timestamp("verify_until", { withTimezone: true }),
  },
  // At most one active key, even when several instances start at once.
  (table) => [uniqueIndex("signing_keys_one_active_idx").on(table.status).where(sql`status = 'active'`)],
);

/**
 * Append-only feed of revoked JTIs that resource servers follow (see the revocation feed),
 * written by the revoking statements themselves (db/functions/ta_revoke_sessions.sql).
 */
/**
 * The committed event log: every revoked token (the revocation feed), and every security event
 * (a user disabled, enabled or deleted, a credential changed) and stream event (SSF verification,
 * stream updated), each written by the transaction that made the change, in one cursor order.
 * The revocation feed serves the token entries; SSF delivery reads them all.
 */
export const revocationEvents = pgTable(
  "revocation_events",
  {
    cursor: bigserial("cursor", { mode: "number" }).primaryKey(),
    /** A revoked token: its jti, kind and session (null for the other events). */
    jti: text("jti"),
    tokenKind: text("token_kind"),
    sessionId: uuid("session_id"),
    /** Until when the entry matters: the token's expiry, or the retention of another event. */
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }).notNull().defaultNow(),
    /** Why the token ended: its session's revocation_reason, or `refreshed` for a rotated-away access token. */
    reason: text("reason"),
    /** Another event than a revoked token: account-disabled, account-enabled, account-purged, credential-change, verification, stream-updated. */
    event: text("event"),
    /** Who it is about, when the row must say (its session may be gone): the user, the client, the token family. */
    subject: text("subject"),
    clientId: text("client_id"),
    familyId: uuid("family_id"),
    /** An event for one SSF stream only (verification, stream-updated). */
    streamId: uuid("stream_id"),
    /** What else the event says (credential_type, change_type, state, status, …). */
    detail: jsonb("detail").$type<Record<string, unknown>>(),
    /** The writing transaction (RFC 8417 `txn` of the SETs made from it). */
    txn: text("txn").default(sql`pg_current_xact_id()::text`),
  },
  (table) => [
    index("revocation_events_expires_at_idx").on(table.expiresAt),
    // What back-channel logout delivery scans for (few rows: ended sign-ins that had such clients).
    index("revocation_events_browser_session_ended_idx").on(table.cursor).where(sql`event = 'browser-session-ended'`),
  ],
);

/**
 * Back-Channel Logout 1.0 deliveries: one row per client to tell of an ended browser sign-in (a
 * `browser-session-ended` entry of the event log, written by the transaction that ended it —
 * db/functions/ta_browser_session_ended.sql), made when a delivery first sees the entry; its
 * attempts, the next one's time (also the lease of the instance delivering it) and the outcome.
 */
export const logoutDeliveries = pgTable(
  "logout_deliveries",
  {
    cursor: bigint("cursor", { mode: "number" })
      .notNull()
      .references(() => revocationEvents.cursor, { onDelete: "cascade" }),
    clientId: text("client_id")
      .notNull()
      .references(() => clients.clientId, { onDelete: "cascade" }),
    /** pending, delivered, or failed (refused, or out of attempts). */
    status: text("status").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true }).notNull().defaultNow(),
    /** The receiver's last HTTP status, or null when it could not be reached. */
    lastStatus: integer("last_status"),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    primaryKey({ columns: [table.cursor, table.clientId] }),
    index("logout_deliveries_due_idx").on(table.nextAttemptAt).where(sql`status = 'pending'`),
  ],
);

export type Client = typeof clients.$inferSelect;
export type User = typeof users.$inferSelect;
export type AuthorizationGrant = typeof authorizationGrants.$inferSelect;
export type Session = typeof sessions.$inferSelect;
export type SigningKeyRow = typeof signingKeys.$inferSelect;
export type BrowserSessionRow = typeof browserSessions.$inferSelect;

/** Consent a user gave a client for a set of scopes; a repeat authorization skips the page. */
export const consents = pgTable(
  "consents",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    clientId: text("client_id")
      .notNull()
      .references(() => clients.clientId, { onDelete: "cascade" }),
    scope: text("scope").notNull(),
    ...timestamps,
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [uniqueIndex("consents_user_client_idx").on(table.userId, table.clientId)],
);

export type Consent = typeof consents.$inferSelect;

/**
 * The APIs and MCP servers tokens are for (RFC 8707 resources), registered by an operator beside
 * the configured ones (TA_RESOURCES, TA_DEFAULT_AUDIENCE). `uri` is normalised (RFC 3986 §6.2.2,
 * §6.2.3: scheme and host in lower case, no default port, an empty path as "/").
 */
export const resources = pgTable("resources", {
  id: uuid("id").primaryKey().defaultRandom(),
  uri: text("uri").notNull().unique(),
  /** The scopes it accepts (RFC 9728 scopes_supported), space-separated. */
  scope: text("scope").notNull().default(""),
  ...timestamps,
});

export type ResourceRow = typeof resources.$inferSelect;

/** SSF 1.0 §8.1.2: enabled transmits, paused holds events for later, disabled drops them. */
export const ssfStreamStatus = pgEnum("ssf_stream_status", ["enabled", "paused", "disabled"]);

/**
 * Shared Signals streams (SSF 1.0 §8.1.1): a receiver's subscription to the event log, delivered
 * by push (RFC 8935) or poll (RFC 8936). `position`: every event at or below it is settled for
 * the stream (delivered and acknowledged, or not for it); ssf_acks holds those settled above it.
 */
export const ssfStreams = pgTable(
  "ssf_streams",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    /** The receiver: the client whose `ssf` token made the stream. */
    clientId: text("client_id")
      .notNull()
      .references(() => clients.clientId, { onDelete: "cascade" }),
    audience: text("audience").notNull(),
    /** As the receiver asked (null: it did not say), and what is delivered. */
    eventsRequested: text("events_requested").array(),
    eventsDelivered: text("events_delivered").array().notNull(),
    deliveryMethod: text("delivery_method").notNull(),
    /** Push: where SETs go, and the Authorization header they carry (a secret of the receiver's). */
    endpointUrl: text("endpoint_url"),
    authorizationHeader: text("authorization_header"),
    description: text("description"),
    status: ssfStreamStatus("status").notNull().default("enabled"),
    statusReason: text("status_reason"),
    position: bigint("position", { mode: "number" }).notNull(),
    /** Push delivery: the instance delivering it, until when; when to try again after failures. */
    leaseOwner: text("lease_owner"),
    leaseUntil: timestamp("lease_until", { withTimezone: true }),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true }).notNull().defaultNow(),
    failures: integer("failures").notNull().default(0),
    lastError: text("last_error"),
    lastVerificationAt: timestamp("last_verification_at", { withTimezone: true }),
    ...timestamps,
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [index("ssf_streams_client_id_idx").on(table.clientId)],
);

/** SSF 1.0 §8.1.3 with default_subjects ALL: the subjects a receiver removed from a stream. */
export const ssfExcludedSubjects = pgTable(
  "ssf_excluded_subjects",
  {
    streamId: uuid("stream_id")
      .notNull()
      .references(() => ssfStreams.id, { onDelete: "cascade" }),
    /** The subject as canonical JSON (keys sorted): the key. */
    subjectKey: text("subject_key").notNull(),
    subject: jsonb("subject").$type<Record<string, unknown>>().notNull(),
    ...timestamps,
  },
  (table) => [primaryKey({ columns: [table.streamId, table.subjectKey] })],
);

/** Events above a stream's position already settled for it (pushed, or acknowledged by a poller). */
export const ssfAcks = pgTable(
  "ssf_acks",
  {
    streamId: uuid("stream_id")
      .notNull()
      .references(() => ssfStreams.id, { onDelete: "cascade" }),
    cursor: bigint("cursor", { mode: "number" }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.streamId, table.cursor] })],
);

export type SsfStream = typeof ssfStreams.$inferSelect;

/**
 * RFC 9449 §11.1: the DPoP proofs seen, by key thumbprint and jti, until they could no longer
 * pass the freshness check — a replay is refused at every instance sharing the database.
 */
export const dpopProofs = pgTable(
  "dpop_proofs",
  {
    /** SHA-256 (base64url) of the key's thumbprint and the proof's jti. */
    id: text("id").primaryKey(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
  },
  (table) => [index("dpop_proofs_expires_at_idx").on(table.expiresAt)],
);
