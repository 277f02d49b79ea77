import { describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { backends } from "./helpers/db.ts";
import { createClient, mintCodeSession, post, useTestApp, rotateSession } from "./helpers/app.ts";

describe.each(backends)("smoke [%s]", (backend) => {
  const ready = useTestApp(backend);
  test("revokes a refresh token", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(true);
    const [res, body] = await post(t, "/oauth/revoke", { token: s.refreshToken!, token_type_hint: "refresh_token" }, c.auth.headers);
    expect(res.status).toBe(200);
    expect(body).toBe("");
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
  });
});

describe.each(backends)("rotation smoke [%s]", (backend) => {
  const ready = useTestApp(backend);
  test("rotates once, then reuse kills the family", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const presented = s.refreshToken!;
    const first = await rotateSession(t, c.client, presented);
    expect(first.outcome).toBe("rotated");
    if (first.outcome !== "rotated") throw new Error("unreachable");
    expect((await t.services.pipeline.verify(first.tokens.accessToken)).ok).toBe(true);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(false);
    const again = await rotateSession(t, c.client, presented);
    expect(again.outcome).toBe("reuse");
    expect((await t.services.pipeline.verify(first.tokens.accessToken)).ok).toBe(false);
  });
});

describe.each(backends)("revocation notifications [%s]", (backend) => {
  const ready = useTestApp(backend);
  test("a committed revocation is announced once on ta_revocations, after the commit", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const payloads: string[] = [];
    const unlisten = await t.database.listen("ta_revocations", (payload) => payloads.push(payload));
    let local = 0;
    const off = t.services.notifier.onCommitted(() => local++);
    const sessions = await Promise.all([mintCodeSession(t, c), mintCodeSession(t, c), mintCodeSession(t, c)]);
    await Promise.all(sessions.map((s) => post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers)));
    for (let i = 0; i < 100 && payloads.length === 0; i++) await Bun.sleep(10);
    off();
    await unlisten();
    expect(local).toBe(3);
    // Coalesced: three revocations at once cost fewer NOTIFYs than revocations.
    expect(payloads.length).toBeGreaterThanOrEqual(1);
    expect(payloads.length).toBeLessThan(3);
    const [events] = await t.database.rows<{ n: number }>(sql`select count(*)::int as n from revocation_events`);
    expect(events!.n).toBe(6); // access + refresh jti of each revoked session
  });
});
