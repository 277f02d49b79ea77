// Preloaded by bunfig.toml: a default test timeout that fits a loaded 2-core machine (bunfig's
// `timeout` key is not read by bun test), and dropping the per-run PostgreSQL template database.
import { afterAll, setDefaultTimeout } from "bun:test";
import { dropTemplate } from "./helpers/db.ts";

setDefaultTimeout(30_000);

afterAll(async () => {
  await dropTemplate();
});
