// docs/dpop.md "Try it", run as a user pastes it (test/helpers/walkthrough.ts): the executable
// with nonces required, a proof refused for want of a nonce, the retry with it, a DPoP-bound
// token whose cnf names the key, revocation without a proof.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./helpers/binary.ts";
import { parseJson, shellBlocks, useWalkthroughDirs, walk } from "./helpers/walkthrough.ts";

const DOC = join(import.meta.dir, "..", "docs", "dpop.md");

describe("docs/dpop.md: Try it", () => {
  const blocks = shellBlocks(readFileSync(DOC, "utf8"), "Try it");
  const dirs = useWalkthroughDirs({ examples: true });

  test("a DPoP-bound token with the documented commands: nonce, retry, cnf, revocation", async () => {
    const port = freePort();
    const { outputs, vars, diagnostics } = await walk(blocks, dirs().dir, dirs().out, { "localhost:3000": `localhost:${port}` }, ["CLIENT_ID", "NONCE", "TA_PID"]);
    const outputOf = (needle: string) => outputs[blocks.findIndex((block) => block.code.includes(needle))]!;
    const json = (text: string) => parseJson(text, diagnostics);
    expect(json(outputOf("first.headers"))).toEqual({ error: "use_dpop_nonce", error_description: "a DPoP nonce is required" });
    expect(vars.NONCE!.length).toBeGreaterThan(40);
    expect(json(outputOf('--nonce "$NONCE"'))).toEqual({ token_type: "DPoP", scope: "read" });
    const [jkt, introspected] = outputOf("--jkt").split("\n");
    expect(json(introspected!)).toEqual({ active: true, token_type: "DPoP", cnf: { jkt } });
    const [revoked, after] = outputOf("/oauth/revoke").split("\n");
    expect(revoked).toBe("200");
    expect(json(after!)).toEqual({ active: false });
    expect(() => process.kill(Number(vars.TA_PID), 0)).toThrow();
  }, 90_000);
});
