// docs/configuration.md lists every environment variable src/config.ts reads: the names are
// taken from the source (env.NAME, env["NAME"], and helper calls like integer(env, "NAME", …)),
// checked against what loadConfig really reads, and looked up in the documentation's table.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../src/config.ts";

const ROOT = join(import.meta.dir, "..");
const SOURCE = readFileSync(join(ROOT, "src", "config.ts"), "utf8");
const DOCS = readFileSync(join(ROOT, "docs", "configuration.md"), "utf8");

const NAME = "[A-Z][A-Z0-9_]*";
const FORMS = [
  new RegExp(`\\benv\\??\\.(${NAME})\\b`, "g"), // env.NAME, env?.NAME
  new RegExp(`\\benv\\??\\.?\\[\\s*["'\`](${NAME})["'\`]\\s*\\]`, "g"), // env["NAME"]
  new RegExp(`\\b\\w+\\(\\s*env\\s*,\\s*["'\`](${NAME})["'\`]`, "g"), // integer(env, "NAME", …), seconds(…), list(…), any helper of that shape
];

/** Every variable name src/config.ts reads, by the forms it reads them in. */
function namesInSource(source: string): Set<string> {
  const names = new Set<string>();
  for (const form of FORMS) for (const match of source.matchAll(form)) names.add(match[1]!);
  return names;
}

/** The names loadConfig actually looks up, recorded by an environment that answers nothing. */
function namesRead(): Set<string> {
  const read = new Set<string>();
  const env = new Proxy({} as Record<string, string | undefined>, {
    get(_target, key) {
      if (typeof key === "string") read.add(key);
      return undefined;
    },
  });
  loadConfig(env);
  return read;
}

/** The names in the first cell of each row of the documentation's tables, written as `NAME`. */
function documentedNames(markdown: string): Set<string> {
  const names = new Set<string>();
  for (const line of markdown.split("\n")) {
    if (!line.startsWith("|")) continue;
    const firstCell = line.split("|")[1] ?? "";
    for (const match of firstCell.matchAll(new RegExp(`\`(${NAME})\``, "g"))) names.add(match[1]!);
  }
  return names;
}

describe("docs/configuration.md", () => {
  const inSource = namesInSource(SOURCE);
  const documented = documentedNames(DOCS);

  test("the extraction finds the variables (not zero, not a handful)", () => {
    expect(inSource.size).toBeGreaterThanOrEqual(25);
    for (const name of ["PORT", "DATABASE_URL", "TA_ISSUER", "TA_DB_POOL", "TA_INTROSPECTION_CACHE_TTL", "TA_SCOPES"]) {
      expect(inSource).toContain(name);
    }
  });

  test("the extraction misses nothing loadConfig reads", () => {
    const missed = [...namesRead()].filter((name) => !inSource.has(name));
    expect(missed).toEqual([]);
  });

  test("every variable src/config.ts reads is in the table", () => {
    const undocumented = [...inSource, ...namesRead()].filter((name) => !documented.has(name));
    expect([...new Set(undocumented)]).toEqual([]);
  });

  test("the table names no variable the server does not read", () => {
    const stale = [...documented].filter((name) => !inSource.has(name));
    expect(stale).toEqual([]);
  });
});
