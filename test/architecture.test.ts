// One home for each concern, checked: SQL is built only under db/ (the storage ports in
// db/stores/ and the database plumbing beside them); nothing under src/ imports the query
// builder or the tables, and the resource-server package imports nothing of the server.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const ROOT = join(import.meta.dir, "..");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

/** The import statements of a file that bring in values (not `import type`). */
function valueImports(source: string): string[] {
  return [...source.matchAll(/^import (?!type )[^;]*?from "([^"]+)";/gms)].map((match) => match[1]!);
}

describe("where SQL lives", () => {
  const files = sources(join(ROOT, "src"));

  test("src/ has files to check", () => {
    expect(files.length).toBeGreaterThan(50);
  });

  test("no file of src/ imports the query builder, the tables or a driver, or writes a SQL template", () => {
    const offenders = files.flatMap((file) => {
      const source = readFileSync(file, "utf8");
      const imports = valueImports(source).filter((from) => /^drizzle-orm|\/db\/schema\.ts$|^postgres$|^@electric-sql\/pglite/.test(from));
      return [...imports, ...(/\bsql`/.test(source) ? ["sql`…`"] : [])].map((what) => `${relative(ROOT, file)}: ${what}`);
    });
    expect(offenders).toEqual([]);
  });
});

describe("the resource-server package", () => {
  const dir = join(ROOT, "packages", "resource-server");
  const files = sources(join(dir, "src"));

  test("imports nothing of the server: only its own files, jose and elysia", () => {
    expect(files.length).toBeGreaterThan(5);
    const offenders = files.flatMap((file) =>
      [...readFileSync(file, "utf8").matchAll(/^(?:import|export)[^;]*?from "([^"]+)";/gms)]
        .map((match) => match[1]!)
        .filter((from) => (from.startsWith(".") ? !join(file, "..", from).startsWith(join(dir, "src")) : !["jose", "elysia"].includes(from)))
        .map((from) => `${relative(ROOT, file)}: ${from}`),
    );
    expect(offenders).toEqual([]);
  });

  test("is a publishable package whose exports name its sources", () => {
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    expect(manifest.name).toBe("@token-authority/resource-server");
    expect(manifest.private).toBeUndefined();
    for (const entry of Object.values(manifest.exports) as Array<{ types: string; bun: string }>) {
      expect(statSync(join(dir, entry.types)).isFile()).toBe(true);
      expect(statSync(join(dir, entry.bun)).isFile()).toBe(true);
    }
  });
});

