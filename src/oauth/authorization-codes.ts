// Authorization codes (RFC 6749 §4.1, OAuth 2.1 §4.1): issued by the authorization endpoint
// as a grant row holding only the SHA-256 of the code, redeemed once at the token endpoint.
import { createHash, randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { authorizationGrants } from "../../db/schema.ts";

export interface NewAuthorizationCode {
  clientId: string;
  /** users.id of the user who approved; becomes the `sub` of the tokens. */
  userId: string;
  redirectUri: string;
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
