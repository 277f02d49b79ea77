// Observability: request ids, one log line per request, Prometheus metrics by route pattern,
// revocation outcomes, database errors.
import { describe, expect, test } from "bun:test";
import { DrizzleQueryError } from "drizzle-orm";
import { createClient, mintCodeSession, post, request, useTestApp } from "./helpers/app.ts";
import type { TestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";

/** The value of one sample of the exposition, 0 when absent. */
async function sample(t: TestApp, name: string, labels: Record<string, string> = {}): Promise<number> {
  const [res, text] = await request(t, "GET", "/metrics");
  expect(res.status).toBe(200);
  for (const line of (text as string).split("\n")) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return 0;
}

const requestLines = (t: TestApp) =>
  t.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.event === "http.request");

describe.each(backends)("observability [%s]", (backend) => {
  const ready = useTestApp(backend);

  test("every response carries a request id, also on 404, 405 and validation errors", async () => {
    const t = await ready();
    const ids = new Set<string>();
    for (const [method, path] of [["GET", "/healthz"], ["GET", "/nope"], ["GET", "/oauth/revoke"], ["POST", "/oauth/revoke"]] as const) {
      const [res] = await request(t, method, path, method === "POST" ? { form: {} } : {});
      const id = res.headers.get("x-request-id");
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      ids.add(id!);
    }
    expect(ids.size).toBe(4);
  });

  test("keeps a well-formed incoming X-Request-Id and replaces a malformed one", async () => {
    const t = await ready();
    const [kept] = await request(t, "GET", "/healthz", { headers: { "x-request-id": "lb-1234567890" } });
    expect(kept.headers.get("x-request-id")).toBe("lb-1234567890");
    const [replaced] = await request(t, "GET", "/healthz", { headers: { "x-request-id": "bad id\" with spaces" } });
    expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("logs one line per request with the route pattern, never the query string", async () => {
    const t = await ready();
    const before = requestLines(t).length;
    const [res] = await request(t, "GET", "/healthz?secret=hunter2&token=abc");
    const lines = requestLines(t).slice(before);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: "info",
      method: "GET",
      route: "/healthz",
      status: 200,
      request_id: res.headers.get("x-request-id"),
    });
    expect(typeof lines[0]!.duration_ms).toBe("number");
    expect(JSON.stringify(lines[0])).not.toContain("hunter2");
    const [missing] = await request(t, "GET", "/no/such/path?x=1");
    expect(missing.status).toBe(404);
    expect(requestLines(t).at(-1)).toMatchObject({ route: "unmatched", status: 404 });
  });

  test("domain events carry the request id of the request that caused them", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const [res] = await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
    expect(res.status).toBe(200);
    const id = res.headers.get("x-request-id");
    const events = t.logs.map((line) => JSON.parse(line)).filter((e) => e.request_id === id).map((e) => e.event);
    expect(events).toEqual(["token.revocation.requested", "token.revocation.completed", "http.request"]);
  });

  test("counts requests and latency by route pattern and status", async () => {
    const t = await ready();
    const labels = { method: "GET", route: "/healthz", status: "200" };
    const before = await sample(t, "ta_http_requests_total", labels);
    const histogramBefore = await sample(t, "ta_http_request_duration_seconds_count", labels);
    await request(t, "GET", "/healthz");
    await request(t, "GET", "/healthz?x=y");
    expect(await sample(t, "ta_http_requests_total", labels)).toBe(before + 2);
    expect(await sample(t, "ta_http_request_duration_seconds_count", labels)).toBe(histogramBefore + 2);
    await request(t, "GET", "/random-path-1234");
    const [, text] = await request(t, "GET", "/metrics");
    expect(text).not.toContain("random-path-1234");
    expect(await sample(t, "ta_http_requests_total", { route: "unmatched", status: "404" })).toBeGreaterThanOrEqual(1);
    // The scrape is itself a request in flight while it is answered.
    expect(await sample(t, "ta_http_requests_in_flight")).toBeGreaterThanOrEqual(1);
  });

  test("counts revocations by outcome", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const other = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const count = (outcome: string) => sample(t, "ta_revocations_total", { outcome });
    const before = Object.fromEntries(
      await Promise.all(["revoked", "already_revoked", "other_client", "undecodable"].map(async (o) => [o, await count(o)] as const)),
    );
    await post(t, "/oauth/revoke", { token: s.accessToken }, other.auth.headers);
    await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
    await post(t, "/oauth/revoke", { token: s.refreshToken! }, c.auth.headers);
    const [bad] = await post(t, "/oauth/revoke", { token: "not-a-jwt" }, c.auth.headers);
    expect(bad.status).toBe(400);
    expect(await count("other_client")).toBe(before.other_client! + 1);
    expect(await count("revoked")).toBe(before.revoked! + 1);
    expect(await count("already_revoked")).toBe(before.already_revoked! + 1);
    expect(await count("undecodable")).toBe(before.undecodable! + 1);
  });

  test("exposes build info, pool size and process metrics", async () => {
    const t = await ready();
    const [res, text] = await request(t, "GET", "/metrics");
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    expect(text).toMatch(/^ta_build_info\{version="\d+\.\d+\.\d+[^"]*",bun="[^"]+"\} 1$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^ta_db_pool_size \d+$/m);
  });

  test("counts a refresh-token reuse detected at the token endpoint", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const before = await sample(t, "ta_refresh_token_reuse_total");
    const refresh = () => post(t, "/oauth/token", { grant_type: "refresh_token", refresh_token: s.refreshToken! }, c.auth.headers);
    expect((await refresh())[0].status).toBe(200);
    expect(await sample(t, "ta_refresh_token_reuse_total")).toBe(before);
    expect((await refresh())[0].status).toBe(400);
    expect(await sample(t, "ta_refresh_token_reuse_total")).toBe(before + 1);
  });

  test("counts database failures and answers 503 while the database is gone", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const before = await sample(t, "ta_db_errors_total", { kind: "unavailable" });
    const original = t.database.rows;
    t.database.rows = () => Promise.reject(Object.assign(new Error("connection terminated"), { code: "57P01" }));
    try {
      const [res, body] = await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
      expect(res.status).toBe(503);
      expect(body.error).toBe("temporarily_unavailable");
    } finally {
      t.database.rows = original;
    }
    expect(await sample(t, "ta_db_errors_total", { kind: "unavailable" })).toBe(before + 1);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(true);
  });

  test("a failed query is counted and logged without its parameters", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const before = await sample(t, "ta_db_errors_total", { kind: "query" });
    const original = t.database.rows;
    const cause = Object.assign(new Error('relation "x" does not exist'), { code: "42P01" });
    t.database.rows = () => Promise.reject(new DrizzleQueryError("select ta_revoke_token($1)", ["parameter-marker-5f1c"], cause));
    const logged = t.logs.length;
    try {
      const [res, body] = await post(t, "/oauth/revoke", { token: s.accessToken }, c.auth.headers);
      expect(res.status).toBe(500);
      expect(body.error).toBe("server_error");
    } finally {
      t.database.rows = original;
    }
    expect(await sample(t, "ta_db_errors_total", { kind: "query" })).toBe(before + 1);
    const lines = t.logs.slice(logged).join("\n");
    expect(lines).toContain('relation \\"x\\" does not exist');
    expect(lines).not.toContain("parameter-marker-5f1c");
  });
});
