// OAuth sessions (TokenAuthority's state machine: created → refreshed | revoked | expired):
// minting a session with its tokens, the lookup strategies keyed by token kind, and the
// revocation and rotation primitives (single-round-trip SQL functions, see db/migrations).
import { randomUUID } from "node:crypto";
import type { SQL } from "drizzle-orm";
import { sql } from "drizzle-orm";
import type { PgColumn } from "drizzle-orm/pg-core";
import { Batcher } from "../../db/batcher.ts";
import type { Database, Db } from "../../db/client.ts";
import type { Client, Session } from "../../db/schema.ts";
import { sessions } from "../../db/schema.ts";
import { isConnectionFailure } from "../errors.ts";
import type { RevocationNotifier } from "./revocation-notifier.ts";
import type { PresentedToken, TokenClaims, TokenKind, TokenService } from "./tokens.ts";
import { tokenSha256 } from "./tokens.ts";

export type { Session };

export interface SessionDefaults {
  accessTokenTtl: number;
  refreshTokenTtl: number;
}

export interface MintRequest {
  client: Client;
  subject: string;
  scope: string;
  audience: string[];
  /** The authorization grant the session descends from; absent for client_credentials. */
  grantId?: string;
  /** RFC 6749 §4.4.3: client_credentials gets no refresh token. */
  withRefreshToken: boolean;
}

export interface IssuedTokens {
  sessionId: string;
  accessToken: string;
  refreshToken: string | undefined;
  expiresIn: number;
  scope: string;
}

export type RotateOutcome = "rotated" | "replaced" | "reuse" | "unknown" | "expired" | "invalid_scope" | "unverified";

export interface RotateRequest {
  /**
   * The presented refresh token as read: its claims become the child's tokens' (signed before
   * the rotation, so that their digests are stored with the child) and are trusted only once
   * its session proves it (its stored digest), unless `verified`.
   */
  presented: PresentedToken;
  /** Its signature was checked: no stored digest is needed to accept it. */
  verified: boolean;
  client: Client;
  /** Requested scope; empty or absent keeps the session's scope. */
  scope: string | undefined;
  /** Seconds in which a retried refresh replaces its child instead of revoking the family. */
  graceSeconds: number;
}

export type RotateResult =
  | { outcome: "rotated" | "replaced"; tokens: IssuedTokens }
  | { outcome: Exclude<RotateOutcome, "rotated" | "replaced">; sessionId: string | null };

export type RevokeOutcome = "revoked" | "already_revoked" | "unknown" | "other_client";

export interface RevokeResult {
  /** `unverified`: the session holds no digest of the token, or another; nothing was done. */
  outcome: RevokeOutcome | "unverified";
  sessionId: string | null;
  revokedCount: number;
}

/**
 * What a lookup by jti reads of a session: whose it is and whether it backs a live token, not
 * the whole row (mapping all of it was a tenth of an introspection's server CPU).
 */
const FOUND_COLUMNS = {
  id: sessions.id,
  grantId: sessions.grantId,
  clientId: sessions.clientId,
  status: sessions.status,
  accessTokenJti: sessions.accessTokenJti,
  refreshTokenJti: sessions.refreshTokenJti,
  accessExpiresAt: sessions.accessExpiresAt,
  refreshExpiresAt: sessions.refreshExpiresAt,
  accessTokenSha256: sessions.accessTokenSha256,
  refreshTokenSha256: sessions.refreshTokenSha256,
} satisfies Partial<Record<keyof Session, PgColumn>>;

export type FoundSession = { [K in keyof typeof FOUND_COLUMNS]: Session[K] };

/**
 * How to find (and revoke) the session of a token of one kind: by the JTI column of that
 * kind. One entry per token kind; adding a kind means adding one entry.
 */
export interface SessionLookupStrategy {
  readonly kind: TokenKind;
  find(database: Database, jti: string): Promise<FoundSession | undefined>;
  /** The digest the session stored of its token of this kind (null before migration 0007). */
  storedDigest(session: FoundSession): string | null;
  /**
   * Finds the session, checks it belongs to `clientId`, revokes its family: one round trip at
   * most, shared with the revocations made at the same time (ta_revoke_tokens). With `sha256`
   * (a token whose signature was not checked) only a session that stored that digest is
   * revoked; `null` means the caller verified the token's signature.
   */
  revoke(database: Database, jti: string, clientId: string, reason: string, sha256: string | null): Promise<RevokeResult>;
}

/** One revocation as ta_revoke_tokens (migrations 0005, 0007) takes it. */
interface RevokeItem {
  kind: TokenKind;
  jti: string;
  client_id: string;
  reason: string;
  sha256: string | null;
}

interface RevokeRow {
  i: number;
  outcome: RevokeOutcome | "unverified";
  session_id: string | null;
  revoked_count: number;
}

/**
 * How session statements are batched (db/batcher.ts). One batch of a kind at the database at a
 * time: on 2 cores, revocation at c=32 ran 5 349 req/s with one, 5 080 with two and 4 713 with
 * four (bench/profile.ts revoke --plain), as a larger batch shares more. A batch held up 20 ms
 * (by a lock held elsewhere) lets the next one go.
 */
const BATCHING = {
  maxBatch: 100,
  maxInFlight: 1,
  stallMs: 20,
  retrySeparately: (error: unknown) => !isConnectionFailure(error),
} as const;

/** Lazily made per database: one batcher per handle, so tests' handles never share one. */
function perDatabase<T>(make: (database: Database) => T): (database: Database) => T {
  const made = new WeakMap<Database, T>();
  return (database) => {
    let value = made.get(database);
    if (value === undefined) made.set(database, (value = make(database)));
    return value;
  };
}

/**
 * A batched SQL function (ta_revoke_tokens, ta_rotate_sessions_with_digests): its items go as
 * one JSON array, each with its position `i`, and it answers one row per item carrying that
 * `i`; the rows are handed back in the items' order.
 */
function batchedFunction<I extends object, R extends { i: number }>(name: string) {
  return perDatabase(
    (database) =>
      new Batcher<I, R>(async (items) => {
        const json = JSON.stringify(items.map((item, i) => ({ i, ...item })));
        const rows = await database.rows<R & Record<string, unknown>>(sql`select * from ${sql.raw(name)}(${json}::jsonb)`);
        const ordered: (R | undefined)[] = new Array(items.length).fill(undefined);
        for (const row of rows) ordered[row.i] = row;
        if (rows.length !== items.length || ordered.includes(undefined)) throw new Error(`${name} did not answer one row per item`);
        return ordered as R[];
      }, BATCHING),
  );
}

/**
 * Revocations coalesced into ta_revoke_tokens (migrations 0005, 0007): each item gets what
 * ta_revoke_token gives it alone, and the revocations at the database at the same time share
 * one round trip and one commit.
 */
const revokeBatcher = batchedFunction<RevokeItem, RevokeRow>("ta_revoke_tokens");

function strategyFor(
  kind: TokenKind,
  key: "accessTokenJti" | "refreshTokenJti",
  digestKey: "accessTokenSha256" | "refreshTokenSha256",
): SessionLookupStrategy {
  const column: PgColumn = sessions[key];
  // Lookups coalesced into one SELECT per batch, built once per database and prepared: drizzle
  // would otherwise rebuild the SQL text on every lookup, a tenth of an introspection's CPU.
  const findQuery = (db: Db) =>
    db
      .select(FOUND_COLUMNS)
      .from(sessions)
      .where(sql`${column} = any(array(select jsonb_array_elements_text(${sql.placeholder("jtis")}::jsonb)))`)
      .prepare(`sessions_by_${kind}`);
  const findBatcher = perDatabase((database) => {
    const query = findQuery(database.db);
    return new Batcher<string, FoundSession | undefined>(async (jtis) => {
      const rows = await query.execute({ jtis: JSON.stringify(jtis) });
      const byJti = new Map(rows.map((row) => [row[key], row]));
      return jtis.map((jti) => byJti.get(jti));
    }, BATCHING);
  });
  return {
    kind,
    find: (database, jti) => findBatcher(database).submit(jti),
    storedDigest: (session) => session[digestKey],
    revoke: async (database, jti, clientId, reason, sha256) => {
      const row = await revokeBatcher(database).submit({ kind, jti, client_id: clientId, reason, sha256 });
      return { outcome: row.outcome, sessionId: row.session_id, revokedCount: Number(row.revoked_count) };
    },
  };
}

export const sessionLookup: Readonly<Record<TokenKind, SessionLookupStrategy>> = Object.freeze({
  access_token: strategyFor("access_token", "accessTokenJti", "accessTokenSha256"),
  refresh_token: strategyFor("refresh_token", "refreshTokenJti", "refreshTokenSha256"),
});

/**
 * The order in which to try the strategies: the preferred kind first, then the others
 * (RFC 7009 §2.1: if the hinted lookup fails the server MUST extend its search).
 */
export function lookupOrder(preferred: TokenKind): readonly SessionLookupStrategy[] {
  return LOOKUP_ORDERS[preferred];
}

/** Each kind's lookup order, made once (it is asked for on every revocation and introspection). */
const LOOKUP_ORDERS = Object.fromEntries(
  Object.values(sessionLookup).map((first) => [
    first.kind,
    Object.freeze([first, ...Object.values(sessionLookup).filter((s) => s !== first)]),
  ]),
) as Readonly<Record<TokenKind, readonly SessionLookupStrategy[]>>;

/** Parses a `token_type_hint`; an unrecognised value is treated as absent (RFC 7009 §2.2). */
export function parseHint(hint: string | undefined): TokenKind | undefined {
  return hint === "access_token" || hint === "refresh_token" ? hint : undefined;
}

const newJti = () => randomUUID();

/** The `aud` claim of a session's tokens: its one audience as a string, else the array. */
const audClaim = (audience: string[]): string | string[] => (audience.length === 1 ? audience[0]! : audience);

interface SessionRow {
  grantId: string | null;
  clientId: string;
  subject: string;
  scope: string;
  audience: string[];
  accessTokenJti: string;
  refreshTokenJti: string | null;
  accessTokenSha256: string;
  refreshTokenSha256: string | null;
  accessExpiresAt: Date;
  refreshExpiresAt: Date | null;
}

/**
 * Session INSERTs of `mint` coalesced into one multi-row INSERT per batch; each session's id
 * comes back by its access-token JTI (unique).
 */
const insertBatcher = perDatabase(
  (database) =>
    new Batcher<SessionRow, string>(
      async (rows) => {
        const json = JSON.stringify(
          rows.map((row) => ({
            grant_id: row.grantId,
            client_id: row.clientId,
            subject: row.subject,
            scope: row.scope,
            audience: row.audience,
            access_token_jti: row.accessTokenJti,
            refresh_token_jti: row.refreshTokenJti,
            access_token_sha256: row.accessTokenSha256,
            refresh_token_sha256: row.refreshTokenSha256,
            access_expires_at: row.accessExpiresAt.toISOString(),
            refresh_expires_at: row.refreshExpiresAt?.toISOString() ?? null,
          })),
        );
        const inserted = await database.rows<{ id: string; access_token_jti: string }>(sql`
          insert into sessions (grant_id, client_id, subject, scope, audience, access_token_jti, refresh_token_jti,
                                access_token_sha256, refresh_token_sha256, access_expires_at, refresh_expires_at)
          select x.grant_id, x.client_id, x.subject, x.scope, array(select jsonb_array_elements_text(x.audience)),
                 x.access_token_jti, x.refresh_token_jti, x.access_token_sha256, x.refresh_token_sha256,
                 x.access_expires_at, x.refresh_expires_at
            from jsonb_to_recordset(${json}::jsonb) as x(grant_id uuid, client_id text, subject text, scope text,
                 audience jsonb, access_token_jti text, refresh_token_jti text, access_token_sha256 text,
                 refresh_token_sha256 text, access_expires_at timestamptz, refresh_expires_at timestamptz)
          returning id, access_token_jti`);
        const ids = new Map(inserted.map((row) => [row.access_token_jti, row.id]));
        return rows.map((row) => {
          const id = ids.get(row.accessTokenJti);
          if (id === undefined) throw new Error("a session INSERT of the batch returned no id");
          return id;
        });
      },
      BATCHING,
    ),
);

/** One rotation as ta_rotate_sessions_with_digests (migration 0008) takes it. */
interface RotateItem {
  refresh_jti: string;
  client_id: string;
  scope: string;
  new_access_jti: string;
  new_refresh_jti: string;
  access_expires_at: string;
  grace_seconds: number;
  /** The presented token's digest, which its session must hold; null once its signature held. */
  presented_sha256: string | null;
  /** What the child's tokens were signed with, and their digests. */
  subject: string;
  audience: string[];
  signed_scope: string;
  refresh_expires_at: string;
  access_sha256: string;
  refresh_sha256: string;
}

interface RotateRow {
  i: number;
  outcome: RotateOutcome;
  new_session_id: string | null;
  subject: string | null;
  scope: string | null;
  audience: string[] | null;
  access_expires_at: Date | string | null;
  refresh_expires_at: Date | string | null;
  /** The child session is what the tokens were signed with (and holds their digests). */
  signed: boolean;
}

/** Refresh-token rotations coalesced into ta_rotate_sessions_with_digests: each as ta_rotate_session alone. */
const rotateBatcher = batchedFunction<RotateItem, RotateRow>("ta_rotate_sessions_with_digests");

export class SessionService {
  constructor(
    private readonly database: Database,
    private readonly tokens: TokenService,
    private readonly defaults: SessionDefaults,
    private readonly now: () => number = Date.now,
    private readonly notifier?: RevocationNotifier,
  ) {}

  /** Creates a session row and signs its tokens; `db` may be a transaction to insert within. */
  async mint(request: MintRequest, db: Db = this.database.db): Promise<IssuedTokens> {
    const { client, subject, scope, audience } = request;
    const accessTtl = client.accessTokenTtl ?? this.defaults.accessTokenTtl;
    const refreshTtl = client.refreshTokenTtl ?? this.defaults.refreshTokenTtl;
    const iat = Math.floor(this.now() / 1000);
    const accessJti = newJti();
    const refreshJti = request.withRefreshToken ? newJti() : undefined;
    const { accessToken, refreshToken } = await this.signTokens(
      { sub: subject, aud: audClaim(audience), iat, client_id: client.clientId, scope },
      { exp: iat + accessTtl, jti: accessJti },
      refreshJti ? { exp: iat + refreshTtl, jti: refreshJti } : undefined,
    );
    const values: SessionRow = {
      grantId: request.grantId ?? null,
      clientId: client.clientId,
      subject,
      scope,
      audience,
      accessTokenJti: accessJti,
      refreshTokenJti: refreshJti ?? null,
      accessTokenSha256: tokenSha256(accessToken),
      refreshTokenSha256: refreshToken ? tokenSha256(refreshToken) : null,
      accessExpiresAt: new Date((iat + accessTtl) * 1000),
      refreshExpiresAt: refreshJti ? new Date((iat + refreshTtl) * 1000) : null,
    };
    const sessionId =
      db === this.database.db
        ? await insertBatcher(this.database).submit(values)
        : (await db.insert(sessions).values(values).returning({ id: sessions.id }))[0]!.id;
    return { sessionId, accessToken, refreshToken, expiresIn: accessTtl, scope };
  }

  /**
   * Refresh-token rotation (one round trip, see ta_rotate_session): the presented session
   * becomes `refreshed` and a child session with new JTIs is created; reuse of a refresh token
   * revokes its family. Exactly one of several concurrent rotations of one token succeeds.
   * `unverified`: the session holds no digest of the presented token (or another) and nothing
   * happened; the caller checks the signature and rotates again with `verified`.
   */
  async rotate(request: RotateRequest): Promise<RotateResult> {
    const { client, presented } = request;
    const accessTtl = client.accessTokenTtl ?? this.defaults.accessTokenTtl;
    const iat = Math.floor(this.now() / 1000);
    // The child keeps its parent's subject, audience and refresh expiry; the tokens are signed
    // with them now, and the rotation checks its session agrees (`signed`).
    const { sub, aud } = presented.claims;
    const common = { sub, aud, iat, client_id: client.clientId, scope: request.scope || presented.claims.scope };
    const access = { exp: iat + accessTtl, jti: newJti() };
    const refresh = { exp: presented.claims.exp, jti: newJti() };
    const { accessToken, refreshToken } = await this.signTokens(common, access, refresh);
    const row = await rotateBatcher(this.database).submit({
      refresh_jti: presented.claims.jti,
      client_id: client.clientId,
      scope: request.scope ?? "",
      new_access_jti: access.jti,
      new_refresh_jti: refresh.jti,
      access_expires_at: new Date(access.exp * 1000).toISOString(),
      grace_seconds: request.graceSeconds,
      presented_sha256: request.verified ? null : presented.sha256,
      subject: sub,
      audience: Array.isArray(aud) ? aud : [aud],
      signed_scope: common.scope,
      refresh_expires_at: new Date(refresh.exp * 1000).toISOString(),
      access_sha256: tokenSha256(accessToken),
      refresh_sha256: tokenSha256(refreshToken!),
    });
    // Rotation retires the old access token, reuse revokes the family: both reach the feed.
    if (row.outcome === "rotated" || row.outcome === "replaced" || row.outcome === "reuse") this.notifier?.committed();
    if (row.outcome !== "rotated" && row.outcome !== "replaced") {
      return { outcome: row.outcome, sessionId: row.new_session_id };
    }
    const scope = row.scope!;
    // A session edited since the presented token was issued: the child's tokens are signed
    // from what the rotation returned, and the child holds no digests of them.
    const seconds = (at: Date | string | null) => Math.floor(new Date(at!).getTime() / 1000);
    const tokens = row.signed
      ? { accessToken, refreshToken }
      : await this.signTokens(
          { sub: row.subject!, aud: audClaim(row.audience ?? []), iat, client_id: client.clientId, scope },
          { exp: seconds(row.access_expires_at), jti: access.jti },
          { exp: seconds(row.refresh_expires_at), jti: refresh.jti },
        );
    return { outcome: row.outcome, tokens: { sessionId: row.new_session_id!, ...tokens, expiresIn: accessTtl, scope } };
  }

  /** Signs a session's access token and, with `refresh`, its refresh token: the same claims but `exp` and `jti`. */
  private async signTokens(
    common: Omit<TokenClaims, "iss" | "exp" | "jti">,
    access: Pick<TokenClaims, "exp" | "jti">,
    refresh: Pick<TokenClaims, "exp" | "jti"> | undefined,
  ): Promise<{ accessToken: string; refreshToken: string | undefined }> {
    const [accessToken, refreshToken] = await Promise.all([
      this.tokens.sign("access_token", { ...common, ...access }),
      refresh ? this.tokens.sign("refresh_token", { ...common, ...refresh }) : undefined,
    ]);
    return { accessToken, refreshToken };
  }

  /**
   * Revokes every live session matching `where` and, with each, the live session of its
   * authorization grant (race-safe, see ta_revoke_sessions). One transaction.
   */
  async revokeWhere(where: SQL, reason: string): Promise<number> {
    const [row] = await this.database.rows<{ count: number }>(
      sql`select ta_revoke_sessions(array(select id from ${sessions} where ${sessions.status} = 'created' and ${where}), ${reason}) as count`,
    );
    const count = Number(row?.count ?? 0);
    if (count > 0) this.notifier?.committed();
    return count;
  }
}
