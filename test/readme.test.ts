// The README's walk-throughs, run as a user pastes them: every ```sh block of "First five
// minutes" (but one preceded by `<!-- readme-test: skip … -->`) and of "Protecting an MCP server"
// in one bash each, in order, against the compiled executable in an empty directory, on free
// ports instead of 3000 and 4200.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./helpers/binary.ts";
import { parseJson, shellBlocks, useWalkthroughDirs, walk } from "./helpers/walkthrough.ts";

const README = join(import.meta.dir, "..", "README.md");
const SECTION = "First five minutes";

describe("README: First five minutes", () => {
  const blocks = shellBlocks(readFileSync(README, "utf8"), SECTION);
  const run = blocks.filter((block) => !block.skipped);
  const dirs = useWalkthroughDirs();

  test("the section holds the walk-through, on the default port", () => {
    expect(run.length).toBeGreaterThanOrEqual(6);
    expect(blocks.filter((block) => block.skipped).map((block) => block.code)).toEqual(["bun install && bun run build"]);
    const script = run.map((block) => block.code).join("\n");
    expect(script).toContain("./dist/token-authority");
    expect(script).toContain("localhost:3000");
  });

  test("registers a client, mints a token, introspects it active, revokes it, introspects it inactive", async () => {
    const port = freePort();
    const { outputs, vars, diagnostics } = await walk(run, dirs().dir, dirs().out, { "localhost:3000": `localhost:${port}` }, ["CLIENT_ID", "ACCESS_TOKEN", "TA_PID"]);
    const outputOf = (needle: string) => run.flatMap((block, i) => (block.code.includes(needle) ? [outputs[i]!] : []));
    const json = (output: string) => parseJson(output, diagnostics);

    expect(json(outputOf("/readyz")[0]!)).toEqual({ status: "ready", database: "pglite" });

    const registered = json(outputOf("clients create")[0]!);
    expect(registered).toMatchObject({ client_id: vars.CLIENT_ID, grant_types: ["client_credentials"] });
    expect(registered.client_secret.length).toBeGreaterThanOrEqual(43);

    const tokens = json(outputOf("/oauth/token")[0]!);
    expect(tokens).toMatchObject({ token_type: "Bearer", scope: "read", access_token: vars.ACCESS_TOKEN });
    expect(vars.ACCESS_TOKEN!.split(".")).toHaveLength(3);

    const introspections = outputOf("/oauth/introspect").map(json);
    expect(introspections).toHaveLength(2);
    expect(introspections[0]).toMatchObject({ active: true, client_id: vars.CLIENT_ID, scope: "read", token_type: "Bearer" });
    expect(outputOf("/oauth/revoke")).toEqual(["200"]);
    expect(introspections[1]).toEqual({ active: false });

    // The last block stopped the server gracefully: it released the data directory's lock.
    expect(existsSync(join(dirs().dir, "data", "token-authority.lock"))).toBe(false);
    expect(() => process.kill(Number(vars.TA_PID), 0)).toThrow();
  }, 60_000);
});

describe("README: Protecting an MCP server", () => {
  const blocks = shellBlocks(readFileSync(README, "utf8"), "Protecting an MCP server");
  const dirs = useWalkthroughDirs({ examples: true });

  test("three commands protect the MCP server: its metadata names this server, a request without a token gets the challenge", async () => {
    expect(blocks.length).toBe(6);
    const [start, add, serve] = blocks.map((block) => block.code);
    expect([start, add, serve].every((code) => code!.split("\n").length === 1)).toBe(true);
    const port = freePort();
    const mcpPort = freePort();
    const { outputs, vars, diagnostics } = await walk(
      blocks,
      dirs().dir,
      dirs().out,
      { "localhost:3000": `localhost:${port}`, "localhost:4200": `localhost:${mcpPort}` },
      ["MCP", "TA_PID", "MCP_PID"],
    );
    const resource = parseJson(vars.MCP!, diagnostics);
    expect([resource.resource, resource.scopes, typeof resource.client_id, typeof resource.client_secret]).toEqual([
      `http://localhost:${mcpPort}/mcp`,
      ["read", "write"],
      "string",
      "string",
    ]);
    // The example MCP server, in the background, prints one line when it listens.
    const printed = outputs.join("\n").split("\n").filter((line) => line.startsWith("MCP server for "));
    expect(printed).toEqual([`MCP server for http://localhost:${mcpPort}/mcp on http://localhost:${mcpPort}/`]);
    const [metadata, challenge] = outputs[3]!.split("\n").filter((line) => !line.startsWith("MCP server for ")).join("\n").split(/\n(?=WWW-Authenticate)/i);
    expect(parseJson(metadata!, diagnostics)).toEqual({
      resource: `http://localhost:${mcpPort}/mcp`,
      authorization_servers: [`http://localhost:${port}`],
      scopes_supported: ["read"],
      bearer_methods_supported: ["header"],
      resource_name: "TokenAuthority example MCP server",
    });
    expect(challenge!.trim()).toBe(
      `WWW-Authenticate: Bearer realm="api", scope="read", resource_metadata="http://localhost:${mcpPort}/.well-known/oauth-protected-resource/mcp"`,
    );
    expect(outputs[4]).toBe("alice");
    expect(existsSync(join(dirs().dir, "data", "token-authority.lock"))).toBe(false);
    for (const pid of [vars.TA_PID, vars.MCP_PID]) expect(() => process.kill(Number(pid), 0)).toThrow();
  }, 60_000);
});
