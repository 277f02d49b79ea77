// No log line ever carries a token, secret, password or Authorization header. test/setup.ts
// scans every line of the whole run after the last file; this file checks the scanner itself
// and scans the lines of traffic built to tempt a leak.
import { describe, expect, test } from "bun:test";
import { allLogLines, basic, createClient, issuedSecrets, mintCodeSession, post, request, useTestApp } from "./helpers/app.ts";
import { findLeaks } from "./helpers/log-scan.ts";

const JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl";

describe("the log scanner", () => {
  test.each([
    ["a JWT in a field", JSON.stringify({ event: "x", detail: `token ${JWT}` })],
    ["a Basic header value", JSON.stringify({ event: "x", header: "Basic dXNlcjpwYXNzd29yZA==" })],
    ["a Bearer header value", "plain text Bearer abcdefghijkl"],
    ["a password field", JSON.stringify({ event: "x", password: "hunter22" })],
    ["a nested secret field", JSON.stringify({ event: "x", body: { client_secret: "s" } })],
    ["an issued secret anywhere", JSON.stringify({ event: "x", note: "the-issued-secret-value" })],
  ])("flags %s", (_name, line) => {
    expect(findLeaks([line], ["the-issued-secret-value"])).toHaveLength(1);
  });

  test("passes identifiers and outcomes", () => {
    const line = JSON.stringify({ event: "token.revocation.completed", client_id: "abc", session_id: "uuid", outcome: "revoked", token_type_hint: null });
    expect(findLeaks([line], ["the-issued-secret-value"])).toEqual([]);
  });
});

describe("log lines of credential-heavy traffic", () => {
  const ready = useTestApp("pglite");

  test("contain no token, secret or Authorization header", async () => {
    const t = await ready();
    const from = allLogLines.length;
    const c = await createClient(t, "confidential");
    expect(issuedSecrets.has(c.secret!)).toBe(true);
    const s = await mintCodeSession(t, c);
    await post(t, "/oauth/revoke", { token: s.accessToken, token_type_hint: "access_token" }, c.auth.headers);
    await post(t, "/oauth/revoke", { token: s.refreshToken!, client_id: c.client.clientId, client_secret: c.secret! });
    await post(t, "/oauth/revoke", { token: s.refreshToken! }, { authorization: basic(c.client.clientId, `${c.secret}x`) });
    await post(t, "/oauth/revoke", `token=${s.accessToken}&token=${s.accessToken}`, c.auth.headers);
    await post(t, "/oauth/revoke", { token: `${s.accessToken.slice(0, -4)}AAAA` }, c.auth.headers);
    await request(t, "GET", `/healthz?access_token=${s.accessToken}`, { headers: { authorization: `Bearer ${s.accessToken}` } });
    const lines = allLogLines.slice(from);
    expect(lines.length).toBeGreaterThan(10);
    expect(findLeaks(lines, issuedSecrets)).toEqual([]);
  });
});
