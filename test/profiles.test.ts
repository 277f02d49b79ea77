// Users' profiles (OpenID Connect Core 1.0 §5.1 standard claims, set by an operator): the admin
// API patches them (null removes a claim), checks each claim, keeps concurrent patches; the CLI's
// `users set-profile` goes through it; on both backends.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../src/main.ts";
import type { TestApp } from "./helpers/app.ts";
import { admin, useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";

setDefaultTimeout(60_000);

async function newUser(t: TestApp): Promise<{ id: string; username: string }> {
  const [res, user] = await admin(t, "POST", "/users", { username: `p-${crypto.randomUUID().slice(0, 8)}`, password: "a long password" });
  expect(res.status).toBe(201);
  expect(user.profile).toEqual({});
  return user;
}

describe.each(backends)("user profiles [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("a patch sets claims, keeps the others, and null removes one", async () => {
    const t = await ready();
    const user = await newUser(t);
    const [set, body] = await admin(t, "PATCH", `/users/${user.id}/profile`, { name: "Alice Liddell", email: "alice@example.com", email_verified: true, locale: "en-GB" });
    expect(set.status).toBe(200);
    expect(body.profile).toEqual({ name: "Alice Liddell", email: "alice@example.com", email_verified: true, locale: "en-GB" });
    const [, changed] = await admin(t, "PATCH", `/users/${user.username}/profile`, { locale: null, picture: "https://example.com/alice.png" });
    expect(changed.profile).toEqual({ name: "Alice Liddell", email: "alice@example.com", email_verified: true, picture: "https://example.com/alice.png" });
    const [, fetched] = await admin(t, "GET", `/users/${user.id}`);
    expect(fetched.profile).toEqual(changed.profile);
  });

  test("two patches at once both land (the row is locked for each)", async () => {
    const t = await ready();
    const user = await newUser(t);
    await Promise.all([admin(t, "PATCH", `/users/${user.id}/profile`, { name: "A" }), admin(t, "PATCH", `/users/${user.id}/profile`, { nickname: "B" })]);
    const [, fetched] = await admin(t, "GET", `/users/${user.id}`);
    expect(fetched.profile).toEqual({ name: "A", nickname: "B" });
  });

  test.each([
    [{ shoe_size: "42" }, "is not a profile claim"],
    [{ email: "not an address" }, "email is an e-mail address"],
    [{ website: "javascript:alert(1)" }, "website is an http(s) URL"],
    [{ email_verified: true }, "email_verified needs email"],
    [{ email: "a@example.com", email_verified: "yes" }, "email_verified is true or false"],
    [{ birthdate: "3 May 1990" }, "birthdate is YYYY-MM-DD or YYYY"],
    [{ name: "" }, "name is a non-empty string"],
  ])("refuses %j: 400, nothing changed", async (change, message) => {
    const t = await ready();
    const user = await newUser(t);
    await admin(t, "PATCH", `/users/${user.id}/profile`, { name: "Kept" });
    const [res, body] = await admin(t, "PATCH", `/users/${user.id}/profile`, change);
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid_request");
    expect(body.error_description).toContain(message);
    const [, fetched] = await admin(t, "GET", `/users/${user.id}`);
    expect(fetched.profile).toEqual({ name: "Kept" });
  });

  test("an unknown user is 404", async () => {
    const t = await ready();
    const [res, body] = await admin(t, "PATCH", `/users/${crypto.randomUUID()}/profile`, { name: "Nobody" });
    expect([res.status, body.error]).toEqual([404, "not_found"]);
  });
});

test("users set-profile (the CLI, on the database directly) sets and removes claims", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ta-profile-cli-"));
  const env = { TA_DATA_DIR: join(dir, "data"), TA_LOG_LEVEL: "warn" };
  const run = async (argv: string[], stdin = "") => {
    const out: string[] = [];
    const code = await main(argv, { env, stdout: (text) => out.push(text), readStdin: async () => stdin });
    return { code, out: out.join("\n") };
  };
  try {
    expect((await run(["users", "create", "carol", "--password-stdin"], "a long password\n")).code).toBe(0);
    const set = await run(["users", "set-profile", "carol", "--set", "name=Carol", "--set", "email=carol@example.com", "--set", "email_verified=true"]);
    expect(set.code).toBe(0);
    expect(JSON.parse(set.out).profile).toEqual({ name: "Carol", email: "carol@example.com", email_verified: true });
    const removed = await run(["users", "set-profile", "carol", "--remove", "email_verified", "--remove", "email"]);
    expect(JSON.parse(removed.out).profile).toEqual({ name: "Carol" });
    expect((await run(["users", "set-profile", "carol", "--set", "noequals"])).code).toBe(2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
