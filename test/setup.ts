// Preloaded by bunfig.toml: a default timeout (Bun ignores bunfig's [test] timeout; and from
// here it reaches only the first test file, so useTestApp opens databases in a hook with its
// own timeout), after the whole run the scan of every log line it produced for leaked
// credentials, and dropping the per-run PostgreSQL template at the end.
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
