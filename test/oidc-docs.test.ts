// docs/oidc.md "Try it", run as a user pastes it (test/helpers/walkthrough.ts): the executable,
// a user with a profile, a client with logout URIs, sign-in with curl, an ID token with the
// nonce, UserInfo, RP-initiated logout back with the state, and the logout token the example
// receiver validated.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./helpers/binary.ts";
import { parseJson, shellBlocks, useWalkthroughDirs, walk } from "./helpers/walkthrough.ts";

const DOC = join(import.meta.dir, "..", "docs", "oidc.md");

describe("docs/oidc.md: Try it", () => {
  const blocks = shellBlocks(readFileSync(DOC, "utf8"), "Try it");
  const dirs = useWalkthroughDirs({ examples: true });

  test("signing in to an application and logging out of it, with the documented commands", async () => {
    const port = freePort();
    const receiverPort = freePort();
    const replace = { "localhost:3000": `localhost:${port}`, "127.0.0.1:8090": `127.0.0.1:${receiverPort}`, "receiver.ts 8090": `receiver.ts ${receiverPort}` };
    const { outputs, vars, diagnostics } = await walk(blocks, dirs().dir, dirs().out, replace, ["APP_ID", "TA_PID", "RECEIVER_PID"]);
    const outputOf = (needle: string) => outputs[blocks.findIndex((block) => block.code.includes(needle))]!;
    const json = (text: string) => parseJson(text, diagnostics);
    expect(json(outputOf("openid-configuration"))).toEqual({
      userinfo_endpoint: `http://localhost:${port}/oauth/userinfo`,
      end_session_endpoint: `http://localhost:${port}/oauth/end-session`,
      backchannel_logout_supported: true,
    });
    expect(json(outputOf("ID_TOKEN=$(jq"))).toEqual({ aud: true, nonce: true, amr: ["pwd"], claims: ["at_hash", "auth_time", "exp", "iat", "iss", "sid", "sub"] });
    expect(json(outputOf("/oauth/userinfo"))).toEqual({ name: "Alice Liddell", preferred_username: "alice", email: "alice@example.com", email_verified: true });
    expect(outputOf("decision=logout")).toBe("http://127.0.0.1:8080/signed-out?state=bye");
    expect(json(outputOf("until [ -s logouts.jsonl"))).toEqual({ same_sid: true, events: { "http://schemas.openid.net/event/backchannel-logout": {} } });
    expect(vars.APP_ID).toBeString();
    expect(() => process.kill(Number(vars.TA_PID), 0)).toThrow();
  }, 90_000);
});
