// Abuse resistance: body, header, URL and parameter limits; throttling of failed client
// authentication per client id and per address; security headers on HTML only.
import { describe, expect, test } from "bun:test";
import { FailureThrottle } from "../src/throttle.ts";
import { basic, createClient, mintCodeSession, post, request, useTestApp } from "./helpers/app.ts";
import type { TestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";

const LIMITS = {
  TA_MAX_BODY_BYTES: "1024",
  TA_AUTH_FAILURE_LIMIT: "3",
  TA_AUTH_FAILURE_IP_LIMIT: "5",
  TA_AUTH_FAILURE_WINDOW: "60",
  TA_CLIENT_IP_HEADER: "x-forwarded-for",
};

function expectOAuthError(res: Response, body: any, status: number, error: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(body.error).toBe(error);
}

async function liveCount(t: TestApp): Promise<number> {
  const [row] = await t.database.rows<{ n: number }>(
    (await import("drizzle-orm")).sql`select count(*)::int as n from sessions where status = 'created'`,
  );
  return Number(row!.n);
}

describe.each(backends)("request limits [%s]", (backend) => {
  const ready = useTestApp(backend, LIMITS);

  test("refuses a body whose Content-Length exceeds TA_MAX_BODY_BYTES with 413 JSON", async () => {
    const t = await ready();
    const form = `token=${"a".repeat(2000)}`;
    const [res, body] = await request(t, "POST", "/oauth/revoke", {
      body: form,
      headers: { "content-type": "application/x-www-form-urlencoded", "content-length": String(form.length) },
    });
    expectOAuthError(res, body, 413, "payload_too_large");
  });

  test("refuses a body longer than its declared Content-Length once it exceeds the limit [in-process Request]", async () => {
    const t = await ready();
    const [res, body] = await request(t, "POST", "/oauth/revoke", {
      body: `token=${"a".repeat(2000)}`,
      headers: { "content-type": "application/x-www-form-urlencoded", "content-length": "10" },
    });
    expectOAuthError(res, body, 413, "payload_too_large");
  });

  test("refuses a body sent without Content-Length once more than the limit is read", async () => {
    const t = await ready();
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 64 * 1024) return controller.close();
        sent += 512;
        controller.enqueue(new TextEncoder().encode("a".repeat(512)));
      },
    });
    const [res, body] = await request(t, "POST", "/oauth/revoke", {
      body: stream,
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expectOAuthError(res, body, 413, "payload_too_large");
    expect(sent).toBeLessThan(64 * 1024);
  });

  test("refuses a malformed Content-Length", async () => {
    const t = await ready();
    const [res, body] = await request(t, "GET", "/healthz", { headers: { "content-length": "12abc" } });
    expectOAuthError(res, body, 400, "invalid_request");
  });

  test("refuses too many headers with 431 and an overlong URL with 414", async () => {
    const t = await ready();
    const headers = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`x-h-${i}`, "v"]));
    const [many, manyBody] = await request(t, "GET", "/healthz", { headers });
    expectOAuthError(many, manyBody, 431, "header_fields_too_large");
    const [big, bigBody] = await request(t, "GET", "/healthz", { headers: { "x-big": "v".repeat(40_000) } });
    expectOAuthError(big, bigBody, 431, "header_fields_too_large");
    const [long, longBody] = await request(t, "GET", `/healthz?q=${"x".repeat(9000)}`);
    expectOAuthError(long, longBody, 414, "uri_too_long");
  });

  test("refuses a form with too many parameters", async () => {
    const t = await ready();
    const form = Array.from({ length: 80 }, (_, i) => `p${i}=1`).join("&");
    const [res, body] = await post(t, "/oauth/revoke", form);
    expectOAuthError(res, body, 400, "invalid_request");
  });

  test("JSON responses carry no page security headers", async () => {
    const t = await ready();
    const [res] = await request(t, "GET", "/healthz");
    expect(res.headers.get("content-security-policy")).toBeNull();
    expect(res.headers.get("x-frame-options")).toBeNull();
  });
});

describe.each(backends)("client authentication throttling [%s]", (backend) => {
  const ready = useTestApp(backend, LIMITS);

  test("after the limit of failures for a client id, even the right secret gets 429 with Retry-After and nothing is revoked", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const s = await mintCodeSession(t, c);
    const from = { "x-forwarded-for": "198.51.100.1" };
    for (let i = 0; i < 3; i++) {
      const [res, body] = await post(t, "/oauth/revoke", { token: s.accessToken }, { ...from, authorization: basic(c.client.clientId, "wrong") });
      expectOAuthError(res, body, 401, "invalid_client");
    }
    const [res, body] = await post(t, "/oauth/revoke", { token: s.accessToken }, { ...from, ...c.auth.headers });
    expectOAuthError(res, body, 429, "too_many_requests");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(Number(res.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect((await t.services.pipeline.verify(s.accessToken)).ok).toBe(true);
    // Every client-authenticating endpoint shares the limit.
    for (const [method, path] of [["POST", "/oauth/introspect"], ["POST", "/oauth/token"], ["GET", "/oauth/revocations"]] as const) {
      const form: Record<string, string> = path === "/oauth/token" ? { grant_type: "client_credentials" } : { token: s.accessToken };
      const [limited] = await request(t, method, path, { ...(method === "POST" ? { form } : {}), headers: { ...from, ...c.auth.headers } });
      expect(limited.status).toBe(429);
    }
    // Another client from the same address is not affected by this client id's limit.
    const other = await createClient(t, "confidential");
    const o = await mintCodeSession(t, other);
    const [ok] = await post(t, "/oauth/revoke", { token: o.accessToken }, { ...from, ...other.auth.headers });
    expect(ok.status).toBe(200);
    expect((await t.services.pipeline.verify(o.accessToken)).ok).toBe(false);
  });

  test("client_secret_post failures count against the same client id", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const from = { "x-forwarded-for": "198.51.100.2" };
    for (let i = 0; i < 3; i++) {
      await post(t, "/oauth/revoke", { token: "x", client_id: c.client.clientId, client_secret: "wrong" }, from);
    }
    const [res] = await post(t, "/oauth/revoke", { token: "x" }, { ...from, authorization: basic(c.client.clientId, c.secret!) });
    expect(res.status).toBe(429);
  });

  test("after the limit of failures from one address, every client id from it gets 429; other addresses do not", async () => {
    const t = await ready();
    const c = await createClient(t, "confidential");
    const before = await liveCount(t);
    const from = { "x-forwarded-for": "203.0.113.9" };
    for (let i = 0; i < 5; i++) {
      const [res] = await post(t, "/oauth/revoke", { token: "x" }, { ...from, authorization: basic(`random-${i}`, "guess") });
      expect(res.status).toBe(401);
    }
    const [res] = await post(t, "/oauth/revoke", { token: "x" }, { ...from, ...c.auth.headers });
    expect(res.status).toBe(429);
    const [elsewhere] = await post(t, "/oauth/revoke", { token: "x" }, { "x-forwarded-for": "203.0.113.10", ...c.auth.headers });
    expect(elsewhere.status).toBe(400); // authenticated; "x" is no token of this server
    expect(await liveCount(t)).toBe(before);
  });

  test("counts failures and refusals in the metrics", async () => {
    const t = await ready();
    const [, text] = await request(t, "GET", "/metrics");
    expect(text).toMatch(/^ta_client_auth_failures_total [1-9]\d*$/m);
    expect(text).toMatch(/^ta_rate_limited_total\{limit="client_id"\} [1-9]\d*$/m);
    expect(text).toMatch(/^ta_rate_limited_total\{limit="ip"\} [1-9]\d*$/m);
  });
});

describe.each(backends)("addresses without a proxy header [%s]", (backend) => {
  const ready = useTestApp(backend, { ...LIMITS, TA_CLIENT_IP_HEADER: "" });

  test("the socket's peer counts, and a forged X-Forwarded-For does not escape the address limit", async () => {
    const t = await ready();
    // app.handle has no socket: stand in for Bun's server, every request from one peer.
    (t.app as unknown as { server: unknown }).server = { requestIP: () => ({ address: "192.0.2.7", family: "IPv4", port: 1 }) };
    const c = await createClient(t, "confidential");
    for (let i = 0; i < 5; i++) {
      await post(t, "/oauth/revoke", { token: "x" }, { "x-forwarded-for": `192.0.2.${i}`, authorization: basic(`nobody-${i}`, "guess") });
    }
    const [res] = await post(t, "/oauth/revoke", { token: "x" }, { "x-forwarded-for": "192.0.2.200", ...c.auth.headers });
    expect(res.status).toBe(429);
  });
});

describe("failure throttle", () => {
  test("refuses after the limit, for the rest of the window, then forgets", () => {
    let now = 1_000_000;
    const throttle = new FailureThrottle({ limit: 2, windowSeconds: 10, now: () => now });
    throttle.fail("k");
    expect(throttle.retryAfter("k")).toBe(0);
    throttle.fail("k");
    expect(throttle.retryAfter("k")).toBe(10);
    now += 4_000;
    expect(throttle.retryAfter("k")).toBe(6);
    now += 6_000;
    expect(throttle.retryAfter("k")).toBe(0);
    throttle.fail("k");
    expect(throttle.retryAfter("k")).toBe(0);
  });

  test("a success resets the count; memory stays bounded", () => {
    const throttle = new FailureThrottle({ limit: 2, windowSeconds: 10, maxKeys: 3 });
    throttle.fail("k");
    throttle.reset("k");
    throttle.fail("k");
    expect(throttle.retryAfter("k")).toBe(0);
    for (const key of ["a", "b", "c", "d"]) {
      throttle.fail(key);
      throttle.fail(key);
    }
    expect(throttle.retryAfter("d")).toBeGreaterThan(0);
    expect(throttle.retryAfter("k")).toBe(0);
  });
});
