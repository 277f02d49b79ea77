// The storage port of signing keys: at most one active key (a partial unique index keeps it so
// when several instances start at once), retired keys kept until every token they signed has
// expired.
import { and, desc, eq, gt, isNull, ne, or, sql } from "drizzle-orm";
import type { Database } from "../client.ts";
import type { SigningKeyRow } from "../schema.ts";
import { signingKeys } from "../schema.ts";

export type { SigningKeyRow };

export interface NewSigningKey {
  kid: string;
  alg: string;
  publicJwk: JsonWebKey;
  privateJwk: JsonWebKey;
}

export class SigningKeyStore {
  constructor(private readonly database: Database) {}

  async hasActive(): Promise<boolean> {
    const rows = await this.database.db.select({ kid: signingKeys.kid }).from(signingKeys).where(eq(signingKeys.status, "active")).limit(1);
    return rows.length > 0;
  }

  /** Adds `key` as the active key unless another instance made one first. */
  async insertActiveIfNone(key: NewSigningKey): Promise<void> {
    await this.database.db.insert(signingKeys).values({ ...key, status: "active" }).onConflictDoNothing();
  }

  /** The active key and every retired key still verifying (by the database clock); never a revoked one. */
  valid(): Promise<SigningKeyRow[]> {
    return this.database.db
      .select()
      .from(signingKeys)
      .where(
        and(ne(signingKeys.status, "revoked"), or(eq(signingKeys.status, "active"), isNull(signingKeys.verifyUntil), gt(signingKeys.verifyUntil, sql`now()`))),
      );
  }

  /** Every key, the newest first (public parts only). */
  list(): Promise<Array<Omit<SigningKeyRow, "privateJwk">>> {
    return this.database.db
      .select({
        kid: signingKeys.kid,
        alg: signingKeys.alg,
        publicJwk: signingKeys.publicJwk,
        status: signingKeys.status,
        createdAt: signingKeys.createdAt,
        retiredAt: signingKeys.retiredAt,
        verifyUntil: signingKeys.verifyUntil,
      })
      .from(signingKeys)
      .orderBy(desc(signingKeys.createdAt));
  }

  /**
   * In one transaction: retires the active key (verifying `verifySeconds` longer) and makes `key`
   * the active one. Answers the retired kid.
   */
  rotate(key: NewSigningKey, verifySeconds: number): Promise<string | undefined> {
    return this.database.db.transaction(async (tx) => {
      const old = await tx
        .update(signingKeys)
        .set({ status: "retired", retiredAt: sql`now()`, verifyUntil: sql`now() + make_interval(secs => ${verifySeconds})` })
        .where(eq(signingKeys.status, "active"))
        .returning({ kid: signingKeys.kid });
      await tx.insert(signingKeys).values({ ...key, status: "active" });
      return old[0]?.kid;
    });
  }
}
