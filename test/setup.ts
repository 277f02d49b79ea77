// Preloaded by bunfig.toml: a default timeout that fits PGlite's start on 2 busy cores (Bun
// ignores bunfig's [test] timeout), and dropping the per-run PostgreSQL template at the end.
import { afterAll, setDefaultTimeout } from "bun:test";
import { dropTemplate } from "./helpers/db.ts";

setDefaultTimeout(30_000);

afterAll(async () => {
  await dropTemplate();
});
