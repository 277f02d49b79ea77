// Fixtures for the token endpoint tests: users, PKCE pairs, authorization codes, token requests.
import { createHash, randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { users } from "../../db/schema.ts";
import type { NewAuthorizationCode } from "../../src/oauth/authorization-codes.ts";
import type { Form, TestApp, TestClient } from "./app.ts";
import { post } from "./app.ts";

export async function createUser(t: TestApp, username = `user-${randomBytes(4).toString("hex")}`): Promise<string> {
  const [row] = await t.database.db.insert(users).values({ username, passwordHash: "not-a-real-hash" }).returning({ id: users.id });
  return row!.id;
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

export interface TestCode {
  code: string;
  grantId: string;
  verifier: string;
  userId: string;
  redirectUri: string;
}

/** A fresh authorization code for `c` with PKCE S256, as the authorization endpoint would issue it. */
export async function issueCode(t: TestApp, c: TestClient, overrides: Partial<NewAuthorizationCode> = {}): Promise<TestCode> {
  const { verifier, challenge } = pkcePair();
  const userId = overrides.userId ?? (await createUser(t));
  const redirectUri = overrides.redirectUri ?? c.client.redirectUris[0]!;
  const { code, grantId } = await t.services.codes.issue({
    clientId: c.client.clientId,
    userId,
    redirectUri,
    scope: "read write",
    resources: [],
    codeChallenge: challenge,
    codeChallengeMethod: "S256",
    ttlSeconds: t.config.authorizationCodeTtl,
    ...overrides,
  });
  return { code, grantId, verifier, userId, redirectUri };
}

/** POST /oauth/token as client `c` (Basic for confidential, client_id for public). */
export const tokenRequest = (t: TestApp, c: TestClient, form: Form) =>
  post(t, "/oauth/token", { ...c.auth.form, ...form }, c.auth.headers);

/** Redeems a code with the right verifier and redirect URI. */
export const redeem = (t: TestApp, c: TestClient, code: TestCode, extra: Form = {}) =>
  tokenRequest(t, c, {
    grant_type: "authorization_code",
    code: code.code,
    code_verifier: code.verifier,
    redirect_uri: code.redirectUri,
    ...extra,
  });

export const refresh = (t: TestApp, c: TestClient, refreshToken: string, extra: Form = {}) =>
  tokenRequest(t, c, { grant_type: "refresh_token", refresh_token: refreshToken, ...extra });

/**
 * Opens every connection of the pool (postgres.js connects lazily), so that concurrent
 * requests in a test really run at the same time instead of queueing for connections.
 */
export async function warmPool(t: TestApp, connections = 10): Promise<void> {
  await Promise.all(Array.from({ length: connections }, () => t.database.rows(sql`select pg_sleep(0.02)`)));
}
