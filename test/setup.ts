// Preloaded by bunfig.toml: drops the per-run PostgreSQL template database at the end.
import { afterAll } from "bun:test";
import { dropTemplate } from "./helpers/db.ts";

afterAll(async () => {
  await dropTemplate();
});
