// Preloaded by bunfig.toml: after the whole run, the scan of every log line it produced for
// leaked credentials, and dropping the per-run PostgreSQL template database.
// (bunfig's `timeout` is not read by bun test, and setDefaultTimeout here would reach only the
// first file: slow set-up goes in hooks with their own timeout, see useTestApp.)
import { afterAll } from "bun:test";
import { allLogLines, issuedSecrets } from "./helpers/app.ts";
import { dropTemplate } from "./helpers/db.ts";
import { findLeaks } from "./helpers/log-scan.ts";

afterAll(async () => {
  await dropTemplate();
  // Runs once, after every test file: fails the run if any log line leaked a credential.
  const leaks = findLeaks(allLogLines, issuedSecrets);
  if (leaks.length > 0) {
    throw new Error(`log lines leak credentials (${leaks.length} of ${allLogLines.length} lines):\n${leaks.slice(0, 20).join("\n")}`);
  }
});
