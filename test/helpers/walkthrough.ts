// Walk-throughs of the documentation, run as a user pastes them: the ```sh blocks of a section
// (but one preceded by `<!-- readme-test: skip … -->`), in one bash, in order, against the
// compiled executable in a directory laid out like the repository, on free ports.
import { afterAll, beforeAll } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinary, emptyDirWithBinary } from "./binary.ts";

const SKIP = /^<!--\s*readme-test:\s*skip\b[^>]*-->\s*$/;
/** The whole walk-through may take this long; past it, bash is killed and the test fails. */
const SCRIPT_TIMEOUT_MS = 40_000;

export interface Block {
  code: string;
  skipped: boolean;
}

/** The ```sh blocks between `## <title>` and the next `## ` heading. */
export function shellBlocks(markdown: string, title: string): Block[] {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => line.trim() === `## ${title}`);
  if (start < 0) throw new Error(`no "## ${title}" section`);
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

export interface Walk {
  /** What each block printed, in order. */
  outputs: string[];
  /** The shell variables named, as they stood after the last block. */
  vars: Record<string, string>;
  diagnostics: string;
}

/**
 * Runs blocks as a user pastes them into one bash, in `dir`, stopping at the first failing
 * command; `replace` swaps the documented ports for free ones. Background servers the script
 * leaves running are stopped by the trap (TA_PID, MCP_PID, RECEIVER_PID).
 */
export async function walk(blocks: Block[], dir: string, out: string, replace: Record<string, string>, names: string[]): Promise<Walk> {
  const swap = (code: string) => Object.entries(replace).reduce((text, [from, to]) => text.replaceAll(from, to), code);
  const script = [
    "set -euo pipefail",
    `trap 'for p in "\${MCP_PID:-}" "\${RECEIVER_PID:-}" "\${TA_PID:-}"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done' EXIT`,
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

export function parseJson(output: string, diagnostics: string) {
  try {
    return JSON.parse(output);
  } catch {
    throw new Error(`not JSON: ${output}\n${diagnostics}`);
  }
}

/** The README runs ./dist/token-authority from the repository root: a directory with that layout. */
export function repositoryLayout(): string {
  const fresh = emptyDirWithBinary();
  mkdirSync(join(fresh.dir, "dist"));
  renameSync(fresh.binary, join(fresh.dir, "dist", "token-authority"));
  return fresh.dir;
}

/** Whatever happened, no server outlives the test: the lock file names its pid. */
export function stopLeftovers(dir: string) {
  const lock = join(dir, "data", "token-authority.lock");
  if (existsSync(lock)) {
    try {
      process.kill(Number.parseInt(readFileSync(lock, "utf8"), 10), "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/**
 * For a describe block: the executable built, a directory laid out like the repository (with
 * `examples/` linked in when the walk-through runs one) and one for the walk's output; both
 * removed after the block, and any server the walk left running stopped.
 */
export function useWalkthroughDirs(options: { examples?: boolean } = {}): () => { dir: string; out: string } {
  const dirs = { dir: "", out: "" };
  beforeAll(async () => {
    await buildBinary();
    dirs.dir = repositoryLayout();
    // `bun examples/….ts` runs the repository's example (which resolves its packages there).
    if (options.examples) symlinkSync(join(import.meta.dir, "..", "..", "examples"), join(dirs.dir, "examples"));
    dirs.out = mkdtempSync(join(tmpdir(), "ta-walk-out-"));
  }, 180_000);
  afterAll(() => {
    stopLeftovers(dirs.dir);
    if (dirs.dir) rmSync(dirs.dir, { recursive: true, force: true });
    if (dirs.out) rmSync(dirs.out, { recursive: true, force: true });
  });
  return () => dirs;
}
