// docs/ssf.md "Subscribe a receiver", run as a user pastes it (test/helpers/walkthrough.ts):
// the executable on the embedded database, a receiver made with the CLI, a poll stream, a
// revocation, the SET it became (decoded as the docs decode it) and its acknowledgement.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./helpers/binary.ts";
import { parseJson, shellBlocks, useWalkthroughDirs, walk } from "./helpers/walkthrough.ts";

const DOC = join(import.meta.dir, "..", "docs", "ssf.md");
const SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

describe("docs/ssf.md: Subscribe a receiver", () => {
  const blocks = shellBlocks(readFileSync(DOC, "utf8"), "Subscribe a receiver");
  const dirs = useWalkthroughDirs({ examples: false });

  test("a receiver subscribes with the documented commands, polls the SET of a revocation and acknowledges it", async () => {
    expect(blocks.filter((block) => block.skipped)).toEqual([]);
    const port = freePort();
    const issuer = `http://localhost:${port}`;
    const { outputs, vars, diagnostics } = await walk(blocks, dirs().dir, dirs().out, { "localhost:3000": `localhost:${port}` }, ["RECEIVER_ID", "APP_ID", "POLL_URL", "JTI", "TA_PID"]);
    const outputOf = (needle: string) => outputs[blocks.findIndex((block) => block.code.includes(needle))]!;
    const json = (text: string) => parseJson(text, diagnostics);

    const metadata = json(outputOf("ssf-configuration"));
    expect(metadata).toMatchObject({ spec_version: "1_0", issuer, configuration_endpoint: `${issuer}/ssf/streams`, default_subjects: "ALL" });

    const stream = json(outputOf('"description": "first receiver"'));
    expect(stream).toMatchObject({ iss: issuer, aud: vars.RECEIVER_ID, delivery: { method: "urn:ietf:rfc:8936", endpoint_url: vars.POLL_URL } });
    expect(stream.events_delivered).toContain(SESSION_REVOKED);

    expect(outputOf("/oauth/revoke")).toBe("200");
    const set = json(outputOf("@base64d"));
    expect(set).toMatchObject({
      iss: issuer,
      jti: vars.JTI,
      aud: vars.RECEIVER_ID,
      sub_id: { format: "complex", application: { format: "opaque", id: vars.APP_ID } },
      events: { [SESSION_REVOKED]: { initiating_entity: "user", reason_admin: { en: "revoked_by_client" } } },
    });
    expect(json(outputOf("jq -c ."))).toEqual({ sets: {}, moreAvailable: false });

    const listed = outputOf("ssf streams").split("\n").map(json);
    expect(listed).toEqual([{ receiver: vars.RECEIVER_ID, status: "enabled", delivery_method: "urn:ietf:rfc:8936", backlog: expect.any(Number) }]);
    expect(() => process.kill(Number(vars.TA_PID), 0)).toThrow();
  }, 90_000);
});
