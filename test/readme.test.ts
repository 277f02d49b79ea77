// The README's "First five minutes", run as a user pastes it: every ```sh block of that section
// (but one preceded by `<!-- readme-test: skip … -->`) in one bash, in order, against the
// compiled executable in an empty directory, on a free port instead of 3000.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
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

describe("README: First five minutes", () => {
  const blocks = shellBlocks(readFileSync(README, "utf8"), SECTION);
  const run = blocks.filter((block) => !block.skipped);
  let dir = "";
  let out = "";

  beforeAll(async () => {
    await buildBinary();
    // The README runs ./dist/token-authority from the repository root: give it the same layout.
    const fresh = emptyDirWithBinary();
    dir = fresh.dir;
    mkdirSync(join(dir, "dist"));
    renameSync(fresh.binary, join(dir, "dist", "token-authority"));
    out = mkdtempSync(join(tmpdir(), "ta-readme-out-"));
  }, 120_000);

  afterAll(() => {
    // Whatever happened, no server outlives the test: the lock file names its pid.
    const lock = join(dir, "data", "token-authority.lock");
    if (existsSync(lock)) {
      const pid = Number.parseInt(readFileSync(lock, "utf8"), 10);
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
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
    // Harness around the README's lines (which stay as written, but for the port): stop at the
    // first failing command, and stop the server if the script ends early.
    const script = [
      "set -euo pipefail",
      `trap 'if [ -n "\${TA_PID:-}" ]; then kill "$TA_PID" 2>/dev/null || true; fi' EXIT`,
      ...run.flatMap((block, i) => [`echo '${MARK(i)}'`, block.code.replaceAll("localhost:3000", `localhost:${port}`)]),
      `echo '${MARK(run.length)}'`,
      `jq -n --arg client_id "$CLIENT_ID" --arg access_token "$ACCESS_TOKEN" --arg pid "$TA_PID" '{client_id: $client_id, access_token: $access_token, pid: $pid}'`,
    ].join("\n");
    const stdout = join(out, "stdout");
    const stderr = join(out, "stderr");
    // Files, not pipes: the background server inherits them and must not hold the test up.
    const proc = Bun.spawn(["bash", "-c", script], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", PORT: String(port) },
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

    // What each block printed, by block.
    const outputs = run.map((_, i) => text.split(MARK(i) + "\n")[1]!.split(`@@readme-block ${i + 1}@@`)[0]!.trim());
    const vars = JSON.parse(text.split(MARK(run.length) + "\n")[1]!) as { client_id: string; access_token: string; pid: string };
    const outputOf = (needle: string) => run.flatMap((block, i) => (block.code.includes(needle) ? [outputs[i]!] : []));
    const json = (output: string) => {
      try {
        return JSON.parse(output);
      } catch {
        throw new Error(`not JSON: ${output}\n${diagnostics}`);
      }
    };

    expect(json(outputOf("/readyz")[0]!)).toEqual({ status: "ready", database: "pglite" });

    const registered = json(outputOf("clients create")[0]!);
    expect(registered).toMatchObject({ client_id: vars.client_id, grant_types: ["client_credentials"] });
    expect(registered.client_secret.length).toBeGreaterThanOrEqual(43);

    const tokens = json(outputOf("/oauth/token")[0]!);
    expect(tokens).toMatchObject({ token_type: "Bearer", scope: "read", access_token: vars.access_token });
    expect(vars.access_token.split(".")).toHaveLength(3);

    const introspections = outputOf("/oauth/introspect").map(json);
    expect(introspections).toHaveLength(2);
    expect(introspections[0]).toMatchObject({ active: true, client_id: vars.client_id, scope: "read", token_type: "Bearer" });
    expect(outputOf("/oauth/revoke")).toEqual(["200"]);
    expect(introspections[1]).toEqual({ active: false });

    // The last block stopped the server gracefully: it released the data directory's lock.
    expect(existsSync(join(dir, "data", "token-authority.lock"))).toBe(false);
    expect(() => process.kill(Number(vars.pid), 0)).toThrow();
  }, 60_000);
});
