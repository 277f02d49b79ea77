// The live PL/pgSQL functions are exactly the files of db/functions/: after `migrate`, what the
// database runs (pg_get_functiondef) equals each file, and no other ta_* function remains.
import { describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { functionFiles, liveFunctions } from "../scripts/function-migration.ts";
import { backends, openTestDatabase } from "./helpers/db.ts";

describe.each(backends)("db/functions [%s]", (backend) => {
  test("every function the migrations leave is defined by its file, and by nothing else", async () => {
    const database = await openTestDatabase(backend);
    try {
      const live = await liveFunctions((query) => database.rows(sql.raw(query)));
      const files = functionFiles();
      expect(files.length).toBeGreaterThanOrEqual(7);
      expect(live.map((fn) => fn.name)).toEqual(files.map((file) => file.name));
      for (const file of files) {
        const fn = live.find((candidate) => candidate.name === file.name)!;
        expect({ name: file.name, definition: fn.definition }).toEqual({ name: file.name, definition: file.definition });
      }
    } finally {
      await database.close();
    }
  });
});
