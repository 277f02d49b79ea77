// Authorization codes (RFC 6749 §4.1, OAuth 2.1 §4.1): issued by the authorization endpoint
// as a grant row holding only the SHA-256 of the code, redeemed once at the token endpoint.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { and, eq, isNull, sql } from "drizzle-orm";
import type { Database, Db } from "../../db/client.ts";
import type { AuthorizationGrant } from "../../db/schema.ts";
import { authorizationGrants } from "../../db/schema.ts";

export interface NewAuthorizationCode {
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
  codeChallengeMethod: "S256";
  /** Lifetime in seconds (config.authorizationCodeTtl). */
  ttlSeconds: number;
}

export interface IssuedAuthorizationCode {
  /** The code in clear: returned once, never stored. */
  code: string;
  grantId: string;
  expiresAt: Date;
}

/** Codes are 256-bit random, so a fast hash is enough to keep them out of the database. */
export function hashAuthorizationCode(code: string): string {
  return createHash("sha256").update(code).digest("hex");
}

/** Creates an authorization grant and its one-time code. */
export async function issueAuthorizationCode(database: Database, input: NewAuthorizationCode): Promise<IssuedAuthorizationCode> {
  const code = randomBytes(32).toString("base64url");
  const [row] = await database.db
    .insert(authorizationGrants)
    .values({
      codeHash: hashAuthorizationCode(code),
      clientId: input.clientId,
      userId: input.userId,
      redirectUri: input.redirectUri,
      scope: input.scope,
      resources: [...input.resources],
      codeChallenge: input.codeChallenge,
      codeChallengeMethod: input.codeChallengeMethod,
      expiresAt: sql`now() + make_interval(secs => ${input.ttlSeconds})`,
    })
    .returning({ id: authorizationGrants.id, expiresAt: authorizationGrants.expiresAt });
  return { code, grantId: row!.id, expiresAt: row!.expiresAt };
}

export interface FoundGrant {
  grant: AuthorizationGrant;
  /** Judged by the database clock, like every other expiry. */
  expired: boolean;
}

/** The grant of a code, redeemed or not. */
export async function findGrantByCode(database: Database, code: string): Promise<FoundGrant | undefined> {
  const [row] = await database.db
    .select({ grant: authorizationGrants, expired: sql<boolean>`${authorizationGrants.expiresAt} <= now()` })
    .from(authorizationGrants)
    .where(eq(authorizationGrants.codeHash, hashAuthorizationCode(code)))
    .limit(1);
  return row;
}

export type Redemption<T> = { redeemed: true; value: T } | { redeemed: false; reason: "already_redeemed" | "expired" };

/**
 * Redeems a grant's code with a compare-and-set (`redeemed_at IS NULL`, not expired) and, in
 * the same transaction, runs `issue` (which creates the session). A concurrent redemption
 * blocks on the row lock until this one commits, then loses — and revoking the grant's
 * sessions afterwards sees and kills what the winner issued.
 */
export async function redeemAuthorizationGrant<T>(
  database: Database,
  grantId: string,
  issue: (tx: Db) => Promise<T>,
): Promise<Redemption<T>> {
  return database.db.transaction(async (tx) => {
    const won = await tx
      .update(authorizationGrants)
      .set({ redeemedAt: sql`now()` })
      .where(
        and(
          eq(authorizationGrants.id, grantId),
          isNull(authorizationGrants.redeemedAt),
          // Withdrawing access on the account page sets expires_at = now() on unredeemed codes,
          // then revokes the sessions. clock_timestamp(), not now(): now() is when this
          // transaction began, possibly before that withdrawal committed, and a redemption
          // winning after it would mint a session its revocation no longer sees.
          sql`${authorizationGrants.expiresAt} > clock_timestamp()`,
        ),
      )
      .returning({ id: authorizationGrants.id });
    if (won.length === 0) {
      const [row] = await tx
        .select({ redeemedAt: authorizationGrants.redeemedAt })
        .from(authorizationGrants)
        .where(eq(authorizationGrants.id, grantId));
      return { redeemed: false as const, reason: row?.redeemedAt ? ("already_redeemed" as const) : ("expired" as const) };
    }
    return { redeemed: true as const, value: await issue(tx) };
  });
}

/** RFC 7636 §4.6 with S256: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge. */
export function pkceMatches(codeChallenge: string, codeVerifier: string): boolean {
  const computed = createHash("sha256").update(codeVerifier, "ascii").digest();
  const expected = Buffer.from(codeChallenge, "base64url");
  return expected.length === computed.length && timingSafeEqual(expected, computed);
}
