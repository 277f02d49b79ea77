// grant_type=client_credentials at POST /oauth/token, on every backend.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { eq } from "drizzle-orm";
import { decodeJwt } from "jose";
import { sessions } from "../db/schema.ts";
import { countStatements, createClient, post, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { tokenRequest } from "./helpers/grants.ts";

setDefaultTimeout(30_000);

describe.each(backends)("client_credentials grant [%s]", (backend) => {
  const ready = useTestApp(backend, {
    TA_ACCESS_TOKEN_TTL: "900",
    TA_RESOURCES: JSON.stringify([{ resource: "https://api.example" }, { resource: "https://files.example" }]),
  });

  test("issues an access token only, for the client's registered scope and the default audience", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await tokenRequest(t, c, { grant_type: "client_credentials" });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body).toEqual({ access_token: expect.any(String), token_type: "Bearer", expires_in: 900, scope: "read write" });
    const verified = await t.services.pipeline.verify(body.access_token, "access_token");
    if (!verified.ok) throw new Error(verified.reason);
    expect(verified.claims.sub).toBe(c.client.clientId);
    expect(verified.claims.aud).toBe(t.config.defaultAudience);
    expect(verified.session.refreshTokenJti).toBeNull();
  });

  test("authenticates with client_secret_post too", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res] = await post(t, "/oauth/token", {
      grant_type: "client_credentials",
      client_id: c.client.clientId,
      client_secret: c.secret!,
    });
    expect(res.status).toBe(200);
  });

  test("uses the client's own access token lifetime", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential", { accessTokenTtl: 60 });
    const [, body] = await tokenRequest(t, c, { grant_type: "client_credentials" });
    expect(body.expires_in).toBe(60);
  });

  test("names its session as the token family (sid): what a session-revoked event names", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, body] = await tokenRequest(t, c, { grant_type: "client_credentials" });
    const { sid, jti } = decodeJwt(body.access_token);
    const [row] = await t.database.db.select().from(sessions).where(eq(sessions.accessTokenJti, jti!));
    expect(sid).toBe(row!.id);
  });

  test("issues a revocable session", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [, body] = await tokenRequest(t, c, { grant_type: "client_credentials" });
    const [res] = await post(t, "/oauth/revoke", { token: body.access_token }, c.auth.headers);
    expect(res.status).toBe(200);
    expect(await t.services.pipeline.verify(body.access_token)).toEqual({ ok: false, reason: "inactive" });
  });

  test.each([
    ["registered for the grant", ["client_credentials"]],
    ["not registered for the grant", ["authorization_code", "refresh_token"]],
  ])("refuses a public client %s with unauthorized_client", async (_, grantTypes) => {
    const t = await ready();
    const c = await createClient(t, "public", { grantTypes });
    const [res, body] = await tokenRequest(t, c, { grant_type: "client_credentials" });
    expect(res.status).toBe(400);
    expect(body.error).toBe("unauthorized_client");
  });

  test("narrows the scope on request", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await tokenRequest(t, c, { grant_type: "client_credentials", scope: "write" });
    expect(res.status).toBe(200);
    expect(body.scope).toBe("write");
  });

  test.each([
    ["an unknown scope", "read admin"],
    ["a known scope the client is not registered for", "email"],
  ])("refuses %s with invalid_scope", async (_, scope) => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await tokenRequest(t, c, { grant_type: "client_credentials", scope });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_scope");
  });

  test("issues a token for one configured resource (RFC 8707)", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await tokenRequest(t, c, { grant_type: "client_credentials", resource: "https://files.example" });
    expect(res.status).toBe(200);
    const verified = await t.services.pipeline.verify(body.access_token);
    expect(verified.ok && verified.claims.aud).toBe("https://files.example");
  });

  test("refuses a resource the server does not serve with invalid_target", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const [res, body] = await tokenRequest(t, c, { grant_type: "client_credentials", resource: "https://evil.example" });
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_target");
  });

  test("concurrent mints share one INSERT and each token names its own live session", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    // The six signatures are handed back in one turn of the event loop, so the six mints reach
    // the database together, as concurrent requests of a busy server do.
    const sign = t.services.tokens.sign.bind(t.services.tokens);
    const signed: Array<() => void> = [];
    t.services.tokens.sign = (async (...args: Parameters<typeof sign>) => {
      const token = await sign(...args);
      await new Promise<void>((resolve) => signed.push(resolve) === 6 && signed.forEach((go) => go()));
      return token;
    }) as typeof sign;
    const statements = countStatements(t.database, "insert into sessions");
    const issued = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        t.services.sessions.mint({ client: c.client, subject: c.client.clientId, scope: "read", audience: [`https://api${i}.example`], withRefreshToken: false }),
      ),
    );
    t.services.tokens.sign = sign;
    expect(statements.stop()).toBe(1);
    expect(new Set(issued.map((s) => s.sessionId)).size).toBe(6);
    for (const [i, s] of issued.entries()) {
      const verified = await t.services.pipeline.verify(s.accessToken);
      if (!verified.ok) throw new Error(`token ${i} is not live: ${verified.reason}`);
      expect(verified.session.id).toBe(s.sessionId);
      const [row] = await t.database.db.select().from(sessions).where(eq(sessions.id, s.sessionId));
      expect(row!.audience).toEqual([`https://api${i}.example`]);
      expect(verified.session.refreshTokenJti).toBeNull();
      expect(verified.session.accessExpiresAt.getTime()).toBe(verified.claims.exp * 1000);
    }
  });
});
