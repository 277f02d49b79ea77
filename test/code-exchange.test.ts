// The authorization-code exchange in one round trip (ta_redeem_codes): the tokens are signed
// before the statement from what the sealed code says, their digests stored only when the grant
// says the same; a code that cannot be opened, or that lies, still gets exactly what its grant holds.
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { sessions } from "../db/schema.ts";
import { hashAuthorizationCode, sealAuthorizationCode } from "../src/oauth/authorization-codes.ts";
import { tokenSha256 } from "../src/oauth/tokens.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { countStatements, createClient, holdStatements, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import type { TestCode } from "./helpers/grants.ts";
import { createUser, issueCode, pkcePair, redeem, refresh } from "./helpers/grants.ts";

const sessionOf = async (t: TestApp, sessionId: string) => (await t.database.db.select().from(sessions).where(eq(sessions.id, sessionId)))[0]!;

/** A grant stored for `code` as the authorization endpoint would store it. */
async function storeGrant(t: TestApp, c: TestClient, code: string, userId: string, challenge: string, scope = "read") {
  const [row] = await t.database.rows<{ id: string }>(sql`
    insert into authorization_grants (code_hash, client_id, user_id, code_challenge, code_challenge_method, redirect_uri, scope, expires_at)
    values (${hashAuthorizationCode(code)}, ${c.client.clientId}, ${userId}, ${challenge}, 'S256', ${c.client.redirectUris[0]!}, ${scope}, now() + interval '1 minute')
    returning id`);
  return row!.id;
}

/** The session a successful exchange answered with, found by its access token's jti. */
async function sessionOfTokens(t: TestApp, accessToken: string) {
  const { claims } = await t.services.tokens.verify(accessToken);
  return (await t.database.db.select().from(sessions).where(eq(sessions.accessTokenJti, claims.jti)))[0]!;
}

describe.each(backends)("code exchange [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("is one statement, and the session holds the digests of the tokens it answers with", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    const statements = countStatements(t.database, "ta_redeem_codes");
    const [res, body] = await redeem(t, c, code);
    expect(statements.stop()).toBe(1);
    expect(res.status).toBe(200);
    const session = await sessionOfTokens(t, body.access_token);
    expect(session.grantId).toBe(code.grantId);
    expect(session.subject).toBe(code.userId);
    expect(session.accessTokenSha256).toBe(tokenSha256(body.access_token));
    expect(session.refreshTokenSha256).toBe(tokenSha256(body.refresh_token));
    // The refresh token is recognised by its digest: rotation needs no signature check.
    expect((await refresh(t, c, body.refresh_token))[0].status).toBe(200);
  });

  test("exchanges made together share one statement, each getting what it would alone", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [first, second, third] = [await issueCode(t, c), await issueCode(t, c), await issueCode(t, c)];
    const held = holdStatements(t.database, "ta_redeem_codes");
    const statements = countStatements(t.database, "ta_redeem_codes");
    const leading = redeem(t, c, first);
    await held.sent;
    // While the first is at the database: the second twice (one wins, one is reuse) and the third.
    const together = Promise.all([redeem(t, c, second), redeem(t, c, second), redeem(t, c, third)]);
    await Bun.sleep(50);
    held.release();
    expect((await leading)[0].status).toBe(200);
    const [a, b, d] = await together;
    expect(statements.stop()).toBe(2);
    expect([a[0].status, b[0].status].sort()).toEqual([200, 400]);
    expect(d[0].status).toBe(200);
    // The reuse revoked what the winning redemption of `second` issued.
    const winner = a[0].status === 200 ? a[1] : b[1];
    expect((await t.services.pipeline.verify(winner.access_token)).ok).toBe(false);
    expect((await t.services.pipeline.verify(d[1].access_token)).ok).toBe(true);
  });

  test("a plain code (issued by an earlier version) still redeems, its tokens signed from the grant", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const userId = await createUser(t);
    const { verifier, challenge } = pkcePair();
    const code = randomBytes(32).toString("base64url");
    await storeGrant(t, c, code, userId, challenge);
    const plain: TestCode = { code, grantId: "", verifier, userId, redirectUri: c.client.redirectUris[0]! };
    const [res, body] = await redeem(t, c, plain);
    expect(res.status).toBe(200);
    const verified = await t.services.pipeline.verify(body.access_token);
    if (!verified.ok) throw new Error(verified.reason);
    expect(verified.claims).toMatchObject({ sub: userId, scope: "read", aud: t.config.defaultAudience });
    // Nothing to vouch for them: these tokens are recognised by their signatures.
    expect((await sessionOf(t, verified.session.id)).accessTokenSha256).toBeNull();
  });

  test("a code that lies about its grant gets what the grant holds, and no digests", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const userId = await createUser(t);
    const { verifier, challenge } = pkcePair();
    // Sealed with the server's own key, but naming another user and a wider scope.
    const code = await sealAuthorizationCode(t.services.keys.codeKeys().sealing, { sub: "someone-else", scope: "read write", aud: [] });
    await storeGrant(t, c, code, userId, challenge, "read");
    const [res, body] = await redeem(t, c, { code, grantId: "", verifier, userId, redirectUri: c.client.redirectUris[0]! });
    expect(res.status).toBe(200);
    expect(body.scope).toBe("read");
    const verified = await t.services.pipeline.verify(body.access_token);
    if (!verified.ok) throw new Error(verified.reason);
    expect(verified.claims.sub).toBe(userId);
    expect(verified.claims.scope).toBe("read");
    expect((await sessionOf(t, verified.session.id)).accessTokenSha256).toBeNull();
  });

  test("a code sealed with a key this server never had still redeems by its hash", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const userId = await createUser(t);
    const { verifier, challenge } = pkcePair();
    const foreignKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
    const code = await sealAuthorizationCode(foreignKey, { sub: userId, scope: "read", aud: [] });
    await storeGrant(t, c, code, userId, challenge);
    const [res, body] = await redeem(t, c, { code, grantId: "", verifier, userId, redirectUri: c.client.redirectUris[0]! });
    expect(res.status).toBe(200);
    expect((await t.services.pipeline.verify(body.access_token)).ok).toBe(true);
  });

  test("a code altered in its sealed part is unknown, and the original still redeems", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    const [random, sealed] = code.code.split(".");
    const altered = `${random}.${sealed!.slice(0, -2)}${sealed!.endsWith("AA") ? "BB" : "AA"}`;
    const [res, body] = await redeem(t, c, { ...code, code: altered });
    expect(res.status).toBe(400);
    expect(body).toEqual({ error: "invalid_grant", error_description: "invalid authorization code" });
    expect((await redeem(t, c, code))[0].status).toBe(200);
  });
});
