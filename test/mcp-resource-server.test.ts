// The resource-server library as an MCP server needs it: RFC 9728 protected resource metadata
// and its URL, RFC 6750 §3 / RFC 9728 §5.1 challenges, the audience compared after RFC 3986
// normalisation, the fetch-handler form, and examples/mcp-server.ts driven by the official MCP
// SDK client over real HTTP (tools, step-up on insufficient_scope, revocation through the feed).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js";
import type { AccessTokenVerifier, VerifierOptions } from "@token-authority/resource-server";
import { createAccessTokenVerifier, protect, protectedResourceMetadataUrl } from "@token-authority/resource-server";
import { bearerAuth } from "@token-authority/resource-server/elysia";
import { createMcpServer, mcpServerFromEnv } from "../examples/mcp-server.ts";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { admin, createClient, createTestApp, post } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";

const MCP = "http://localhost:4200/mcp";
const PRM = "http://localhost:4200/.well-known/oauth-protected-resource/mcp";

/** A verifier that never reaches the network unless a token is checked (for the metadata alone). */
const offlineVerifier = (audience: string, extra: Partial<VerifierOptions> = {}) =>
  createAccessTokenVerifier({
    issuer: "https://as.example",
    audience,
    revocation: { mode: "introspection", url: "http://127.0.0.1:9/none", clientId: "x", clientSecret: "y" },
    ...extra,
  });

const get = (handler: (request: Request) => Promise<Response>, url: string, headers: Record<string, string> = {}, method = "GET") =>
  handler(new Request(url, { method, headers }));

/** Polls `attempt` until it answers true, or fails after `timeoutMs` (the feed delivers in milliseconds). */
async function until(attempt: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await attempt())) {
    if (performance.now() > deadline) throw new Error("the condition did not come true in time");
    await Bun.sleep(5);
  }
}

describe("protected resource metadata (RFC 9728)", () => {
  test.each([
    ["https://h/mcp", "https://h/.well-known/oauth-protected-resource/mcp"],
    ["https://h/", "https://h/.well-known/oauth-protected-resource"],
    ["https://h", "https://h/.well-known/oauth-protected-resource"],
    ["https://h/a/b/", "https://h/.well-known/oauth-protected-resource/a/b/"],
    ["HTTPS://H.example:443/mcp", "https://h.example/.well-known/oauth-protected-resource/mcp"],
    ["http://localhost:4200/mcp?tenant=a", "http://localhost:4200/.well-known/oauth-protected-resource/mcp?tenant=a"],
  ])("derives the metadata URL of %s (§3.1)", (resource, url) => {
    expect(protectedResourceMetadataUrl(resource)).toBe(url);
  });

  test.each(["api", "urn:example:api", "ftp://h/mcp"])("refuses a resource that is not an http(s) URL: %s", (audience) => {
    expect(() => offlineVerifier(audience)).toThrow("a resource identifier is an http or https URL");
  });

  test("serves the document at that path only, its resource exactly as configured, without offline_access", async () => {
    const verifier = offlineVerifier("HTTP://LocalHost:4200/mcp", {
      resource: { scopes: ["read", "write", "offline_access"], name: "Notes MCP", documentation: "https://docs.example/mcp" },
    });
    expect(verifier.resourceMetadataUrl).toBe(PRM);
    const handler = protect(verifier, () => new Response("protected"));
    const res = await get(handler, PRM);
    expect(res.status).toBe(200);
    expect(Object.fromEntries(res.headers)).toMatchObject({
      "content-type": "application/json; charset=utf-8",
      "access-control-allow-origin": "*",
      "cache-control": "public, max-age=300",
    });
    expect(await res.text()).toBe(
      JSON.stringify({
        resource: "HTTP://LocalHost:4200/mcp",
        authorization_servers: ["https://as.example"],
        scopes_supported: ["read", "write"],
        bearer_methods_supported: ["header"],
        resource_name: "Notes MCP",
        resource_documentation: "https://docs.example/mcp",
      }),
    );
    // RFC 9728 §3.3: not at the root (that would describe https://localhost:4200), nor below another path.
    for (const path of ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp2", "/.well-known/oauth-protected-resource/mcp/x"]) {
      const other = await get(handler, `http://localhost:4200${path}`);
      expect(other.status).toBe(404);
      expect(other.headers.get("cache-control")).toBe("no-store");
      expect(await other.json()).toEqual({ error: "not_found", error_description: "the metadata of this resource is at /.well-known/oauth-protected-resource/mcp" });
    }
  });

  test("a resource at the root has its document at the well-known path itself", async () => {
    const verifier = offlineVerifier("https://api.example", { resource: { scopes: ["read"] } });
    expect(verifier.resourceMetadataUrl).toBe("https://api.example/.well-known/oauth-protected-resource");
    const res = await get(protect(verifier, () => new Response("protected")), "https://api.example/.well-known/oauth-protected-resource");
    expect(await res.json()).toEqual({
      resource: "https://api.example",
      authorization_servers: ["https://as.example"],
      scopes_supported: ["read"],
      bearer_methods_supported: ["header"],
    });
  });

  test("answers a CORS preflight and refuses other methods", async () => {
    const handler = protect(offlineVerifier(MCP), () => new Response("protected"));
    const preflight = await get(handler, PRM, { origin: "https://app.example", "access-control-request-headers": "mcp-protocol-version" }, "OPTIONS");
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
    expect(preflight.headers.get("access-control-allow-headers")).toBe("*");
    const posted = await get(handler, PRM, {}, "POST");
    expect(posted.status).toBe(405);
    expect(posted.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    expect((await posted.json()).error).toBe("method_not_allowed");
  });

  test("the Elysia plugin serves the same document at the same path, and nothing at the root", async () => {
    const verifier = offlineVerifier(MCP, { resource: { scopes: ["read"] } });
    const app = new Elysia().use(bearerAuth(verifier)).post("/mcp", () => "ok", { bearer: ["read"] });
    const res = await app.handle(new Request(PRM));
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(await res.json()).toEqual(verifier.resourceMetadata);
    expect(verifier.resourceMetadata).toEqual({
      resource: MCP,
      authorization_servers: ["https://as.example"],
      scopes_supported: ["read"],
      bearer_methods_supported: ["header"],
    });
    expect((await app.handle(new Request("http://localhost:4200/.well-known/oauth-protected-resource"))).status).toBe(404);
    const challenged = await app.handle(new Request(MCP, { method: "POST" }));
    expect(challenged.status).toBe(401);
    expect(challenged.headers.get("www-authenticate")).toBe(`Bearer realm="api", scope="read", resource_metadata="${PRM}"`);
  });
});

describe.each(backends)("MCP resource server [%s]", (backend) => {
  let t: TestApp;
  /** The authorization server over real HTTP, its issuer being the URL it is reached at. */
  let as: ReturnType<typeof Bun.serve>;
  let issuer: string;
  let rs: TestClient;
  let agent: TestClient;
  const verifiers: AccessTokenVerifier[] = [];

  beforeAll(async () => {
    as = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: (request) => t.app.handle(request) });
    issuer = `http://127.0.0.1:${as.port}`;
    t = await createTestApp(backend, { TA_ISSUER: issuer });
    rs = await createClient(t, "confidential", { resourceServer: MCP });
    agent = await createClient(t, "confidential"); // scope "read write"
  }, 60_000);
  afterAll(async () => {
    for (const verifier of verifiers) verifier.close();
    await as.stop(true);
    await t.close();
  });

  /** A verifier in feed mode for `audience`, following this app's revocation feed. */
  async function feedVerifier(audience: string, credentials: TestClient = rs): Promise<AccessTokenVerifier> {
    const verifier = createAccessTokenVerifier({
      issuer,
      audience,
      revocation: { mode: "feed", clientId: credentials.client.clientId, clientSecret: credentials.secret! },
      resource: { scopes: ["read"] },
    });
    verifiers.push(verifier);
    await verifier.ready();
    return verifier;
  }

  /** An access token signed by the app's active key, with these claims (no session behind it). */
  function token(claims: { aud?: string | string[]; scope?: string; exp?: number } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return t.services.tokens.sign("access_token", {
      sub: "user-1",
      aud: MCP,
      iat: now,
      exp: now + 300,
      jti: crypto.randomUUID(),
      client_id: agent.client.clientId,
      scope: "read",
      ...claims,
    });
  }

  const bearer = (value: string) => ({ authorization: `Bearer ${value}` });

  describe("challenges (RFC 6750 §3, RFC 9728 §5.1)", () => {
    let handler: (request: Request) => Promise<Response>;
    beforeAll(async () => {
      const verifier = await feedVerifier(MCP);
      handler = protect(verifier, (_request, claims) => Response.json({ sub: claims.sub }), { scopes: ["read"] });
    });

    const cases: Array<[string, () => Promise<Record<string, string>>, number, string]> = [
      ["no token", async () => ({}), 401, `Bearer realm="api", scope="read", resource_metadata="${PRM}"`],
      ["another scheme", async () => ({ authorization: "Basic dXNlcjpwYXNz" }), 401, `Bearer realm="api", scope="read", resource_metadata="${PRM}"`],
      [
        "a malformed header",
        async () => ({ authorization: "Bearer two tokens" }),
        400,
        `Bearer realm="api", error="invalid_request", error_description="malformed bearer token", scope="read", resource_metadata="${PRM}"`,
      ],
      [
        "an expired token",
        async () => bearer(await token({ exp: Math.floor(Date.now() / 1000) - 60 })),
        401,
        `Bearer realm="api", error="invalid_token", error_description="the token has expired", scope="read", resource_metadata="${PRM}"`,
      ],
      [
        "a token for another resource",
        async () => bearer(await token({ aud: "http://localhost:4200/mcp2" })),
        401,
        `Bearer realm="api", error="invalid_token", error_description="the token is not valid here", scope="read", resource_metadata="${PRM}"`,
      ],
      [
        "a tampered token",
        async () => bearer(`${(await token()).slice(0, -4)}AAAA`),
        401,
        `Bearer realm="api", error="invalid_token", error_description="the token is not valid here", scope="read", resource_metadata="${PRM}"`,
      ],
      [
        "a token without the scope",
        async () => bearer(await token({ scope: "profile" })),
        403,
        `Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="profile read", resource_metadata="${PRM}"`,
      ],
    ];
    test.each(cases)("answers %s with its exact challenge", async (_name, headers, status, challenge) => {
      const res = await get(handler, MCP, await headers());
      expect(res.status).toBe(status);
      expect(res.headers.get("www-authenticate")).toBe(challenge);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
      expect((await res.json()).error).toBe(status === 400 ? "invalid_request" : status === 403 ? "insufficient_scope" : "invalid_token");
    });

    test("answers a revoked token with invalid_token once the feed has delivered its revocation", async () => {
      const issued = await t.services.sessions.mint({ client: agent.client, subject: "user-1", scope: "read", audience: [MCP], withRefreshToken: false });
      expect((await get(handler, MCP, bearer(issued.accessToken))).status).toBe(200);
      const [revoked] = await post(t, "/oauth/revoke", { token: issued.accessToken }, agent.auth.headers);
      expect(revoked.status).toBe(200);
      await until(async () => (await get(handler, MCP, bearer(issued.accessToken))).status === 401);
      const res = await get(handler, MCP, bearer(issued.accessToken));
      expect(res.headers.get("www-authenticate")).toBe(
        `Bearer realm="api", error="invalid_token", error_description="the token has been revoked", scope="read", resource_metadata="${PRM}"`,
      );
    });

    test("asks on insufficient_scope for the scopes needed united with the token's own, never offline_access", async () => {
      const verifier = await feedVerifier(MCP);
      const stepUp = protect(
        verifier,
        (_request, claims) => {
          verifier.requireScopes(claims, ["read", "write"]);
          return new Response("written");
        },
        { scopes: ["read"] },
      );
      const res = await get(stepUp, MCP, bearer(await token({ scope: "read offline_access profile" })));
      expect(res.status).toBe(403);
      expect(res.headers.get("www-authenticate")).toBe(
        `Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="read profile write", resource_metadata="${PRM}"`,
      );
      // The MCP SDK reads the challenge this way: the scope it will ask for, and where the metadata is.
      expect(extractWWWAuthenticateParams(res)).toEqual({ resourceMetadataUrl: new URL(PRM), scope: "read profile write", error: "insufficient_scope" });
      expect((await get(stepUp, MCP, bearer(await token({ scope: "read write" })))).status).toBe(200);
    });

    test("hands the verified claims to the handler, and lets the handler's own errors through", async () => {
      const res = await get(handler, `${MCP}?q=1`, bearer(await token()));
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ sub: "user-1" });
      const failing = protect(await feedVerifier(MCP), () => {
        throw new Error("handler failed");
      });
      await expect(get(failing, MCP, bearer(await token()))).rejects.toThrow("handler failed");
    });
  });

  describe("audience compared after RFC 3986 normalisation", () => {
    const byAudience = new Map<string, Promise<AccessTokenVerifier>>();
    const verifierFor = (audience: string) => {
      if (!byAudience.has(audience)) byAudience.set(audience, feedVerifier(audience));
      return byAudience.get(audience)!;
    };

    test.each([
      ["http://localhost:4200", "http://localhost:4200/"],
      ["http://localhost:4200/", "http://localhost:4200"],
      ["HTTP://LocalHost:80/mcp", "http://localhost/mcp"],
      ["http://localhost/mcp", "HTTP://LOCALHOST:80/mcp"],
      ["https://API.example:443/v1/../mcp", "https://api.example/mcp"],
    ])("accepts configured %s for aud %s", async (configured, aud) => {
      const verifier = await verifierFor(configured);
      expect((await verifier.verifyToken(await token({ aud }))).sub).toBe("user-1");
      expect((await verifier.verifyToken(await token({ aud: ["https://other.example/api", aud] }))).sub).toBe("user-1");
    });

    test.each([
      ["http://localhost:4200/mcp", "http://localhost:4200/mcp2"],
      ["http://localhost:4200/mcp", "http://localhost:4200/mcp/"],
      ["http://localhost:4200/mcp", "http://127.0.0.1:4200/mcp"],
      ["http://localhost:4200/mcp", "http://localhost:4201/mcp"],
      ["http://localhost:4200/mcp", "https://localhost:4200/mcp"],
      ["http://localhost:4200/mcp", "http://localhost:4200/MCP"],
    ])("refuses configured %s for aud %s", async (configured, aud) => {
      const verifier = await verifierFor(configured);
      for (const claim of [aud, [aud, "https://other.example/api"]]) {
        const refused = await verifier.verifyToken(await token({ aud: claim })).catch((error) => error);
        expect(refused.status).toBe(401);
        expect(refused.description).toBe("the token is not valid here");
      }
    });
  });

  describe("examples/mcp-server.ts with the MCP SDK client", () => {
    let mcp: ReturnType<typeof Bun.serve>;
    let resource: string;
    let metadataUrl: string;
    let handler: ReturnType<typeof createMcpServer>["fetch"];
    const clients: Client[] = [];

    beforeAll(async () => {
      mcp = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: (request) => handler(request) });
      resource = `http://127.0.0.1:${mcp.port}/mcp`;
      metadataUrl = `http://127.0.0.1:${mcp.port}/.well-known/oauth-protected-resource/mcp`;
      // What `token-authority resources add <resource> --scope "read write"` does: the resource and its client.
      const [added, registered] = await admin(t, "POST", "/resources", { resource, scopes: ["read", "write"] });
      expect(added.status).toBe(201);
      const { verifier, scopes } = mcpServerFromEnv({
        TA_ISSUER: issuer,
        MCP_CLIENT_ID: registered.client_id,
        MCP_CLIENT_SECRET: registered.client_secret,
        MCP_RESOURCE: resource,
      });
      verifiers.push(verifier);
      await verifier.ready();
      handler = createMcpServer(verifier, { scopes }).fetch;
    });
    afterAll(async () => {
      for (const client of clients) await client.close();
      await mcp.stop(true);
    });

    /** An access token for the MCP server from the token endpoint (client_credentials, RFC 8707 resource). */
    async function tokenFor(scope: string): Promise<string> {
      const [res, body] = await post(t, "/oauth/token", { grant_type: "client_credentials", scope, resource }, agent.auth.headers);
      expect(res.status).toBe(200);
      return body.access_token;
    }

    /** An SDK client over real HTTP with this bearer token (or an auth provider), keeping every response it saw. */
    async function connect(auth: { token: string } | { provider: OAuthClientProvider }) {
      const responses: Response[] = [];
      const transport = new StreamableHTTPClientTransport(new URL(resource), {
        ...("token" in auth ? { requestInit: { headers: bearer(auth.token) } } : { authProvider: auth.provider }),
        fetch: async (url, init) => {
          const res = await fetch(url, init);
          responses.push(res);
          return res;
        },
      });
      const client = new Client({ name: "mcp-resource-server.test", version: "0.0.0" });
      clients.push(client);
      await client.connect(transport);
      return { client, responses };
    }

    const textOf = (result: Awaited<ReturnType<Client["callTool"]>>) => JSON.parse((result.content as Array<{ text: string }>)[0]!.text);
    const lastRefusal = (responses: Response[]) => responses.findLast((res) => res.status === 401 || res.status === 403)!;

    test("lists its tools and answers whoami with the token's subject, client and scope", async () => {
      const { client } = await connect({ token: await tokenFor("read") });
      const { tools } = await client.listTools();
      expect(tools.map((tool) => tool.name)).toEqual(["whoami", "add_note"]);
      expect(textOf(await client.callTool({ name: "whoami", arguments: {} }))).toEqual({
        sub: agent.client.clientId,
        client_id: agent.client.clientId,
        scope: "read",
      });
    });

    test("answers add_note with a read-only token 403 insufficient_scope asking for read write", async () => {
      const { client, responses } = await connect({ token: await tokenFor("read") });
      const refused = await client.callTool({ name: "add_note", arguments: { text: "hello" } }).catch((error) => error);
      expect(refused).toBeInstanceOf(StreamableHTTPError);
      expect(refused.code).toBe(403);
      expect(lastRefusal(responses).headers.get("www-authenticate")).toBe(
        `Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="read write", resource_metadata="${metadataUrl}"`,
      );
      const { client: writer } = await connect({ token: await tokenFor("read write") });
      expect(textOf(await writer.callTool({ name: "add_note", arguments: { text: "hello" } }))).toEqual({ notes: 1 });
    });

    test("refuses a token revoked at the authorization server with 401 and resource_metadata", async () => {
      const accessToken = await tokenFor("read");
      const { client, responses } = await connect({ token: accessToken });
      expect(textOf(await client.callTool({ name: "whoami", arguments: {} })).sub).toBe(agent.client.clientId);
      const [revoked] = await post(t, "/oauth/revoke", { token: accessToken }, agent.auth.headers);
      expect(revoked.status).toBe(200);
      await until(async () => {
        const outcome = await client.callTool({ name: "whoami", arguments: {} }).catch((error) => error);
        return outcome instanceof StreamableHTTPError && outcome.code === 401;
      });
      expect(lastRefusal(responses).headers.get("www-authenticate")).toBe(
        `Bearer realm="api", error="invalid_token", error_description="the token has been revoked", scope="read", resource_metadata="${metadataUrl}"`,
      );
    });

    test("the SDK finds the metadata from the resource URL, as published", async () => {
      expect(await discoverOAuthProtectedResourceMetadata(resource)).toEqual({
        resource,
        authorization_servers: [issuer],
        scopes_supported: ["read"],
        bearer_methods_supported: ["header"],
        resource_name: "TokenAuthority example MCP server",
      });
    });

    test("the SDK's own auth flow goes from the 401's resource_metadata to a token for this resource", async () => {
      // client_credentials through the metadata: PRM → authorization_servers → RFC 8414 → token
      // endpoint with resource= (a token for another audience would be refused here).
      const machine = await createClient(t, "confidential"); // scope "read write"; notes of its own
      const provider = new ClientCredentialsProvider({ clientId: machine.client.clientId, clientSecret: machine.secret!, expectedIssuer: issuer });
      const { client, responses } = await connect({ provider });
      expect(textOf(await client.callTool({ name: "whoami", arguments: {} }))).toEqual({
        sub: machine.client.clientId,
        client_id: machine.client.clientId,
        scope: "read write",
      });
      expect(textOf(await client.callTool({ name: "add_note", arguments: { text: "hello" } }))).toEqual({ notes: 1 });
      const seen = responses.map((res) => `${res.status} ${new URL(res.url).pathname}`);
      expect(seen.slice(0, 4)).toEqual(["401 /mcp", "200 /.well-known/oauth-protected-resource/mcp", "200 /.well-known/oauth-authorization-server", "200 /oauth/token"]);
    });

    test("refuses a request from another origin (DNS rebinding) and answers GET 405", async () => {
      const headers = { ...bearer(await tokenFor("read")), "content-type": "application/json", accept: "application/json, text/event-stream" };
      const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
      const foreign = await fetch(resource, { method: "POST", headers: { ...headers, origin: "http://evil.example" }, body });
      expect(foreign.status).toBe(403);
      const same = await fetch(resource, { method: "POST", headers: { ...headers, origin: new URL(resource).origin }, body });
      expect(same.status).toBe(200);
      expect((await same.json()).result.tools).toHaveLength(2);
      const stream = await fetch(resource, { headers });
      expect(stream.status).toBe(405);
      expect(stream.headers.get("allow")).toBe("POST");
    });
  });
});
