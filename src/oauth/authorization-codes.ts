// Authorization codes (RFC 6749 §4.1.2, OAuth 2.1 §4.1.2): one-time, short-lived, stored only
// as a SHA-256 hash in authorization_grants together with the PKCE challenge, redirect URI,
// scope, resources and user. Redemption lives with the token endpoint.
import { createHash, randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { authorizationGrants } from "../../db/schema.ts";

export interface NewAuthorizationCode {
  clientId: string;
  userId: string;
  /** The redirect_uri of the authorization request as sent; null when the client omitted it. */
  redirectUri: string | null;
  scope: string;
  resources: string[];
  codeChallenge: string;
  codeChallengeMethod: "S256";
  ttlSeconds: number;
}

export function hashCode(code: string): string {
  return createHash("sha256").update(code).digest("hex");
}

/** Stores a new grant and returns its code in clear (never stored) and the grant id. */
export async function issueAuthorizationCode(
  database: Database,
  input: NewAuthorizationCode,
): Promise<{ code: string; grantId: string }> {
  const code = randomBytes(32).toString("base64url"); // 256 bits
  const [row] = await database.db
    .insert(authorizationGrants)
    .values({
      codeHash: hashCode(code),
      clientId: input.clientId,
      userId: input.userId,
      codeChallenge: input.codeChallenge,
      codeChallengeMethod: input.codeChallengeMethod,
      redirectUri: input.redirectUri,
      scope: input.scope,
      resources: input.resources,
      expiresAt: sql`now() + make_interval(secs => ${input.ttlSeconds})`,
    })
    .returning({ id: authorizationGrants.id });
  return { code, grantId: row!.id };
}
