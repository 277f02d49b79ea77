// Preloaded by bunfig.toml: a default test timeout that fits a loaded 2-core machine (bunfig's
// `timeout` key is not read by bun test); after the whole run, the scan of every log line it
// produced for leaked credentials; and dropping the per-run PostgreSQL template database.
import { afterAll, setDefaultTimeout } from "bun:test";
import { allLogLines, issuedSecrets } from "./helpers/app.ts";
import { dropTemplate } from "./helpers/db.ts";
import { findLeaks } from "./helpers/log-scan.ts";

setDefaultTimeout(30_000);

afterAll(async () => {
  await dropTemplate();
  // Runs once, after every test file: fails the run if any log line leaked a credential.
  const leaks = findLeaks(allLogLines, issuedSecrets);
  if (leaks.length > 0) {
    throw new Error(`log lines leak credentials (${leaks.length} of ${allLogLines.length} lines):\n${leaks.slice(0, 20).join("\n")}`);
  }
});
