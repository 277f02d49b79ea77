// Real clients nobody here wrote, against the compiled executable, on both backends: the official
// MCP TypeScript SDK end to end (401 → resource metadata → server metadata → a client ID metadata
// document served over loopback https, and separately dynamic registration → PKCE → sign-in and
// consent → tool call → refresh → revocation → 401 with resource_metadata → re-authorization),
// and openid-client v6 (discovery, registration, code + PKCE with the iss check, refresh,
// introspection, revocation).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js";
import { auth, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import * as oidc from "openid-client";
import { createAccessTokenVerifier } from "@token-authority/resource-server";
import type { AccessTokenVerifier } from "@token-authority/resource-server";
import { createMcpServer } from "../examples/mcp-server.ts";
import { Agent, authorizeAs, pkce } from "./helpers/agent.ts";
import type { ServerProcess } from "./helpers/binary.ts";
import { buildBinary, emptyDirWithBinary, freePort, runCli, startServer } from "./helpers/binary.ts";
import type { Backend } from "./helpers/db.ts";
import { backends, createPostgresDatabase } from "./helpers/db.ts";
import type { DocumentHost } from "./helpers/documents.ts";
import { documentFor, json, serveDocuments } from "./helpers/documents.ts";

setDefaultTimeout(60_000);

const PASSWORD = "correct horse battery staple";

/** The SDK's client side of OAuth, kept in memory; redirects are recorded, not followed. */
class Provider implements OAuthClientProvider {
  client: OAuthClientInformationMixed | undefined;
  saved: OAuthTokens | undefined;
  verifier = "";
  authorizationUrls: URL[] = [];
  constructor(
    readonly redirectUrl: string,
    readonly clientMetadata: OAuthClientMetadata,
    readonly clientMetadataUrl?: string,
  ) {}
  clientInformation = () => this.client;
  saveClientInformation = (info: OAuthClientInformationMixed) => void (this.client = info);
  tokens = () => this.saved;
  saveTokens = (tokens: OAuthTokens) => void (this.saved = tokens);
  redirectToAuthorization = (url: URL) => void this.authorizationUrls.push(url);
  saveCodeVerifier = (verifier: string) => void (this.verifier = verifier);
  codeVerifier = () => this.verifier;
  invalidateCredentials(scope: "all" | "client" | "tokens" | "verifier" | "discovery") {
    if (scope === "all" || scope === "tokens") this.saved = undefined;
    if (scope === "all" || scope === "client") this.client = undefined;
  }
}

interface Setup {
  server: ServerProcess;
  issuer: string;
  documents: DocumentHost;
  mcpUrl: string;
  verifier: AccessTokenVerifier;
  stopMcp(): void;
  /** WWW-Authenticate of every 401 the MCP server sent. */
  challenges: string[];
  userId: string;
  dropDatabase?: () => Promise<void>;
}

async function setUp(backend: Backend): Promise<Setup> {
  await buildBinary();
  const documents = serveDocuments({ https: true });
  const { dir } = emptyDirWithBinary();
  const database = backend === "postgres" ? await createPostgresDatabase() : undefined;
  const port = freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env = {
    TA_ISSUER: issuer,
    TA_DATA_DIR: `${dir}/data`,
    ...(database ? { DATABASE_URL: database.url } : {}),
    TA_OUTBOUND_ALLOW_HOSTS: documents.host,
    // The document host's self-signed certificate: trusted like a CA the operator adds.
    NODE_EXTRA_CA_CERTS: documents.caFile!,
  };
  const server = await startServer(dir, env, ["--port", String(port)]);
  const user = await runCli(dir, ["users", "create", "mcp-user", "--password-stdin"], env, `${PASSWORD}\n`);
  expect(user.code).toBe(0);
  const mcpPort = freePort();
  const mcpUrl = `http://127.0.0.1:${mcpPort}/mcp`;
  // The README's second command: the MCP server is a resource, with a client of its own.
  const added = await runCli(dir, ["resources", "add", mcpUrl, "--scope", "read write"], env);
  expect(added.code).toBe(0);
  const resource = JSON.parse(added.stdout);
  expect([resource.resource, resource.scopes, typeof resource.client_id, typeof resource.client_secret]).toEqual([mcpUrl, ["read", "write"], "string", "string"]);
  const verifier = createAccessTokenVerifier({
    issuer,
    audience: mcpUrl,
    revocation: { mode: "feed", clientId: resource.client_id, clientSecret: resource.client_secret },
    resource: { scopes: ["read"] },
  });
  await verifier.ready();
  const challenges: string[] = [];
  const mcp = createMcpServer(verifier, { scopes: ["read"] });
  const http = Bun.serve({
    hostname: "127.0.0.1",
    port: mcpPort,
    async fetch(request) {
      const response = await mcp.fetch(request);
      if (response.status === 401) challenges.push(response.headers.get("www-authenticate") ?? "");
      return response;
    },
  });
  return {
    server,
    issuer,
    documents,
    mcpUrl,
    verifier,
    challenges,
    userId: JSON.parse(user.stdout).id,
    stopMcp: () => void http.stop(true),
    dropDatabase: database?.drop,
  };
}

async function tearDown(s: Setup | undefined) {
  if (!s) return;
  s.verifier.close();
  s.stopMcp();
  s.documents.stop();
  await s.server.stop();
  await s.dropDatabase?.();
}

const REDIRECT = "http://127.0.0.1:8765/callback";

/** Connects an MCP client; an UnauthorizedError means the provider was sent to authorize. */
async function connect(s: Setup, provider: Provider): Promise<Client> {
  const client = new Client({ name: "interop-test", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(s.mcpUrl), { authProvider: provider }));
  return client;
}

/** Connect → 401 → the SDK's discovery and registration → the browser part → finishAuth → connected. */
async function authorizeAndConnect(s: Setup, provider: Provider): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(s.mcpUrl), { authProvider: provider });
  const before = provider.authorizationUrls.length;
  const error = await new Client({ name: "interop-test", version: "1.0.0" }).connect(transport).catch((e) => e);
  expect(error).toBeInstanceOf(UnauthorizedError);
  expect(provider.authorizationUrls.length).toBe(before + 1);
  const authorizationUrl = provider.authorizationUrls.at(-1)!;
  expect(authorizationUrl.origin + authorizationUrl.pathname).toBe(`${s.issuer}/oauth/authorize`);
  // MCP clients send the resource as the metadata names it (RFC 8707), and PKCE S256.
  expect(authorizationUrl.searchParams.get("resource")).toBe(s.mcpUrl);
  expect(authorizationUrl.searchParams.get("code_challenge_method")).toBe("S256");
  const callback = await authorizeAs(new Agent(s.issuer), authorizationUrl.toString(), "mcp-user", REDIRECT);
  // RFC 9207: the response names its issuer, exactly as the metadata does.
  expect(callback.searchParams.get("iss")).toBe(s.issuer);
  await transport.finishAuth(callback.searchParams.get("code")!);
  return connect(s, provider);
}

async function whoami(client: Client): Promise<{ sub: string; client_id: string; scope: string }> {
  const result = await client.callTool({ name: "whoami", arguments: {} });
  return JSON.parse((result.content as Array<{ text: string }>)[0]!.text);
}

/** tools/list at the MCP server with a bearer token, by hand. */
const listTools = (s: Setup, accessToken: string) =>
  fetch(s.mcpUrl, {
    method: "POST",
    headers: { authorization: `Bearer ${accessToken}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
  });

/** The MCP server refuses this access token (it is dead at the resource-server library), soon. */
async function untilRefused(s: Setup, accessToken: string) {
  const deadline = Date.now() + 3000;
  for (;;) {
    const res = await listTools(s, accessToken);
    if (res.status === 401) return res;
    if (Date.now() > deadline) throw new Error(`the MCP server still accepts the token (${res.status})`);
    await Bun.sleep(10);
  }
}

/** The whole MCP life of a client, from the first 401 to the re-authorization after a revocation. */
async function mcpLife(s: Setup, provider: Provider, expectedClientId: (provider: Provider) => string) {
  const client = await authorizeAndConnect(s, provider);
  // The first 401 named the resource metadata (RFC 9728 §5.1) and the scope the server needs.
  expect(s.challenges[0]).toBe(`Bearer realm="api", scope="read", resource_metadata="${new URL(s.mcpUrl).origin}/.well-known/oauth-protected-resource/mcp"`);
  const me = await whoami(client);
  expect(me).toEqual({ sub: s.userId, client_id: expectedClientId(provider), scope: "read" });
  const first = provider.saved!;
  expect(first.refresh_token).toEqual(expect.any(String));

  // Refresh (the SDK refreshes whenever it holds a refresh token): new tokens, the old access token dies.
  expect(await auth(provider, { serverUrl: s.mcpUrl })).toBe("AUTHORIZED");
  const second = provider.saved!;
  expect(second.access_token).not.toBe(first.access_token);
  expect(second.refresh_token).not.toBe(first.refresh_token);
  await untilRefused(s, first.access_token);
  expect((await whoami(await connect(s, provider))).sub).toBe(s.userId);

  // Revocation of the refresh token (RFC 7009) kills the family: the MCP server answers 401 with
  // resource_metadata, the SDK's refresh is refused, and it starts a new authorization.
  const revoked = await fetch(`${s.issuer}/oauth/revoke`, {
    method: "POST",
    body: new URLSearchParams({ token: second.refresh_token!, token_type_hint: "refresh_token", client_id: expectedClientId(provider) }),
  });
  expect(revoked.status).toBe(200);
  const refused = await untilRefused(s, second.access_token);
  expect(refused.headers.get("www-authenticate")).toContain(`resource_metadata="${new URL(s.mcpUrl).origin}/.well-known/oauth-protected-resource/mcp"`);
  expect(refused.headers.get("www-authenticate")).toContain('error="invalid_token"');
  const again = await authorizeAndConnect(s, provider);
  expect((await whoami(again)).sub).toBe(s.userId);
  expect(provider.saved!.access_token).not.toBe(second.access_token);
  // The SDK's refresh with the revoked family was refused quietly: no theft was reported.
  const events = s.server.lines.map((line) => JSON.parse(line));
  expect(events.filter((e) => e.event === "token.refresh.refused" && e.client_id === expectedClientId(provider))).toHaveLength(1);
  expect(events.some((e) => e.event === "security.token.theft_detected")).toBe(false);
}

describe.each(backends)("real clients against the executable [%s]", (backend) => {
  let s: Setup | undefined;
  beforeAll(async () => {
    s = await setUp(backend);
  }, 180_000);
  afterAll(() => tearDown(s));

  test("MCP SDK with a client ID metadata document: the whole life of a client", async () => {
    const documentUrl = s!.documents.url("/mcp-client.json");
    s!.documents.set("/mcp-client.json", () =>
      json(documentFor(documentUrl, { client_name: "Interop MCP client", redirect_uris: [REDIRECT] }), { "cache-control": "max-age=3600" }),
    );
    const provider = new Provider(REDIRECT, { client_name: "Interop MCP client", redirect_uris: [REDIRECT] }, documentUrl);
    await mcpLife(s!, provider, () => documentUrl);
    // The document was fetched once and served every request after from the cache.
    expect(s!.documents.hits("/mcp-client.json")).toBe(1);
    // No registration happened: the URL is the client_id.
    expect(provider.client?.client_id).toBe(documentUrl);
  });

  test("MCP SDK with dynamic client registration: the whole life of a client", async () => {
    s!.challenges.length = 0;
    const provider = new Provider(REDIRECT, {
      client_name: "Interop MCP client (DCR)",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      application_type: "native",
    } as OAuthClientMetadata);
    await mcpLife(s!, provider, (p) => p.client!.client_id);
    expect(provider.client!.client_id).not.toStartWith("http");
  });

  test("openid-client v6: discovery, registration, code + PKCE with iss, refresh, introspection, revocation", async () => {
    const options = { algorithm: "oauth2" as const, execute: [oidc.allowInsecureRequests] };
    const config = await oidc.dynamicClientRegistration(
      new URL(s!.issuer),
      { redirect_uris: [REDIRECT], grant_types: ["authorization_code", "refresh_token"], token_endpoint_auth_method: "client_secret_basic", scope: "read write" },
      undefined,
      options,
    );
    expect(config.serverMetadata().supportsPKCE()).toBe(true);
    expect(config.serverMetadata().authorization_response_iss_parameter_supported).toBe(true);
    const { verifier, challenge } = pkce();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: "read write",
      code_challenge: challenge,
      code_challenge_method: "S256",
      state,
      resource: s!.mcpUrl,
    });
    const callback = await authorizeAs(new Agent(s!.issuer), url.toString(), "mcp-user", REDIRECT);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    expect(tokens.token_type.toLowerCase()).toBe("bearer");
    expect(tokens.scope).toBe("read write");
    // A response whose iss is not this server's is refused by the client (RFC 9207).
    const forged = new URL(callback);
    forged.searchParams.set("iss", "https://evil.example");
    const refused = await oidc.authorizationCodeGrant(config, forged, { pkceCodeVerifier: verifier, expectedState: state }).catch((e) => e);
    expect(refused).toBeInstanceOf(Error);
    expect(`${refused.message} ${refused.cause?.message}`).toMatch(/"iss" \(issuer\)/);

    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    const live = await oidc.tokenIntrospection(config, refreshed.access_token);
    expect(live).toMatchObject({ active: true, client_id: config.clientMetadata().client_id, scope: "read write", sub: s!.userId, aud: s!.mcpUrl });
    expect((await oidc.tokenIntrospection(config, tokens.access_token)).active).toBe(false);
    // The token is for the MCP server: it accepts it until it is revoked.
    expect((await listTools(s!, refreshed.access_token)).status).toBe(200);
    await oidc.tokenRevocation(config, refreshed.refresh_token!, { token_type_hint: "refresh_token" });
    expect((await oidc.tokenIntrospection(config, refreshed.access_token)).active).toBe(false);
    await untilRefused(s!, refreshed.access_token);
    const refusal = await oidc.refreshTokenGrant(config, refreshed.refresh_token!).catch((e) => e);
    expect(refusal).toBeInstanceOf(oidc.ResponseBodyError);
    expect([refusal.error, refusal.error_description]).toEqual(["invalid_grant", "refresh token revoked"]);
  });
});
