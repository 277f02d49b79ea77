// Security events that end sessions, each one transaction across the tables it touches: a user
// disabled, enabled, deleted or given a new password, "Sign out everywhere", a client deleted or
// its secret rotated, a signing key revoked. Every token session ended goes through
// ta_revoke_sessions, whose feed entries carry the reason (db/functions/ta_revoke_sessions.sql);
// the event itself (account disabled, credential changed, …) is one more row of the same log,
// written by the same transaction, so nothing reads an event of a change that rolled back.
import type { SQL } from "drizzle-orm";
import { and, eq, isNull, ne, sql } from "drizzle-orm";
import type { Database, Db } from "../client.ts";
import { authorizationGrants, browserSessions, clients, revocationEvents, sessions, signingKeys, users } from "../schema.ts";
import type { SessionFilter } from "./sessions.ts";
import { matching } from "./sessions.ts";

export interface EndedSessions {
  /** Token sessions revoked (with their families). */
  revoked: number;
  /** Browser sessions ended. */
  browserSessionsEnded: number;
}

/** Revokes the live sessions a filter selects, with their families, in `tx`. */
async function revokeIn(tx: Db, filter: SessionFilter, reason: string): Promise<number> {
  const result = await tx.execute(
    sql`select ta_revoke_sessions(array(select id from ${sessions} where ${sessions.status} = 'created' and ${matching(filter)}), ${reason}) as count`,
  );
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{ count: number }>;
  return Number(rows[0]?.count ?? 0);
}

/** Ends a user's browser sessions (all but `keep`), in `tx`. */
async function endBrowserSessionsIn(tx: Db, userId: string, reason: string, keep?: string): Promise<number> {
  const ended = await tx
    .update(browserSessions)
    .set({ endedAt: sql`now()`, endReason: reason })
    .where(and(eq(browserSessions.userId, userId), isNull(browserSessions.endedAt), keep === undefined ? undefined : ne(browserSessions.id, keep)))
    .returning({ id: browserSessions.id });
  return ended.length;
}

/** Ends the codes a user was given and has not redeemed (a redemption racing this loses, see ta_redeem_code). */
async function expireCodesIn(tx: Db, where: SQL): Promise<void> {
  await tx
    .update(authorizationGrants)
    .set({ expiresAt: sql`now()` })
    .where(and(where, sql`${authorizationGrants.redeemedAt} is null and ${authorizationGrants.expiresAt} > now()`));
}

/** A security event as the log records it (SSF delivery turns it into a Security Event Token). */
export interface LoggedEvent {
  event: "account-disabled" | "account-enabled" | "account-purged" | "credential-change";
  /** The user it is about. */
  subject?: string;
  /** The client it is about (a rotated secret). */
  clientId?: string;
  reason: string;
  detail?: Record<string, unknown>;
}

export class LifecycleStore {
  constructor(
    private readonly database: Database,
    /** Seconds an event that names no token is kept for delivery (its `expires_at`). */
    private readonly eventRetention: number,
  ) {}

  /** Appends a security event to the log, in `tx`. */
  private async logIn(tx: Db, event: LoggedEvent): Promise<void> {
    await tx.insert(revocationEvents).values({
      event: event.event,
      subject: event.subject ?? null,
      clientId: event.clientId ?? null,
      reason: event.reason,
      detail: event.detail ?? null,
      expiresAt: sql`now() + make_interval(secs => ${this.eventRetention})`,
    });
  }

  /**
   * Every session of a user ends: codes not yet redeemed, browser sessions (but `keepBrowserSession`)
   * and token families. `change` runs first in the same transaction; undefined when it finds no user.
   */
  endUserSessions(
    userId: string,
    reason: string,
    options: { change?: (tx: Db) => Promise<boolean>; keepBrowserSession?: string; keepTokens?: boolean; event?: LoggedEvent } = {},
  ): Promise<EndedSessions | undefined> {
    return this.database.db.transaction(async (tx) => {
      if (options.change && !(await options.change(tx))) return undefined;
      if (options.event) await this.logIn(tx, options.event);
      await expireCodesIn(tx, eq(authorizationGrants.userId, userId));
      const browserSessionsEnded = await endBrowserSessionsIn(tx, userId, reason, options.keepBrowserSession);
      const revoked = options.keepTokens ? 0 : await revokeIn(tx, { userId }, reason);
      return { revoked, browserSessionsEnded };
    });
  }

  /** Disables a user and ends every session of theirs; undefined for no such user. */
  disableUser(userId: string): Promise<EndedSessions | undefined> {
    return this.endUserSessions(userId, "user_disabled", {
      change: async (tx) =>
        (await tx.update(users).set({ disabledAt: sql`coalesce(${users.disabledAt}, now())`, updatedAt: sql`now()` }).where(eq(users.id, userId)).returning({ id: users.id }))
          .length > 0,
      event: { event: "account-disabled", subject: userId, reason: "user_disabled" },
    });
  }

  /** Enables a disabled user (an event only when it was disabled); false for no such user. */
  enableUser(userId: string): Promise<boolean> {
    return this.database.db.transaction(async (tx) => {
      const [user] = await tx.select({ disabledAt: users.disabledAt }).from(users).where(eq(users.id, userId)).for("update");
      if (!user) return false;
      if (user.disabledAt === null) return true;
      await tx.update(users).set({ disabledAt: null, updatedAt: sql`now()` }).where(eq(users.id, userId));
      await this.logIn(tx, { event: "account-enabled", subject: userId, reason: "user_enabled" });
      return true;
    });
  }

  /** Sets a new password hash; unless `keepSessions`, every session of the user ends but `keepBrowserSession`. */
  setPassword(userId: string, passwordHash: string, options: { keepSessions: boolean; keepBrowserSession?: string }): Promise<EndedSessions | undefined> {
    const change = async (tx: Db) =>
      (await tx.update(users).set({ passwordHash, updatedAt: sql`now()` }).where(eq(users.id, userId)).returning({ id: users.id })).length > 0;
    const event: LoggedEvent = {
      event: "credential-change",
      subject: userId,
      reason: "password_changed",
      detail: { credential_type: "password", change_type: "update" },
    };
    if (options.keepSessions) {
      return this.database.db.transaction(async (tx) => {
        if (!(await change(tx))) return undefined;
        await this.logIn(tx, event);
        return { revoked: 0, browserSessionsEnded: 0 };
      });
    }
    return this.endUserSessions(userId, "password_changed", { change, keepBrowserSession: options.keepBrowserSession, event });
  }

  /** Revokes a user's sessions, then deletes the user (grants, consents and browser sessions go with it). */
  deleteUser(userId: string): Promise<EndedSessions | undefined> {
    return this.database.db.transaction(async (tx) => {
      const [found] = await tx.select({ id: users.id }).from(users).where(eq(users.id, userId)).for("update");
      if (!found) return undefined;
      const revoked = await revokeIn(tx, { userId }, "user_deleted");
      const browserSessionsEnded = await endBrowserSessionsIn(tx, userId, "user_deleted");
      await tx.delete(users).where(eq(users.id, userId));
      await this.logIn(tx, { event: "account-purged", subject: userId, reason: "user_deleted" });
      return { revoked, browserSessionsEnded };
    });
  }

  /** Revokes a client's sessions, then deletes it (its grants, sessions and consents go with it). */
  deleteClient(clientId: string): Promise<number | undefined> {
    return this.database.db.transaction(async (tx) => {
      const [found] = await tx.select({ id: clients.id }).from(clients).where(eq(clients.clientId, clientId)).for("update");
      if (!found) return undefined;
      const revoked = await revokeIn(tx, { clientId }, "client_deleted");
      await tx.delete(clients).where(eq(clients.clientId, clientId));
      return revoked;
    });
  }

  /**
   * Gives a client a new secret hash; the previous one is accepted `graceSeconds` more (0: refused
   * at once). With `revokeTokens`, every session of the client is revoked too.
   */
  rotateClientSecret(clientId: string, secretHash: string, graceSeconds: number, revokeTokens: boolean): Promise<number | undefined> {
    return this.database.db.transaction(async (tx) => {
      const updated = await tx
        .update(clients)
        .set({
          secretHash,
          previousSecretHash: graceSeconds > 0 ? sql`${clients.secretHash}` : null,
          previousSecretExpiresAt: graceSeconds > 0 ? sql`now() + make_interval(secs => ${graceSeconds})` : null,
          updatedAt: sql`now()`,
        })
        .where(and(eq(clients.clientId, clientId), sql`${clients.secretHash} is not null`))
        .returning({ id: clients.id });
      if (updated.length === 0) return undefined;
      // CAEP credential-change: "client_secret" is a credential type of this server's own (the
      // CAEP list allows "any other credential type supported mutually").
      await this.logIn(tx, {
        event: "credential-change",
        clientId,
        reason: "secret_rotated",
        detail: { credential_type: "client_secret", change_type: "update" },
      });
      return revokeTokens ? revokeIn(tx, { clientId }, "secret_rotated") : 0;
    });
  }

  /**
   * Revokes a signing key that is not the active one: it leaves the JWKS, and every live session
   * whose tokens it signed is revoked. Answers the sessions revoked, or a refusal.
   */
  revokeSigningKey(kid: string, signingLagSeconds: number): Promise<{ revoked: number } | "unknown" | "active"> {
    return this.database.db.transaction(async (tx) => {
      const [key] = await tx.select().from(signingKeys).where(eq(signingKeys.kid, kid)).for("update");
      if (!key || key.status === "revoked") return "unknown" as const;
      if (key.status === "active") return "active" as const;
      await tx.update(signingKeys).set({ status: "revoked", verifyUntil: sql`now()` }).where(eq(signingKeys.kid, kid));
      // Sessions issued before kids were recorded: those made while it was active, and for as long
      // after as an instance may have gone on signing with it (the key-reload interval).
      const activeUntil = key.retiredAt ? new Date(key.retiredAt.getTime() + signingLagSeconds * 1000) : null;
      return { revoked: await revokeIn(tx, { signingKid: kid, activeFrom: key.createdAt, activeUntil }, "key_revoked") };
    });
  }
}
