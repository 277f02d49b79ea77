// POST /oauth/token: the endpoint itself and the authorization_code grant, on every backend.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import type { PgUpdateSetSource } from "drizzle-orm/pg-core";
import { authorizationGrants, sessions } from "../db/schema.ts";
import { createClient, post, request, useTestApp } from "./helpers/app.ts";
import type { TestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { issueCode, redeem, refresh, tokenRequest, warmPool } from "./helpers/grants.ts";

setDefaultTimeout(30_000);

/** Changes a stored grant, as a different authorization request would have made it. */
const alterGrant = (t: TestApp, grantId: string, values: PgUpdateSetSource<typeof authorizationGrants>) =>
  t.database.db.update(authorizationGrants).set(values).where(eq(authorizationGrants.id, grantId));

const liveSessionsOf = async (t: TestApp, grantId: string) =>
  (await t.database.db.select().from(sessions).where(eq(sessions.grantId, grantId))).filter((s) => s.status === "created");

describe.each(backends)("token endpoint [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("refuses an unknown grant_type with unsupported_grant_type", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await tokenRequest(t, c, { grant_type: "password", username: "a", password: "b" });
    expect(res.status).toBe(400);
    expect(body.error).toBe("unsupported_grant_type");
    expect(res.headers.get("cache-control")).toBe("no-store");
  });

  test("refuses a grant the client is not registered for with unauthorized_client", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { grantTypes: ["client_credentials"] });
    const code = await issueCode(t, c);
    const [res, body] = await redeem(t, c, code);
    expect(res.status).toBe(400);
    expect(body.error).toBe("unauthorized_client");
    expect(await liveSessionsOf(t, code.grantId)).toHaveLength(0);
  });

  test.each([
    ["missing grant_type", { scope: "read" }],
    ["missing code", { grant_type: "authorization_code", code_verifier: "x".repeat(43) }],
    ["malformed code_verifier", { grant_type: "authorization_code", code: "abc", code_verifier: "short" }],
    ["missing refresh_token", { grant_type: "refresh_token" }],
  ])("refuses a request with %s as invalid_request", async (_, form) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await tokenRequest(t, c, form as Record<string, string>);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_request");
  });

  test("refuses a JSON body", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await request(t, "POST", "/oauth/token", {
      body: JSON.stringify({ grant_type: "client_credentials" }),
      headers: { ...c.auth.headers, "content-type": "application/json" },
    });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_request");
  });

  test("refuses a wrong client secret with 401 invalid_client", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await post(t, "/oauth/token", { grant_type: "client_credentials" }, {
      authorization: `Basic ${Buffer.from(`${c.client.clientId}:wrong`).toString("base64")}`,
    });
    expect(res.status).toBe(401);
    expect(body.error).toBe("invalid_client");
  });

  test("answers 405 to GET", async () => {
    const t = await ready();
    const [res, body] = await request(t, "GET", "/oauth/token");
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    expect(body.error).toBe("method_not_allowed");
  });
});

describe.each(backends)("authorization_code grant [%s]", (backend) => {
  const ready = useTestApp(backend, {
    TA_RESOURCES: JSON.stringify([{ resource: "https://api.example" }, { resource: "https://files.example" }]),
  });

  test("redeems a code for an access token, a refresh token and a session of the user", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { accessTokenTtl: 120 });
    const code = await issueCode(t, c);
    const [res, body] = await redeem(t, c, code);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body).toEqual({
      access_token: expect.any(String),
      token_type: "Bearer",
      expires_in: 120,
      refresh_token: expect.any(String),
      scope: "read write",
    });
    const verified = await t.services.pipeline.verify(body.access_token, "access_token");
    if (!verified.ok) throw new Error(`access token not live: ${verified.reason}`);
    expect(verified.claims.sub).toBe(code.userId);
    expect(verified.claims.aud).toBe(t.config.defaultAudience);
    expect(verified.session.grantId).toBe(code.grantId);
    expect((await t.services.pipeline.verify(body.refresh_token, "refresh_token")).ok).toBe(true);
    const [grant] = await t.database.db.select().from(authorizationGrants).where(eq(authorizationGrants.id, code.grantId));
    expect(grant!.redeemedAt).not.toBeNull();
  });

  test("redeems a public client's code with PKCE and client_id alone", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const [res, body] = await redeem(t, c, await issueCode(t, c));
    expect(res.status).toBe(200);
    expect((await refresh(t, c, body.refresh_token))[0].status).toBe(200);
  });

  test("refuses a second redemption and revokes the sessions the code produced", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    const [, first] = await redeem(t, c, code);
    const [res, body] = await redeem(t, c, code);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
    expect(await t.services.pipeline.verify(first.access_token)).toEqual({ ok: false, reason: "inactive" });
    const [refused, refusedBody] = await refresh(t, c, first.refresh_token);
    expect(refused.status).toBe(400);
    expect(refusedBody.error).toBe("invalid_grant");
    expect(t.logs.some((line) => line.includes('"security.authorization_code.reuse"'))).toBe(true);
  });

  test("lets exactly one of 10 concurrent redemptions win, and the losers revoke what it issued", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    await warmPool(t);
    const results = await Promise.all(Array.from({ length: 10 }, () => redeem(t, c, code)));
    const winners = results.filter(([res]) => res.status === 200);
    expect(winners).toHaveLength(1);
    expect(results.filter(([, body]) => body.error === "invalid_grant")).toHaveLength(9);
    expect((await t.services.pipeline.verify(winners[0]![1].access_token)).ok).toBe(false);
    expect(await liveSessionsOf(t, code.grantId)).toHaveLength(0);
  });

  test.each([
    ["a wrong code_verifier", { code_verifier: "w".repeat(43) }],
    ["a missing code_verifier", { code_verifier: undefined }],
    ["a wrong redirect_uri", { redirect_uri: "https://app.example/other" }],
    ["an unknown code", { code: "no-such-code" }],
  ])("refuses %s with invalid_grant and issues nothing", async (_, change) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    const form: Record<string, string | undefined> = {
      grant_type: "authorization_code",
      code: code.code,
      code_verifier: code.verifier,
      redirect_uri: code.redirectUri,
      ...change,
    };
    const [res, body] = await tokenRequest(t, c, Object.fromEntries(Object.entries(form).filter(([, v]) => v !== undefined)) as Record<string, string>);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
    expect(await liveSessionsOf(t, code.grantId)).toHaveLength(0);
    // A failed attempt does not burn the code: its rightful client can still redeem it.
    expect((await redeem(t, c, code))[0].status).toBe(200);
  });

  test("refuses an expired code", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    await alterGrant(t, code.grantId, { expiresAt: sql`now() - interval '1 second'` });
    const [res, body] = await redeem(t, c, code);
    expect(res.status).toBe(400);
    expect(body).toEqual({ error: "invalid_grant", error_description: "authorization code expired" });
    expect(await liveSessionsOf(t, code.grantId)).toHaveLength(0);
  });

  test("codes live for TA_AUTHORIZATION_CODE_TTL seconds", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    const [row] = await t.database.rows<{ ttl: number }>(
      sql`select extract(epoch from expires_at - created_at)::int as ttl from authorization_grants where id = ${code.grantId}`,
    );
    expect(Number(row!.ttl)).toBe(60);
  });

  test("refuses a code issued to another client", async () => {
    const t = await ready();
    const owner = await createClient(t, "confidential");
    const other = await createClient(t, "confidential");
    const code = await issueCode(t, owner);
    const [res, body] = await redeem(t, other, code);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
    expect((await redeem(t, owner, code))[0].status).toBe(200);
  });

  test("implies the redirect_uri only when the client has exactly one", async () => {
    const t = await ready();
    const single = await createClient(t, "confidential");
    const code = await issueCode(t, single);
    const [res] = await tokenRequest(t, single, { grant_type: "authorization_code", code: code.code, code_verifier: code.verifier });
    expect(res.status).toBe(200);

    const several = await createClient(t, "confidential", { redirectUris: ["https://app.example/a", "https://app.example/b"] });
    const other = await issueCode(t, several);
    const [refused, body] = await tokenRequest(t, several, { grant_type: "authorization_code", code: other.code, code_verifier: other.verifier });
    expect(refused.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
  });

  test("refuses a public client's code issued without PKCE", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const code = await issueCode(t, c);
    await alterGrant(t, code.grantId, { codeChallenge: null, codeChallengeMethod: null });
    const [res, body] = await tokenRequest(t, c, { grant_type: "authorization_code", code: code.code, redirect_uri: code.redirectUri });
    expect(res.status).toBe(400);
    expect(body).toEqual({ error: "invalid_grant", error_description: "PKCE is required for public clients" });
  });

  test("refuses a code_verifier for a code issued without code_challenge (PKCE downgrade)", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c);
    await alterGrant(t, code.grantId, { codeChallenge: null, codeChallengeMethod: null });
    const [res, body] = await redeem(t, c, code);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_grant");
  });

  test("refuses the plain code_challenge_method even with a matching verifier", async () => {
    const t = await ready();
    const c = await createClient(t, "public");
    const code = await issueCode(t, c);
    await alterGrant(t, code.grantId, { codeChallenge: code.verifier, codeChallengeMethod: "plain" });
    const [res, body] = await redeem(t, c, code);
    expect(res.status).toBe(400);
    expect(body).toEqual({ error: "invalid_grant", error_description: "unsupported code_challenge_method" });
  });

  test("narrows the scope on request", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await redeem(t, c, await issueCode(t, c), { scope: "read" });
    expect(res.status).toBe(200);
    expect(body.scope).toBe("read");
    const verified = await t.services.pipeline.verify(body.access_token);
    expect(verified.ok && verified.claims.scope).toBe("read");
  });

  test.each([
    ["a scope the grant does not hold", "write", "read"],
    ["a scope the server does not know", "read admin", "read write"],
  ])("refuses %s with invalid_scope", async (_, requested, granted) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c, { scope: granted });
    const [res, body] = await redeem(t, c, code, { scope: requested });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_scope");
    expect(await liveSessionsOf(t, code.grantId)).toHaveLength(0);
  });

  test("narrows the audience to one granted resource (RFC 8707)", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const resources = ["https://api.example", "https://files.example"];
    const [, all] = await redeem(t, c, await issueCode(t, c, { resources }));
    const allVerified = await t.services.pipeline.verify(all.access_token);
    expect(allVerified.ok && allVerified.claims.aud).toEqual(resources);
    const [res, one] = await redeem(t, c, await issueCode(t, c, { resources }), { resource: "https://files.example" });
    expect(res.status).toBe(200);
    const verified = await t.services.pipeline.verify(one.access_token);
    expect(verified.ok && verified.claims.aud).toBe("https://files.example");
  });

  test.each([
    ["a resource the grant does not hold", "https://other.example"],
    ["a relative resource", "/api"],
    ["a resource with a fragment", "https://api.example#x"],
  ])("refuses %s with invalid_target", async (_, resource) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const code = await issueCode(t, c, { resources: ["https://api.example"] });
    const [res, body] = await redeem(t, c, code, { resource });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_target");
    expect(await liveSessionsOf(t, code.grantId)).toHaveLength(0);
  });
});
