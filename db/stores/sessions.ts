// The storage port of OAuth sessions and authorization grants: every statement on those two
// tables, the batchers that coalesce the hot ones into one round trip (db/batcher.ts), and the
// items and rows of the batched SQL functions (db/functions/). Nothing above this module
// builds SQL for these tables.
import type { SQL } from "drizzle-orm";
import { and, eq, sql } from "drizzle-orm";
import type { PgColumn } from "drizzle-orm/pg-core";
import type { BatcherOptions } from "../batcher.ts";
import { Batcher } from "../batcher.ts";
import type { Database } from "../client.ts";
import type { PageAfter } from "./paging.ts";
import { olderThan } from "./paging.ts";
import { recordProofs } from "./dpop.ts";
import { isConnectionFailure } from "../failures.ts";
import type { Session, TokenKind } from "../schema.ts";
import { authorizationGrants, sessions } from "../schema.ts";

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

/** The jti and digest columns of each token kind. */
const KIND_COLUMNS = {
  access_token: { jti: "accessTokenJti", sha256: "accessTokenSha256" },
  refresh_token: { jti: "refreshTokenJti", sha256: "refreshTokenSha256" },
} as const satisfies Record<TokenKind, { jti: keyof FoundSession; sha256: keyof FoundSession }>;

/** The digest a session stored of its token of `kind` (null before migration 0007). */
export function storedDigest(session: FoundSession, kind: TokenKind): string | null {
  return session[KIND_COLUMNS[kind].sha256];
}

export type RevokeOutcome = "revoked" | "already_revoked" | "unknown" | "other_client";

/** One revocation as ta_revoke_tokens takes it (db/functions/ta_revoke_tokens.sql). */
export interface RevokeItem {
  kind: TokenKind;
  jti: string;
  client_id: string;
  reason: string;
  /** The presented token's digest, which its session must hold; null once its signature held. */
  sha256: string | null;
}

export interface RevokeRow {
  i: number;
  /** `unverified`: the session holds no digest of the token, or another; nothing was done. */
  outcome: RevokeOutcome | "unverified";
  session_id: string | null;
  revoked_count: number;
}

export type RotateOutcome = "rotated" | "replaced" | "reuse" | "revoked" | "unknown" | "expired" | "invalid_scope" | "unverified";

/** One rotation as ta_rotate_sessions_with_digests takes it (db/functions/ta_rotate_session.sql). */
export interface RotateItem {
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
  /** The key the child's tokens are signed with. */
  signing_kid: string;
}

export interface RotateRow {
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

export type RedeemOutcome =
  | "redeemed"
  | "unknown"
  | "reuse"
  | "expired"
  | "other_client"
  | "redirect_mismatch"
  | "pkce_unexpected_verifier"
  | "pkce_required"
  | "pkce_method"
  | "pkce_verifier_required"
  | "pkce_failed"
  | "no_user"
  | "invalid_scope"
  | "invalid_target";

/** One code redemption as ta_redeem_codes takes it (db/functions/ta_redeem_code.sql). */
export interface RedeemItem {
  code_hash: string;
  client_id: string;
  public_client: boolean;
  /** The redirect_uri of the token request, or the client's only one when it sent none. */
  redirect_uri: string | null;
  /** The client's only registered redirect URI, if it has exactly one. */
  implied_redirect_uri: string | null;
  /** BASE64URL(SHA256(code_verifier)) (RFC 7636 §4.6), null without a verifier. */
  verifier_s256: string | null;
  /** The requested scope (known to the server, normalised), null for the granted one. */
  scope: string | null;
  /** The requested resource (RFC 8707), null for every granted one. */
  resource: string | null;
  default_audience: string;
  access_jti: string;
  refresh_jti: string;
  access_expires_at: string;
  refresh_expires_at: string;
  /** What the tokens were signed with before the statement (null: nothing was signed), and their digests. */
  signed_subject: string | null;
  signed_scope: string | null;
  signed_audience: string[] | null;
  access_sha256: string | null;
  refresh_sha256: string | null;
  /** The key the tokens are signed with. */
  signing_kid: string;
}

export interface RedeemRow {
  i: number;
  outcome: RedeemOutcome;
  session_id: string | null;
  grant_id: string | null;
  /** Sessions revoked by a reuse of the code. */
  revoked_count: number;
  subject: string | null;
  scope: string | null;
  audience: string[] | null;
  /** The session is what the tokens were signed with (and holds their digests). */
  signed: boolean;
}

/** A session as `mint` inserts it. */
export interface NewSession {
  /** Chosen by the caller: the tokens, signed first, name it (the `sid` of a family without a grant). */
  id: string;
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
  /** The key its tokens were signed with. */
  signingKid: string;
  /**
   * The DPoP proof of the request (RFC 9449 §11.1), recorded in dpop_proofs by the same
   * statement: the session is inserted only if the proof's row was not there before.
   */
  dpopProof: { id: string; ttl: number } | null;
}

/** An authorization grant as the authorization endpoint creates it (RFC 6749 §4.1.2). */
export interface NewGrant {
  /** Chosen by the caller: the sealed code carries it (the `sid` of the family it starts). */
  id: string;
  /** SHA-256 (hex) of the one-time code: the code itself is never stored. */
  codeHash: string;
  clientId: string;
  /** users.id of the user who approved; becomes the `sub` of the tokens. */
  userId: string;
  /** The redirect_uri of the authorization request as sent; null when the client omitted it. */
  redirectUri: string | null;
  /** Space-separated scopes the user approved. */
  scope: string;
  /** RFC 8707 resource indicators the code may be redeemed for; empty = the default audience. */
  resources: readonly string[];
  /** PKCE (RFC 7636); OAuth 2.1 requires it for every client, only S256 is accepted. */
  codeChallenge: string;
  codeChallengeMethod: string;
  /** Lifetime in seconds (config.authorizationCodeTtl). */
  ttlSeconds: number;
  /** The browser sign-in it was given in (OpenID Connect `sid`); null without one. */
  browserSessionId?: string | null;
}

/** Which live sessions an operator, a user or a security event revokes at once. */
export type SessionFilter =
  | { sessionId: string }
  | { grantId: string }
  | { clientId: string; userId?: string }
  | { userId: string }
  /**
   * The sessions whose tokens a signing key signed: those that recorded it, and those issued
   * before kids were recorded (migration 0010) while it was the active key, `activeFrom` to
   * `activeUntil` (null: still active).
   */
  | { signingKid: string; activeFrom: Date; activeUntil: Date | null };

/** A token family (a grant's sessions, or one client_credentials session) as an operator lists it. */
export interface FamilyRow {
  /** The grant's id, or the session's own for a client_credentials session. */
  familyId: string;
  /** The live session if there is one, else the family's latest. */
  sessionId: string;
  grantId: string | null;
  clientId: string;
  subject: string;
  status: "created" | "refreshed" | "revoked" | "expired";
  scope: string;
  createdAt: Date;
  /** When its latest session was made by a refresh; null if never refreshed. */
  lastRefreshAt: Date | null;
  revokedAt: Date | null;
  revocationReason: string | null;
}

/**
 * How statements are batched. One batch of a kind at the database at a time: on 2 cores,
 * revocation at c=32 ran 5 349 req/s with one, 5 080 with two and 4 713 with four
 * (bench/profile.ts revoke --plain), as a larger batch shares more. A batch held up 20 ms (by a
 * lock held elsewhere) lets the next one go.
 */
export const SESSION_BATCHING: BatcherOptions = {
  maxBatch: 100,
  maxInFlight: 1,
  stallMs: 20,
  retrySeparately: (error: unknown) => !isConnectionFailure(error),
};

/**
 * A replica the lookups by jti may be answered from (#21 item 4; src/oauth/replica-reads.ts says
 * when its answers can be trusted). A session it holds is used only if the replica has replayed
 * the primary's WAL up to `floor()`; anything it does not answer so is asked of the primary.
 */
export interface SessionReplica {
  readonly database: Database;
  /** The primary's WAL position the replica must have replayed; undefined: ask the primary. */
  floor(): string | undefined;
  /** The replica failed to answer (the primary is asked instead). */
  failed(error: unknown): void;
  /** How many lookups the replica and the primary answered. */
  answered(replica: number, primary: number): void;
}

export class SessionStore {
  private readonly finders: Record<TokenKind, Batcher<string, FoundSession | undefined>>;
  private readonly revocations: Batcher<RevokeItem, RevokeRow>;
  private readonly rotations: Batcher<RotateItem, RotateRow>;
  private readonly redemptions: Batcher<RedeemItem, RedeemRow>;
  private readonly inserts: Batcher<NewSession, string | undefined>;

  constructor(
    private readonly database: Database,
    batching: BatcherOptions = SESSION_BATCHING,
    private readonly replica?: SessionReplica,
  ) {
    this.finders = { access_token: this.finder("access_token", batching), refresh_token: this.finder("refresh_token", batching) };
    // Each item gets what the function gives it alone; the items at the database at the same
    // time share one round trip and one commit.
    this.revocations = this.batchedFunction<RevokeItem, RevokeRow>("ta_revoke_tokens", batching);
    this.rotations = this.batchedFunction<RotateItem, RotateRow>("ta_rotate_sessions_with_digests", batching);
    this.redemptions = this.batchedFunction<RedeemItem, RedeemRow>("ta_redeem_codes", batching);
    this.inserts = new Batcher((rows) => this.insertAll(rows), batching);
  }

  /** The session whose token of `kind` has this jti; lookups made together share one SELECT. */
  findByJti(kind: TokenKind, jti: string): Promise<FoundSession | undefined> {
    return this.finders[kind].submit(jti);
  }

  /**
   * Finds the session of a token, checks it belongs to the client, revokes its family (RFC 7009
   * §2.1). With `sha256` only a session that stored that digest is revoked. One round trip at
   * most, shared with the revocations made at the same time.
   */
  revokeToken(item: RevokeItem): Promise<RevokeRow> {
    return this.revocations.submit(item);
  }

  /** A refresh-token rotation (RFC 9700 §4.14.2) in one round trip, shared like revocations. */
  rotate(item: RotateItem): Promise<RotateRow> {
    return this.rotations.submit(item);
  }

  /** An authorization code's redemption (RFC 6749 §4.1.3) with its session, in one round trip. */
  redeemCode(item: RedeemItem): Promise<RedeemRow> {
    return this.redemptions.submit(item);
  }

  /**
   * Inserts a session; concurrent inserts share one multi-row INSERT. Answers its id, or
   * undefined when its DPoP proof was recorded before (a replay: nothing was inserted).
   */
  insert(row: NewSession): Promise<string | undefined> {
    return this.inserts.submit(row);
  }

  /**
   * Revokes every live session the filter selects and, with each, the live sessions of its
   * authorization grant, in one transaction (race-safe, see ta_revoke_sessions). Answers how
   * many sessions were revoked.
   */
  async revokeSessions(filter: SessionFilter, reason: string): Promise<number> {
    const [row] = await this.database.rows<{ count: number }>(
      sql`select ta_revoke_sessions(array(select id from ${sessions} where ${sessions.status} = 'created' and ${matching(filter)}), ${reason}) as count`,
    );
    return Number(row?.count ?? 0);
  }

  /**
   * Token families, newest first: of a user or of a client (or both), `limit` at most, after the
   * cursor of the previous page (the last family's `createdAt` and `sessionId`).
   */
  async families(filter: { userId?: string; clientId?: string }, page: { limit: number; after?: PageAfter }): Promise<FamilyRow[]> {
    const where = [
      filter.userId === undefined ? sql`true` : sql`s.subject = ${filter.userId}`,
      filter.clientId === undefined ? sql`true` : sql`s.client_id = ${filter.clientId}`,
    ];
    const after = page.after
      ? olderThan({ createdAt: sql`f.created_at`, id: sql`f.family` }, sql`select min(s.created_at) from sessions s where s.grant_id = ${page.after.id}::uuid or (s.grant_id is null and s.id = ${page.after.id}::uuid)`, page.after)
      : sql`true`;
    const rows = await this.database.rows<{
      family: string; session_id: string; grant_id: string | null; client_id: string; subject: string; status: FamilyRow["status"]; scope: string;
      created_at: string | Date; last_refresh_at: string | Date | null; revoked_at: string | Date | null; revocation_reason: string | null;
    }>(sql`
      with f as (
        select coalesce(s.grant_id, s.id) as family, min(s.created_at) as created_at,
               case when count(*) > 1 then max(s.created_at) end as last_refresh_at
          from sessions s where ${sql.join(where, sql` and `)}
         group by coalesce(s.grant_id, s.id)
      )
      select f.family, f.created_at, f.last_refresh_at, l.id as session_id, l.grant_id, l.client_id, l.subject, l.status, l.scope,
             l.revoked_at, l.revocation_reason
        from f cross join lateral (
          select * from sessions s where coalesce(s.grant_id, s.id) = f.family
           order by (s.status = 'created') desc, s.created_at desc limit 1) l
       where ${after}
       order by f.created_at desc, f.family desc
       limit ${page.limit}`);
    const date = (value: string | Date | null) => (value === null ? null : new Date(value));
    return rows.map((row) => ({
      sessionId: row.session_id,
      grantId: row.grant_id,
      clientId: row.client_id,
      subject: row.subject,
      status: row.status,
      scope: row.scope,
      createdAt: date(row.created_at)!,
      lastRefreshAt: date(row.last_refresh_at),
      revokedAt: date(row.revoked_at),
      revocationReason: row.revocation_reason,
      familyId: row.family,
    }));
  }

  /** Creates an authorization grant holding the SHA-256 of its one-time code. */
  async insertGrant(grant: NewGrant): Promise<{ id: string; expiresAt: Date }> {
    const [row] = await this.database.db
      .insert(authorizationGrants)
      .values({
        id: grant.id,
        codeHash: grant.codeHash,
        clientId: grant.clientId,
        userId: grant.userId,
        redirectUri: grant.redirectUri,
        scope: grant.scope,
        resources: [...grant.resources],
        codeChallenge: grant.codeChallenge,
        codeChallengeMethod: grant.codeChallengeMethod,
        browserSessionId: grant.browserSessionId ?? null,
        expiresAt: sql`now() + make_interval(secs => ${grant.ttlSeconds})`,
      })
      .returning({ id: authorizationGrants.id, expiresAt: authorizationGrants.expiresAt });
    return row!;
  }

  /**
   * Ends the codes not yet redeemed that a user gave a client (expires_at = now()). A redemption
   * compares expires_at with clock_timestamp(), so one that began before this committed loses.
   */
  async expireUnredeemedCodes(userId: string, clientId: string): Promise<void> {
    await this.database.db
      .update(authorizationGrants)
      .set({ expiresAt: sql`now()` })
      .where(
        and(
          eq(authorizationGrants.userId, userId),
          eq(authorizationGrants.clientId, clientId),
          sql`${authorizationGrants.redeemedAt} is null and ${authorizationGrants.expiresAt} > now()`,
        ),
      );
  }

  private finder(kind: TokenKind, batching: BatcherOptions): Batcher<string, FoundSession | undefined> {
    const key = KIND_COLUMNS[kind].jti;
    const column: PgColumn = sessions[key];
    // Built once and prepared: drizzle would otherwise rebuild the SQL text on every lookup, a
    // tenth of an introspection's CPU.
    const byJtis = sql`${column} = any(array(select jsonb_array_elements_text(${sql.placeholder("jtis")}::jsonb)))`;
    const query = this.database.db.select(FOUND_COLUMNS).from(sessions).where(byJtis).prepare(`sessions_by_${kind}`);
    const replica = this.replica;
    // On a replica, the rows only if it has replayed the floor (on a primary, or a standby
    // promoted since, pg_last_wal_replay_lsn() is null: no rows, the primary is asked).
    const onReplica = replica?.database.db
      .select(FOUND_COLUMNS)
      .from(sessions)
      .where(sql`${byJtis} and pg_last_wal_replay_lsn() >= ${sql.placeholder("floor")}::pg_lsn`)
      .prepare(`replica_sessions_by_${kind}`);
    return new Batcher<string, FoundSession | undefined>(async (jtis) => {
      const byJti = new Map<string, FoundSession>();
      const floor = replica?.floor();
      if (floor !== undefined) {
        try {
          for (const row of await onReplica!.execute({ jtis: JSON.stringify(jtis), floor })) byJti.set(row[key]!, row);
        } catch (error) {
          replica!.failed(error);
        }
      }
      const missing = byJti.size === 0 ? jtis : byJti.size === jtis.length ? [] : jtis.filter((jti) => !byJti.has(jti));
      replica?.answered(byJti.size, missing.length);
      if (missing.length > 0) for (const row of await query.execute({ jtis: JSON.stringify(missing) })) byJti.set(row[key]!, row);
      return jtis.map((jti) => byJti.get(jti));
    }, batching);
  }

  /**
   * A batched SQL function: its items go as one JSON array, each with its position `i`, and it
   * answers one row per item carrying that `i`; the rows are handed back in the items' order.
   */
  private batchedFunction<I extends object, R extends { i: number }>(name: string, batching: BatcherOptions): Batcher<I, R> {
    const call = sql.raw(name);
    return new Batcher<I, R>(async (items) => {
      const json = JSON.stringify(items.map((item, i) => ({ i, ...item })));
      const rows = await this.database.rows<R & Record<string, unknown>>(sql`select * from ${call}(${json}::jsonb)`);
      const ordered: (R | undefined)[] = new Array(items.length).fill(undefined);
      for (const row of rows) ordered[row.i] = row;
      if (rows.length !== items.length || ordered.includes(undefined)) throw new Error(`${name} did not answer one row per item`);
      return ordered as R[];
    }, batching);
  }

  /**
   * One multi-row INSERT; each session's id comes back by its access-token jti (unique). The
   * DPoP proofs of the batch are recorded by the same statement (dpop_proofs, RFC 9449 §11.1): a
   * session whose proof was there already is not inserted, nor all but one of the batch's
   * sessions that share a proof.
   */
  private async insertAll(rows: readonly NewSession[]): Promise<(string | undefined)[]> {
    const json = JSON.stringify(
      rows.map((row) => ({
        id: row.id,
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
        signing_kid: row.signingKid,
        proof_id: row.dpopProof?.id ?? null,
        proof_ttl: row.dpopProof?.ttl ?? null,
      })),
    );
    const withProofs = rows.some((row) => row.dpopProof !== null);
    const inserted = await this.database.rows<{ id: string; access_token_jti: string }>(sql`
      with x as (
        select * from jsonb_to_recordset(${json}::jsonb) as x(id uuid, grant_id uuid, client_id text, subject text,
               scope text, audience jsonb, access_token_jti text, refresh_token_jti text, access_token_sha256 text,
               refresh_token_sha256 text, access_expires_at timestamptz, refresh_expires_at timestamptz, signing_kid text,
               proof_id text, proof_ttl int)
      )${
        withProofs
          ? sql`, first_uses as (
        select distinct on (x.proof_id) x.proof_id as id, x.proof_ttl as ttl, x.access_token_jti from x where x.proof_id is not null
      ), recorded as (${recordProofs(sql`first_uses p`)})`
          : sql``
      }
      insert into sessions (id, grant_id, client_id, subject, scope, audience, access_token_jti, refresh_token_jti,
                            access_token_sha256, refresh_token_sha256, access_expires_at, refresh_expires_at, signing_kid)
      select x.id, x.grant_id, x.client_id, x.subject, x.scope, array(select jsonb_array_elements_text(x.audience)),
             x.access_token_jti, x.refresh_token_jti, x.access_token_sha256, x.refresh_token_sha256,
             x.access_expires_at, x.refresh_expires_at, x.signing_kid
        from x
       ${withProofs ? sql`where x.proof_id is null or x.access_token_jti in (select f.access_token_jti from first_uses f join recorded r on r.id = f.id)` : sql``}
      returning id, access_token_jti`);
    const ids = new Map(inserted.map((row) => [row.access_token_jti, row.id]));
    return rows.map((row) => {
      const id = ids.get(row.accessTokenJti);
      if (id === undefined && row.dpopProof === null) throw new Error("a session INSERT of the batch returned no id");
      return id;
    });
  }
}

/** The WHERE of a filter, over live sessions. */
export function matching(filter: SessionFilter): SQL {
  if ("sessionId" in filter) return eq(sessions.id, filter.sessionId);
  if ("signingKid" in filter) {
    const until = filter.activeUntil === null ? sql`now()` : sql`${filter.activeUntil.toISOString()}::timestamptz`;
    return sql`(${sessions.signingKid} = ${filter.signingKid} or (${sessions.signingKid} is null and ${sessions.createdAt} between ${filter.activeFrom.toISOString()}::timestamptz and ${until}))`;
  }
  if ("grantId" in filter) return eq(sessions.grantId, filter.grantId);
  if ("clientId" in filter) {
    return filter.userId === undefined ? eq(sessions.clientId, filter.clientId) : and(eq(sessions.clientId, filter.clientId), eq(sessions.subject, filter.userId))!;
  }
  return eq(sessions.subject, filter.userId);
}
