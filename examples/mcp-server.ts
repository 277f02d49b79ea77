// An example MCP server (Model Context Protocol, Streamable HTTP) whose tools need TokenAuthority
// access tokens: the resource-server library verifies them in feed mode (a revocation is honoured
// within milliseconds), publishes the RFC 9728 metadata its challenges point at, and answers
// 403 insufficient_scope when a tool needs a scope the token lacks, so that the client steps up.
//
//   TA_ISSUER=http://localhost:3000 MCP_CLIENT_ID=... MCP_CLIENT_SECRET=... bun examples/mcp-server.ts
//
// MCP_CLIENT_ID/SECRET are the confidential client that
// `token-authority resources add http://localhost:4200/mcp --scope "read write"` prints.
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import type { CallToolResult, Tool as ToolDefinition } from "@modelcontextprotocol/sdk/types.js";
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import type { AccessTokenClaims, AccessTokenVerifier } from "@token-authority/resource-server";
import { createAccessTokenVerifier, protect } from "@token-authority/resource-server";

export const DEFAULT_RESOURCE = "http://localhost:4200/mcp";

interface Tool {
  description: string;
  /** The scopes a call needs: checked over HTTP before the request reaches the SDK (a 403 there is what makes a client step up). */
  scopes: readonly string[];
  inputSchema: ToolDefinition["inputSchema"];
  call(args: Record<string, unknown>, auth: AuthInfo): CallToolResult;
}

export interface McpServerOptions {
  /** What every request needs: what the metadata lists and a 401 asks for. Default ["read"]. */
  scopes?: readonly string[];
}

const asText = (value: unknown): CallToolResult => ({ content: [{ type: "text", text: JSON.stringify(value) }] });

const jsonResponse = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  Response.json(body, { status, headers: { "Cache-Control": "no-store", ...headers } });

/** The bearer token of a request the verifier accepted (RFC 6750 §2.1). */
const bearerToken = (request: Request) => request.headers.get("authorization")!.trim().split(/ +/)[1]!;

/**
 * The MCP endpoint at the path of the verifier's resource (`/mcp`), and its metadata at
 * `/.well-known/oauth-protected-resource/mcp`, as one fetch handler. Stateless: each POST gets a
 * server and a transport of its own, and the token's claims as the SDK's `authInfo`.
 */
export function createMcpServer(verifier: AccessTokenVerifier, options: McpServerOptions = {}) {
  const scopes = options.scopes ?? ["read"];
  const resource = new URL(verifier.resourceMetadata.resource);
  const notes: Array<{ owner: string; text: string }> = [];
  // One table serves tools/list, tools/call and the scope check; inputs are plain JSON Schema.
  const tools = new Map<string, Tool>([
    [
      "whoami",
      {
        description: "Who the access token speaks for: its subject, client and scope",
        scopes: ["read"],
        inputSchema: { type: "object", properties: {} },
        call: (_args, auth) => asText({ sub: auth.extra?.sub, client_id: auth.clientId, scope: auth.scopes.join(" ") }),
      },
    ],
    [
      "add_note",
      {
        description: "Adds a note for the token's subject; answers how many it has",
        scopes: ["write"],
        inputSchema: { type: "object", properties: { text: { type: "string", minLength: 1, maxLength: 1000 } }, required: ["text"] },
        call(args, auth) {
          if (typeof args.text !== "string" || args.text.length === 0 || args.text.length > 1000) {
            throw new McpError(ErrorCode.InvalidParams, "text is a string of 1 to 1000 characters");
          }
          const owner = String(auth.extra?.sub);
          notes.push({ owner, text: args.text });
          return asText({ notes: notes.filter((note) => note.owner === owner).length });
        },
      },
    ],
  ]);

  /** The scopes a POST needs: the server's own and those of every tool its message(s) call. */
  function scopesOf(body: unknown): string[] {
    const messages = (Array.isArray(body) ? body : [body]) as Array<{ method?: unknown; params?: { name?: unknown } } | null>;
    const calls = messages.filter((message) => message?.method === "tools/call");
    return [...scopes, ...calls.flatMap((message) => tools.get(String(message?.params?.name))?.scopes ?? [])];
  }

  function mcpServer(): McpServer {
    const server = new McpServer({ name: "token-authority-example", version: "0.1.0" }, { capabilities: { tools: {} } });
    server.server.setRequestHandler(ListToolsRequestSchema, () => ({
      tools: [...tools].map(([name, tool]) => ({ name, description: tool.description, inputSchema: tool.inputSchema })),
    }));
    server.server.setRequestHandler(CallToolRequestSchema, (request, extra) => {
      const tool = tools.get(request.params.name);
      if (!tool) throw new McpError(ErrorCode.InvalidParams, `no tool named ${request.params.name}`);
      if (!extra.authInfo) throw new McpError(ErrorCode.InvalidRequest, "no access token");
      return tool.call(request.params.arguments ?? {}, extra.authInfo);
    });
    return server;
  }

  const authInfoOf = (request: Request, claims: AccessTokenClaims): AuthInfo => ({
    token: bearerToken(request),
    clientId: claims.client_id,
    scopes: claims.scope?.split(" ").filter(Boolean) ?? [],
    expiresAt: claims.exp,
    resource,
    extra: { sub: claims.sub },
  });

  const fetch = protect(
    verifier,
    async (request, claims) => {
      if (new URL(request.url).pathname !== resource.pathname) return jsonResponse(404, { error: "not_found" });
      // MCP Streamable HTTP: "If the Origin header is present and invalid, servers MUST respond
      // with HTTP 403 Forbidden" (DNS rebinding).
      const origin = request.headers.get("origin");
      if (origin !== null && origin !== resource.origin) return jsonResponse(403, { error: "forbidden", error_description: "Origin not allowed" });
      // Stateless: no stream to GET, no session to DELETE.
      if (request.method !== "POST") {
        return jsonResponse(405, { jsonrpc: "2.0", error: { code: -32000, message: "Method not allowed." }, id: null }, { Allow: "POST" });
      }
      verifier.requireScopes(claims, scopesOf(await request.clone().json().catch(() => undefined)));
      const server = mcpServer();
      const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      await server.connect(transport);
      try {
        return await transport.handleRequest(request, { authInfo: authInfoOf(request, claims) });
      } finally {
        await server.close();
      }
    },
    { scopes },
  );
  return { fetch };
}

/** The verifier (feed mode) and the settings the example runs with, from the environment. */
export function mcpServerFromEnv(env: Record<string, string | undefined>) {
  const issuer = env.TA_ISSUER;
  const clientId = env.MCP_CLIENT_ID;
  const clientSecret = env.MCP_CLIENT_SECRET;
  if (!issuer || !clientId || !clientSecret) throw new Error("set TA_ISSUER, MCP_CLIENT_ID and MCP_CLIENT_SECRET");
  // Where the authorization server is reached, if not at its issuer URL.
  const base = (env.TA_URL || issuer).replace(/\/$/, "");
  const scopes = (env.MCP_SCOPES || "read").split(" ").filter(Boolean);
  const resource = env.MCP_RESOURCE || DEFAULT_RESOURCE;
  const verifier = createAccessTokenVerifier({
    issuer,
    audience: resource,
    jwksUri: `${base}/.well-known/jwks.json`,
    revocation: { mode: "feed", url: `${base}/oauth/revocations`, clientId, clientSecret, onError: (error) => console.error(`revocation feed: ${error}`) },
    resource: { scopes, name: "TokenAuthority example MCP server" },
  });
  // Served on the resource's own port unless told otherwise.
  const port = Number(env.MCP_PORT || new URL(resource).port || 4200);
  return { verifier, scopes, port, hostname: env.MCP_HOST || "localhost" };
}

if (import.meta.main) {
  const { verifier, scopes, port, hostname } = mcpServerFromEnv(process.env);
  await verifier.ready();
  const server = Bun.serve({ port, hostname, fetch: createMcpServer(verifier, { scopes }).fetch });
  console.log(`MCP server for ${verifier.resourceMetadata.resource} on ${server.url}`);
}
