// The README's walk-throughs, run as a user pastes them: every ```sh block of "First five
// minutes" (but one preceded by `<!-- readme-test: skip … -->`) and of "Protecting an MCP server"
// in one bash each, in order, against the compiled executable in an empty directory, on free
// ports instead of 3000 and 4200.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinary, emptyDirWithBinary, freePort } from "./helpers/binary.ts";

const README = join(import.meta.dir, "..", "README.md");
const SECTION = "First five minutes";
const SKIP = /^<!--\s*readme-test:\s*skip\b[^>]*-->\s*$/;
/** The whole walk-through may take this long; past it, bash is killed and the test fails. */
const SCRIPT_TIMEOUT_MS = 40_000;

interface Block {
  code: string;
  skipped: boolean;
}

/** The ```sh blocks between `## <title>` and the next `## ` heading. */
function shellBlocks(markdown: string, title: string): Block[] {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => line.trim() === `## ${title}`);
  if (start < 0) throw new Error(`README.md has no "## ${title}" section`);
  const end = lines.findIndex((line, i) => i > start && line.startsWith("## "));
  const section = lines.slice(start + 1, end < 0 ? undefined : end);
  const blocks: Block[] = [];
  for (let i = 0; i < section.length; i++) {
    if (section[i]!.trim() !== "```sh") continue;
    const close = section.findIndex((line, j) => j > i && line.trim() === "```");
    if (close < 0) throw new Error(`an unclosed \`\`\`sh block in "${title}"`);
    const previous = section.slice(0, i).findLast((line) => line.trim() !== "");
    blocks.push({ code: section.slice(i + 1, close).join("\n"), skipped: previous !== undefined && SKIP.test(previous.trim()) });
    i = close;
  }
  return blocks;
}

const MARK = (i: number) => `@@readme-block ${i}@@`;

interface Walk {
  /** What each block printed, in order. */
  outputs: string[];
  /** The shell variables named, as they stood after the last block. */
  vars: Record<string, string>;
  diagnostics: string;
}

/**
 * Runs blocks as a user pastes them into one bash, in `dir`, stopping at the first failing
 * command; `replace` swaps the documented ports for free ones. Background servers the script
 * leaves running are stopped by the trap (TA_PID, MCP_PID).
 */
async function walk(blocks: Block[], dir: string, out: string, replace: Record<string, string>, names: string[]): Promise<Walk> {
  const swap = (code: string) => Object.entries(replace).reduce((text, [from, to]) => text.replaceAll(from, to), code);
  const script = [
    "set -euo pipefail",
    `trap 'for p in "\${MCP_PID:-}" "\${TA_PID:-}"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done' EXIT`,
    ...blocks.flatMap((block, i) => [`echo '${MARK(i)}'`, swap(block.code)]),
    `echo '${MARK(blocks.length)}'`,
    `jq -n ${names.map((name) => `--arg ${name} "\${${name}:-}"`).join(" ")} '$ARGS.named'`,
  ].join("\n");
  const stdout = join(out, "stdout");
  const stderr = join(out, "stderr");
  // Files, not pipes: the background servers inherit them and must not hold the test up.
  const proc = Bun.spawn(["bash", "-c", script], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", PORT: replace["localhost:3000"]!.split(":")[1]! },
    stdin: "ignore",
    stdout: Bun.file(stdout),
    stderr: Bun.file(stderr),
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), SCRIPT_TIMEOUT_MS);
  const code = await proc.exited;
  clearTimeout(timer);
  const text = readFileSync(stdout, "utf8");
  const diagnostics = `exit ${code}\n--- stdout\n${text}\n--- stderr\n${readFileSync(stderr, "utf8")}`;
  if (code !== 0) throw new Error(`the walk-through failed: ${diagnostics}`);
  return {
    outputs: blocks.map((_, i) => text.split(MARK(i) + "\n")[1]!.split(`@@readme-block ${i + 1}@@`)[0]!.trim()),
    vars: JSON.parse(text.split(MARK(blocks.length) + "\n")[1]!),
    diagnostics,
  };
}

function parseJson(output: string, diagnostics: string) {
  try {
    return JSON.parse(output);
  } catch {
    throw new Error(`not JSON: ${output}\n${diagnostics}`);
  }
}

/** The README runs ./dist/token-authority from the repository root: a directory with that layout. */
function repositoryLayout(): string {
  const fresh = emptyDirWithBinary();
  mkdirSync(join(fresh.dir, "dist"));
  renameSync(fresh.binary, join(fresh.dir, "dist", "token-authority"));
  return fresh.dir;
}

/** Whatever happened, no server outlives the test: the lock file names its pid. */
function stopLeftovers(dir: string) {
  const lock = join(dir, "data", "token-authority.lock");
  if (existsSync(lock)) {
    try {
      process.kill(Number.parseInt(readFileSync(lock, "utf8"), 10), "SIGKILL");
    } catch {
      // already gone
    }
  }
}

describe("README: First five minutes", () => {
  const blocks = shellBlocks(readFileSync(README, "utf8"), SECTION);
  const run = blocks.filter((block) => !block.skipped);
  let dir = "";
  let out = "";

  beforeAll(async () => {
    await buildBinary();
    dir = repositoryLayout();
    out = mkdtempSync(join(tmpdir(), "ta-readme-out-"));
  }, 120_000);

  afterAll(() => {
    stopLeftovers(dir);
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (out) rmSync(out, { recursive: true, force: true });
  });

  test("the section holds the walk-through, on the default port", () => {
    expect(run.length).toBeGreaterThanOrEqual(6);
    expect(blocks.filter((block) => block.skipped).map((block) => block.code)).toEqual(["bun install && bun run build"]);
    const script = run.map((block) => block.code).join("\n");
    expect(script).toContain("./dist/token-authority");
    expect(script).toContain("localhost:3000");
  });

  test("registers a client, mints a token, introspects it active, revokes it, introspects it inactive", async () => {
    const port = freePort();
    const { outputs, vars, diagnostics } = await walk(run, dir, out, { "localhost:3000": `localhost:${port}` }, ["CLIENT_ID", "ACCESS_TOKEN", "TA_PID"]);
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
    expect(existsSync(join(dir, "data", "token-authority.lock"))).toBe(false);
    expect(() => process.kill(Number(vars.TA_PID), 0)).toThrow();
  }, 60_000);
});

describe("README: Protecting an MCP server", () => {
  const blocks = shellBlocks(readFileSync(README, "utf8"), "Protecting an MCP server");
  let dir = "";
  let out = "";

  beforeAll(async () => {
    await buildBinary();
    dir = repositoryLayout();
    // `bun examples/mcp-server.ts` runs the repository's example (which resolves its packages there).
    symlinkSync(join(import.meta.dir, "..", "examples"), join(dir, "examples"));
    out = mkdtempSync(join(tmpdir(), "ta-readme-out-"));
  }, 120_000);

  afterAll(() => {
    stopLeftovers(dir);
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (out) rmSync(out, { recursive: true, force: true });
  });

  test("three commands protect the MCP server: its metadata names this server, a request without a token gets the challenge", async () => {
    expect(blocks.length).toBe(6);
    const [start, add, serve] = blocks.map((block) => block.code);
    expect([start, add, serve].every((code) => code!.split("\n").length === 1)).toBe(true);
    const port = freePort();
    const mcpPort = freePort();
    const { outputs, vars, diagnostics } = await walk(
      blocks,
      dir,
      out,
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
    expect(existsSync(join(dir, "data", "token-authority.lock"))).toBe(false);
    for (const pid of [vars.TA_PID, vars.MCP_PID]) expect(() => process.kill(Number(pid), 0)).toThrow();
  }, 60_000);
});
