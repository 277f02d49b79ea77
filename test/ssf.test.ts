// The Shared Signals transmitter (SSF 1.0, CAEP 1.0, RISC 1.0) against an independent receiver
// (test/helpers/ssf-receiver.ts, written from the specs alone): metadata, stream management and
// its errors, an event from every kind of revocation and security event, push delivery at least
// once and in order through a receiver outage, poll delivery with acks and long polls, streams
// kept apart, subjects removed and added back, status, verification; on both backends.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { decodeJwt } from "jose";
import type { TestApp, TestClient } from "./helpers/app.ts";
import { admin, createClient, createTestApp, mintClientSession, mintCodeSession, post, request } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import type { ServedApp } from "./helpers/serve.ts";
import { serve } from "./helpers/serve.ts";
import { freePort } from "./helpers/binary.ts";
import type { PushReceiver, ReceivedEvent } from "./helpers/ssf-receiver.ts";
import { pollOnce, pushReceiver, setVerifier, TYPES } from "./helpers/ssf-receiver.ts";

setDefaultTimeout(30_000);

const PUSH = "urn:ietf:rfc:8935";
const POLL = "urn:ietf:rfc:8936";

interface Receiver {
  client: TestClient;
  token: string;
}

describe.each(backends)("Shared Signals transmitter [%s]", (backend) => {
  let t: TestApp;
  let served: ServedApp;
  let alpha: Receiver;
  let beta: Receiver;
  let pushA: PushReceiver;
  let pushB: PushReceiver;
  let flaky: PushReceiver;
  let issuer: string;
  let loudPort: number;

  /** A receiver's bearer token: client_credentials with the ssf scope. */
  async function receiver(): Promise<Receiver> {
    const client = await createClient(t, "confidential", { grantTypes: ["client_credentials"], scope: "ssf" });
    const [res, body] = await post(t, "/oauth/token", { grant_type: "client_credentials", scope: "ssf" }, client.auth.headers);
    expect(res.status).toBe(200);
    return { client, token: body.access_token };
  }

  const call = (r: Receiver | undefined, method: string, path: string, body?: unknown) =>
    request(t, method, path, {
      headers: { ...(r ? { authorization: `Bearer ${r.token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  const checks = (r: Receiver) => ({ issuer, audience: r.client.client.clientId, jwksUrl: `${served.url}/.well-known/jwks.json` });

  async function pushStream(r: Receiver, target: PushReceiver, extra: Record<string, unknown> = {}) {
    const [res, body] = await call(r, "POST", "/ssf/streams", { delivery: { method: PUSH, endpoint_url: target.url, authorization_header: "Bearer receiver-secret" }, ...extra });
    expect(res.status).toBe(201);
    return body;
  }

  beforeAll(async () => {
    // The transmitter may reach exactly the receivers' ports over loopback http.
    const ports = [freePort(), freePort(), freePort(), freePort()];
    loudPort = ports[3]!;
    t = await createTestApp(backend, { TA_OUTBOUND_ALLOW_HOSTS: ports.map((port) => `127.0.0.1:${port}`).join(",") });
    served = serve(t);
    issuer = t.config.issuer;
    alpha = await receiver();
    beta = await receiver();
    pushA = pushReceiver({ ...checks(alpha), authorization: "Bearer receiver-secret", port: ports[0] });
    pushB = pushReceiver({ ...checks(beta), authorization: "Bearer receiver-secret", port: ports[1] });
    flaky = pushReceiver({ ...checks(alpha), authorization: "Bearer receiver-secret", port: ports[2] });
    t.services.ssf.push.start();
  }, 60_000);

  afterAll(async () => {
    await t.services.ssf.push.stop();
    for (const r of [pushA, pushB, flaky]) r.stop();
    await served.stop();
    await t.close();
  });

  test("publishes its metadata at /.well-known/ssf-configuration (SSF 1.0 §7)", async () => {
    const [res, body] = await request(t, "GET", "/.well-known/ssf-configuration");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("application/json");
    expect(body).toEqual({
      spec_version: "1_0",
      issuer,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      delivery_methods_supported: [PUSH, POLL],
      configuration_endpoint: `${issuer}/ssf/streams`,
      status_endpoint: `${issuer}/ssf/status`,
      add_subject_endpoint: `${issuer}/ssf/subjects/add`,
      remove_subject_endpoint: `${issuer}/ssf/subjects/remove`,
      verification_endpoint: `${issuer}/ssf/verify`,
      authorization_schemes: [{ spec_urn: "urn:ietf:rfc:6749" }],
      default_subjects: "ALL",
    });
  });

  test("stream management: create, read one and all, update, replace, delete (SSF 1.0 §8.1.1)", async () => {
    const created = await pushStream(alpha, pushA, { events_requested: [TYPES.sessionRevoked, "urn:example:unknown"], description: "first" });
    expect(created).toEqual({
      stream_id: expect.any(String),
      iss: issuer,
      aud: alpha.client.client.clientId,
      events_supported: [TYPES.sessionRevoked, TYPES.credentialChange, TYPES.accountDisabled, TYPES.accountEnabled, TYPES.accountPurged],
      events_requested: [TYPES.sessionRevoked, "urn:example:unknown"],
      // Unknown event types are dropped, not an error.
      events_delivered: [TYPES.sessionRevoked],
      delivery: { method: PUSH, endpoint_url: pushA.url },
      description: "first",
      min_verification_interval: 10,
    });
    const id = created.stream_id;
    expect((await call(alpha, "GET", `/ssf/streams?stream_id=${id}`))[1]).toEqual(created);
    const [, all] = await call(alpha, "GET", "/ssf/streams");
    expect(all.map((s: { stream_id: string }) => s.stream_id)).toContain(id);
    const [patched, patchedBody] = await call(alpha, "PATCH", "/ssf/streams", { stream_id: id, description: "second" });
    expect(patched.status).toBe(200);
    expect(patchedBody).toMatchObject({ description: "second", events_delivered: [TYPES.sessionRevoked], delivery: { method: PUSH } });
    // A transmitter-supplied field that differs is refused.
    const [wrong, wrongBody] = await call(alpha, "PATCH", "/ssf/streams", { stream_id: id, aud: "someone-else" });
    expect(wrong.status).toBe(400);
    expect(wrongBody.error_description).toBe("aud is set by the transmitter and cannot change");
    // PUT: what is missing is deleted — no delivery means poll, no events_requested means every one.
    const [, replaced] = await call(alpha, "PUT", "/ssf/streams", { stream_id: id });
    expect(replaced.delivery).toEqual({ method: POLL, endpoint_url: `${issuer}/ssf/poll/${id}` });
    expect(replaced.events_delivered).toHaveLength(5);
    expect(replaced.description).toBeUndefined();
    const [deleted] = await call(alpha, "DELETE", `/ssf/streams?stream_id=${id}`);
    expect(deleted.status).toBe(204);
    expect((await call(alpha, "GET", `/ssf/streams?stream_id=${id}`))[0].status).toBe(404);
  });

  test("a receiver sees and changes only its own streams: another's is 404, with nothing to tell it from none", async () => {
    const own = await pushStream(alpha, pushA);
    for (const [method, path, body] of [
      ["GET", `/ssf/streams?stream_id=${own.stream_id}`, undefined],
      ["PATCH", "/ssf/streams", { stream_id: own.stream_id, description: "x" }],
      ["DELETE", `/ssf/streams?stream_id=${own.stream_id}`, undefined],
      ["GET", `/ssf/status?stream_id=${own.stream_id}`, undefined],
      ["POST", "/ssf/verify", { stream_id: own.stream_id }],
      ["POST", `/ssf/poll/${own.stream_id}`, {}],
    ] as const) {
      const [theirs, theirsBody] = await call(beta, method, path, body);
      const [none, noneBody] = await call(beta, method, path.replace(own.stream_id, "00000000-0000-4000-8000-000000000000"), body === undefined ? undefined : { ...body, stream_id: "00000000-0000-4000-8000-000000000000" });
      expect({ path, status: theirs.status, body: theirsBody }).toEqual({ path, status: 404, body: noneBody });
      expect(none.status).toBe(404);
    }
    const [, listed] = await call(beta, "GET", "/ssf/streams");
    expect(listed.map((s: { stream_id: string }) => s.stream_id)).not.toContain(own.stream_id);
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${own.stream_id}`);
  });

  test("refuses callers without an ssf token (401), tokens without the scope (403), bad configurations (400)", async () => {
    const [none] = await call(undefined, "GET", "/ssf/streams");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toStartWith('Bearer realm="token-authority-ssf"');
    const plain = await createClient(t, "confidential");
    const [, plainToken] = await post(t, "/oauth/token", { grant_type: "client_credentials", scope: "read" }, plain.auth.headers);
    const [forbidden] = await call({ client: plain, token: plainToken.access_token }, "GET", "/ssf/streams");
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get("www-authenticate")).toContain('error="insufficient_scope", scope="ssf"');
    for (const [delivery, reason] of [
      [{ method: PUSH, endpoint_url: "http://receiver.example/events" }, "delivery.endpoint_url: only https URLs are fetched"],
      [{ method: PUSH, endpoint_url: "https://10.0.0.7/events" }, "delivery.endpoint_url: the host is a private or reserved address"],
      [{ method: PUSH, endpoint_url: "https://localhost:9/events" }, "delivery.endpoint_url: the host resolves to a private or reserved address"],
      [{ method: PUSH }, "push delivery needs delivery.endpoint_url"],
      [{ method: "urn:example:carrier-pigeon" }, "delivery method must be urn:ietf:rfc:8935 (push) or urn:ietf:rfc:8936 (poll)"],
      [{ method: POLL, endpoint_url: "https://receiver.example/" }, "for poll delivery the transmitter supplies endpoint_url"],
    ] as const) {
      const [res, body] = await call(alpha, "POST", "/ssf/streams", { delivery });
      expect({ status: res.status, reason: body.error_description }).toEqual({ status: 400, reason });
    }
    const hugeBody = JSON.stringify({ description: "x".repeat(200_000) });
    const [huge, hugeAnswer] = await request(t, "POST", "/ssf/streams", {
      headers: { authorization: `Bearer ${alpha.token}`, "content-type": "application/json", "content-length": String(hugeBody.length) },
      body: hugeBody,
    });
    expect([huge.status, hugeAnswer.error]).toEqual([413, "payload_too_large"]);
    const [long, longAnswer] = await call(alpha, "POST", "/ssf/streams", { description: "x".repeat(20_000) });
    expect([long.status, longAnswer.error]).toEqual([400, "invalid_request"]);
  });

  test("every revocation and security event reaches a push stream as a verified SET (CAEP, RISC)", async () => {
    const stream = await pushStream(alpha, pushA);
    const from = pushA.events.length;
    const owner = await createClient(t, "confidential");
    const user = await t.services.admin.createUser(`ssf-${backend}-${Date.now()}`, "a long enough password");
    // RFC 7009: a code-flow family of the user, revoked by its client.
    const family = await mintCodeSession(t, owner, user.id);
    const sid = decodeJwt(family.accessToken).sid as string;
    expect((await post(t, "/oauth/revoke", { token: family.refreshToken! }, owner.auth.headers))[0].status).toBe(200);
    // A client's own token (client_credentials): no user in the subject.
    const own = await mintClientSession(t, owner);
    expect((await post(t, "/oauth/revoke", { token: own.accessToken }, owner.auth.headers))[0].status).toBe(200);
    // Security events: a live family, then the user disabled (its sessions end in the same transaction), enabled, new password, deleted; a secret rotated.
    const second = await mintCodeSession(t, owner, user.id);
    await t.services.admin.disableUser(user.id);
    await t.services.admin.enableUser(user.id);
    await t.services.admin.setPassword(user.id, "another long password", { keepSessions: true });
    await t.services.admin.rotateClientSecret(owner.client.clientId, { graceSeconds: 0, revokeTokens: false });
    await t.services.admin.deleteUser(user.id);
    const events = (await pushA.until((e) => e.length >= from + 7)).slice(from);
    const userSubject = { format: "iss_sub", iss: issuer, sub: user.id };
    const application = { format: "opaque", id: owner.client.clientId };
    expect(events.map((e) => e.type)).toEqual([
      TYPES.sessionRevoked,
      TYPES.sessionRevoked,
      TYPES.accountDisabled,
      TYPES.sessionRevoked,
      TYPES.accountEnabled,
      TYPES.credentialChange,
      TYPES.credentialChange,
      TYPES.accountPurged,
    ].slice(0, events.length));
    expect(events[0]).toMatchObject({
      subject: { format: "complex", user: userSubject, session: { format: "opaque", id: sid }, application },
      event: { initiating_entity: "user", reason_admin: { en: "revoked_by_client" }, event_timestamp: expect.any(Number) },
    });
    expect(events[1]!.subject).toEqual({ format: "complex", session: { format: "opaque", id: decodeJwt(own.accessToken).sid }, application });
    // The account event and the session it ended come from one transaction: one txn.
    expect(events[2]).toMatchObject({ subject: userSubject, event: { initiating_entity: "admin", reason_admin: { en: "user_disabled" } } });
    expect(events[3]).toMatchObject({ subject: { user: userSubject, session: { id: decodeJwt(second.accessToken).sid } }, event: { reason_admin: { en: "user_disabled" } } });
    expect(events[3]!.txn).toBe(events[2]!.txn);
    const all = (await pushA.until((e) => e.length >= from + 8)).slice(from);
    expect(all[5]).toMatchObject({ type: TYPES.credentialChange, subject: userSubject, event: { credential_type: "password", change_type: "update" } });
    expect(all[6]).toMatchObject({ type: TYPES.credentialChange, subject: { format: "complex", application }, event: { credential_type: "client_secret", change_type: "update" } });
    expect(all[7]).toMatchObject({ type: TYPES.accountPurged, subject: userSubject });
    // Each SET once, each jti distinct; the receiver refused none.
    expect(new Set(all.map((e) => e.jti)).size).toBe(8);
    expect(pushA.rejected).toEqual([]);
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
  });

  test("a receiver down for three attempts gets every event once it is back, in order, each acknowledged once", async () => {
    const stream = await pushStream(alpha, flaky, { events_requested: [TYPES.sessionRevoked] });
    flaky.failNext(3, 503);
    const owner = await createClient(t, "confidential");
    const sessions = [];
    for (let i = 0; i < 5; i++) sessions.push(await mintClientSession(t, owner));
    for (const s of sessions) await post(t, "/oauth/revoke", { token: s.accessToken }, owner.auth.headers);
    // Backoff after three failures: 1, 2, 4 s (with jitter) before the fourth attempt.
    const events = await flaky.until((e) => e.length >= 5, 15_000);
    expect(flaky.refused).toBe(3);
    expect(events.map((e) => (e.subject.session as { id: string }).id)).toEqual(sessions.map((s) => decodeJwt(s.accessToken).sid as string));
    expect(new Set(events.map((e) => e.jti)).size).toBe(5);
    await Bun.sleep(200);
    expect(flaky.events).toHaveLength(5); // nothing delivered twice once accepted
    const [, metrics] = await request(t, "GET", "/metrics");
    expect(Number(/^ta_ssf_deliveries_total\{method="push",result="failed"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(3);
    const [, status] = await call(alpha, "GET", `/ssf/status?stream_id=${stream.stream_id}`);
    expect(status).toEqual({ stream_id: stream.stream_id, status: "enabled" });
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
  });

  test("streams are kept apart: each receiver's SET carries its own audience, and its own stream's events only", async () => {
    const a = await pushStream(alpha, pushA);
    const b = await pushStream(beta, pushB);
    const fromA = pushA.events.length;
    const fromB = pushB.events.length;
    const owner = await createClient(t, "confidential");
    const s = await mintClientSession(t, owner);
    await post(t, "/oauth/revoke", { token: s.accessToken }, owner.auth.headers);
    await call(alpha, "POST", "/ssf/verify", { stream_id: a.stream_id, state: "alpha-only" });
    const gotA = (await pushA.until((e) => e.length >= fromA + 2)).slice(fromA);
    const gotB = (await pushB.until((e) => e.length >= fromB + 1)).slice(fromB);
    expect(gotA.map((e) => e.type)).toEqual([TYPES.sessionRevoked, TYPES.verification]);
    expect(gotA[1]).toMatchObject({ subject: { format: "opaque", id: a.stream_id }, event: { state: "alpha-only" } });
    expect(gotB.map((e) => e.type)).toEqual([TYPES.sessionRevoked]);
    // The receivers verified aud against their own client id; the jtis differ per stream.
    expect(gotA[0]!.jti).not.toBe(gotB[0]!.jti);
    // §8.1.4.2: verification requests more often than min_verification_interval get 429.
    const [again] = await call(alpha, "POST", "/ssf/verify", { stream_id: a.stream_id });
    expect(again.status).toBe(429);
    await Bun.sleep(200);
    expect(pushB.events.slice(fromB).some((e) => e.type === TYPES.verification)).toBe(false);
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${a.stream_id}`);
    await call(beta, "DELETE", `/ssf/streams?stream_id=${b.stream_id}`);
  });

  test("a subject removed from a stream gets no events there until it is added back (SSF 1.0 §8.1.3)", async () => {
    const stream = await pushStream(alpha, pushA);
    const owner = await createClient(t, "confidential");
    const subject = { format: "opaque", id: owner.client.clientId };
    const [removed] = await call(alpha, "POST", "/ssf/subjects/remove", { stream_id: stream.stream_id, subject });
    expect(removed.status).toBe(204);
    const from = pushA.events.length;
    const hidden = await mintClientSession(t, owner);
    await post(t, "/oauth/revoke", { token: hidden.accessToken }, owner.auth.headers);
    // A marker from another client shows delivery went past the hidden event.
    const other = await createClient(t, "confidential");
    const marker = await mintClientSession(t, other);
    await post(t, "/oauth/revoke", { token: marker.accessToken }, other.auth.headers);
    const afterRemove = (await pushA.until((e) => e.length >= from + 1)).slice(from);
    expect(afterRemove.map((e) => (e.subject.application as { id: string }).id)).toEqual([other.client.clientId]);
    const [added, addedBody] = await call(alpha, "POST", "/ssf/subjects/add", { stream_id: stream.stream_id, subject });
    expect([added.status, addedBody]).toEqual([200, ""]);
    const shown = await mintClientSession(t, owner);
    await post(t, "/oauth/revoke", { token: shown.accessToken }, owner.auth.headers);
    const afterAdd = (await pushA.until((e) => e.length >= from + 2)).slice(from + 1);
    expect((afterAdd[0]!.subject.application as { id: string }).id).toBe(owner.client.clientId);
    for (const [body, reason] of [
      [{ stream_id: stream.stream_id, subject: { format: "phone", number: "1" } }, 'unsupported subject format "phone"'],
      [{ stream_id: stream.stream_id, subject: { format: "iss_sub", iss: issuer } }, "a subject of format iss_sub has a non-empty sub"],
      [{ stream_id: stream.stream_id, subject: { format: "opaque", id: stream.stream_id } }, "a stream's own subject cannot be removed"],
    ] as const) {
      const [res, resBody] = await call(alpha, "POST", "/ssf/subjects/remove", body);
      expect({ status: res.status, reason: resBody.error_description }).toEqual({ status: 400, reason });
    }
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
  });

  test("paused holds events and sends them when enabled; disabled drops them (SSF 1.0 §8.1.2)", async () => {
    const stream = await pushStream(alpha, pushA, { events_requested: [TYPES.sessionRevoked] });
    const owner = await createClient(t, "confidential");
    const revokeOne = async () => {
      const s = await mintClientSession(t, owner);
      await post(t, "/oauth/revoke", { token: s.accessToken }, owner.auth.headers);
      return decodeJwt(s.accessToken).sid as string;
    };
    const sidsOf = (events: ReceivedEvent[]) => events.filter((e) => (e.subject.application as { id?: string } | undefined)?.id === owner.client.clientId).map((e) => (e.subject.session as { id: string }).id);
    const [paused, pausedBody] = await call(alpha, "POST", "/ssf/status", { stream_id: stream.stream_id, status: "paused", reason: "maintenance" });
    expect([paused.status, pausedBody]).toEqual([200, { stream_id: stream.stream_id, status: "paused", reason: "maintenance" }]);
    const held = await revokeOne();
    await Bun.sleep(300);
    expect(sidsOf(pushA.events)).not.toContain(held);
    // The held event is the stream's backlog, with its age, at /metrics.
    const [, metrics] = await request(t, "GET", "/metrics");
    const gauge = (name: string) => Number(new RegExp(`^${name}\\{stream_id="${stream.stream_id}"[^}]*\\} (\\S+)$`, "m").exec(metrics)?.[1]);
    expect(gauge("ta_ssf_queue_depth")).toBeGreaterThanOrEqual(1);
    expect(gauge("ta_ssf_delivery_lag_seconds")).toBeGreaterThan(0.2);
    await call(alpha, "POST", "/ssf/status", { stream_id: stream.stream_id, status: "enabled" });
    await pushA.until((e) => sidsOf(e).includes(held));
    await call(alpha, "POST", "/ssf/status", { stream_id: stream.stream_id, status: "disabled" });
    const dropped = await revokeOne();
    await call(alpha, "POST", "/ssf/status", { stream_id: stream.stream_id, status: "enabled" });
    const after = await revokeOne();
    await pushA.until((e) => sidsOf(e).includes(after));
    expect(sidsOf(pushA.events)).not.toContain(dropped);
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
  });

  test("an operator's status change reaches the receiver as a stream-updated event before the stream stops (SSF 1.0 §8.1.5)", async () => {
    const stream = await pushStream(alpha, pushA);
    const [listed, list] = await admin(t, "GET", "/ssf/streams");
    expect(listed.status).toBe(200);
    const row = list.items.find((item: { stream_id: string }) => item.stream_id === stream.stream_id);
    expect(row).toMatchObject({ receiver: alpha.client.client.clientId, status: "enabled", delivery_method: PUSH, endpoint_url: pushA.url, failures: 0 });
    expect(typeof row.backlog).toBe("number");
    expect(JSON.stringify(list)).not.toContain("receiver-secret"); // the push Authorization header is the receiver's secret
    const from = pushA.events.length;
    const [changed, body] = await admin(t, "POST", `/ssf/streams/${stream.stream_id}/status`, { status: "paused", reason: "operator maintenance" });
    expect([changed.status, body]).toEqual([200, { stream_id: stream.stream_id, status: "paused", reason: "operator maintenance" }]);
    const [event] = (await pushA.until((e) => e.length >= from + 1)).slice(from);
    expect(event).toMatchObject({ type: TYPES.streamUpdated, subject: { format: "opaque", id: stream.stream_id }, event: { status: "paused", reason: "operator maintenance" } });
    const [, status] = await call(alpha, "GET", `/ssf/status?stream_id=${stream.stream_id}`);
    expect(status).toEqual({ stream_id: stream.stream_id, status: "paused", reason: "operator maintenance" });
    const [missing] = await admin(t, "POST", `/ssf/streams/${crypto.randomUUID()}/status`, { status: "paused" });
    expect(missing.status).toBe(404);
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
  });

  test("a receiver answering 202 with a huge body is delivered once: the answer is cut, not retried", async () => {
    const verify = setVerifier(checks(alpha));
    const received: ReceivedEvent[] = [];
    const loud = Bun.serve({
      hostname: "127.0.0.1",
      port: loudPort,
      async fetch(request) {
        received.push(await verify(await request.text()));
        return new Response("x".repeat(1 << 20), { status: 202 });
      },
    });
    try {
      const [, stream] = await call(alpha, "POST", "/ssf/streams", { events_requested: [TYPES.sessionRevoked], delivery: { method: PUSH, endpoint_url: `http://127.0.0.1:${loudPort}/events` } });
      const owner = await createClient(t, "confidential");
      const s = await mintClientSession(t, owner);
      await post(t, "/oauth/revoke", { token: s.accessToken }, owner.auth.headers);
      const sid = decodeJwt(s.accessToken).sid;
      for (const started = Date.now(); !received.some((e) => (e.subject.session as { id: string }).id === sid) && Date.now() - started < 5000; ) await Bun.sleep(10);
      await Bun.sleep(1500); // a retry would come after a 1 s backoff
      expect(received.filter((e) => (e.subject.session as { id: string }).id === sid)).toHaveLength(1);
      const [, status] = await admin(t, "GET", "/ssf/streams");
      expect(status.items.find((item: { stream_id: string }) => item.stream_id === stream.stream_id)).toMatchObject({ failures: 0, last_error: null });
      await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
    } finally {
      loud.stop(true);
    }
  });

  test("a receiver's 400 with a permanent err passes the SET over (counted); a 401 is retried until it is accepted", async () => {
    const verify = setVerifier(checks(alpha));
    const seen: string[] = [];
    const accepted: string[] = [];
    let unauthorized = 2;
    const picky = Bun.serve({
      hostname: "127.0.0.1",
      port: loudPort,
      async fetch(request) {
        const event = await verify(await request.text());
        const sid = (event.subject.session as { id: string }).id;
        seen.push(sid);
        // The first SET is refused for good (RFC 8935 §2.4), the second twice as unauthorized first.
        if (seen.length === 1) return Response.json({ err: "invalid_audience", description: "not for us" }, { status: 400 });
        if (unauthorized > 0) {
          unauthorized--;
          return Response.json({ err: "authentication_failed", description: "try again" }, { status: 401 });
        }
        accepted.push(sid);
        return new Response(null, { status: 202 });
      },
    });
    try {
      const [, stream] = await call(alpha, "POST", "/ssf/streams", { events_requested: [TYPES.sessionRevoked], delivery: { method: PUSH, endpoint_url: `http://127.0.0.1:${loudPort}/events` } });
      const owner = await createClient(t, "confidential");
      const sids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const s = await mintClientSession(t, owner);
        await post(t, "/oauth/revoke", { token: s.accessToken }, owner.auth.headers);
        sids.push(decodeJwt(s.accessToken).sid as string);
      }
      // Two failures: backoff 1 s then 2 s (with jitter) before the accepted attempt.
      for (const started = Date.now(); accepted.length === 0 && Date.now() - started < 15_000; ) await Bun.sleep(20);
      expect(accepted).toEqual([sids[1]!]);
      expect(seen).toEqual([sids[0]!, sids[1]!, sids[1]!, sids[1]!]);
      const [, metrics] = await request(t, "GET", "/metrics");
      expect(Number(/^ta_ssf_deliveries_total\{method="push",result="rejected"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
      await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
    } finally {
      picky.stop(true);
    }
  });

  test("a look for push streams passes over those this instance delivers already (one, or several)", async () => {
    // An app of its own, whose push delivery is not running: no other claim can take the streams.
    const quiet = await createTestApp(backend, { TA_OUTBOUND_ALLOW_HOSTS: new URL(pushA.url).host });
    try {
      const client = await createClient(quiet, "confidential", { grantTypes: ["client_credentials"], scope: "ssf" });
      const make = () => quiet.services.ssf.streams.create(client.client.clientId, { delivery: { method: PUSH, endpoint_url: pushA.url } });
      const [first, second] = [await make(), await make()];
      const claim = async (exclude: string[]) => (await quiet.services.stores.ssf.claim("test-owner", 64, 10, exclude)).map((stream) => stream.id);
      expect(await claim([first.stream_id])).toEqual([second.stream_id]);
      expect(await claim([first.stream_id, second.stream_id])).toEqual([]);
    } finally {
      await quiet.close();
    }
  });

  test("poll (RFC 8936): unacknowledged SETs come again, acknowledged ones do not, a long poll answers when one is logged", async () => {
    const [, stream] = await call(alpha, "POST", "/ssf/streams", { events_requested: [TYPES.sessionRevoked] });
    expect(stream.delivery).toEqual({ method: POLL, endpoint_url: `${issuer}/ssf/poll/${stream.stream_id}` });
    const pollUrl = `${served.url}/ssf/poll/${stream.stream_id}`;
    const verify = setVerifier(checks(alpha));
    const owner = await createClient(t, "confidential");
    const revoked: string[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await mintClientSession(t, owner);
      await post(t, "/oauth/revoke", { token: s.accessToken }, owner.auth.headers);
      revoked.push(decodeJwt(s.accessToken).sid as string);
    }
    const first = await pollOnce(pollUrl, alpha.token, verify, { returnImmediately: true, maxEvents: 2 });
    expect(first.status).toBe(200);
    expect(first.events.map((e) => (e.subject.session as { id: string }).id)).toEqual(revoked.slice(0, 2));
    expect(first.moreAvailable).toBe(true);
    // Not acknowledged: the same SETs again (at least once).
    const again = await pollOnce(pollUrl, alpha.token, verify, { returnImmediately: true, maxEvents: 2 });
    expect(again.events.map((e) => e.jti)).toEqual(first.events.map((e) => e.jti));
    // Acknowledged (and one reported in setErrs): the third comes next, then nothing.
    const next = await pollOnce(pollUrl, alpha.token, verify, {
      returnImmediately: true,
      ack: [first.events[0]!.jti],
      setErrs: { [first.events[1]!.jti]: { err: "invalid_request", description: "test" } },
    });
    expect(next.events.map((e) => (e.subject.session as { id: string }).id)).toEqual([revoked[2]!]);
    const ackOnly = await pollOnce(pollUrl, alpha.token, verify, { maxEvents: 0, ack: [next.events[0]!.jti] });
    expect(ackOnly.events).toEqual([]);
    const empty = await pollOnce(pollUrl, alpha.token, verify, { returnImmediately: true });
    expect([empty.events, empty.moreAvailable]).toEqual([[], false]);
    // A long poll waits, holding no connection, and answers as soon as a revocation is logged.
    const started = performance.now();
    const waiting = pollOnce(pollUrl, alpha.token, verify, {});
    await Bun.sleep(150);
    const late = await mintClientSession(t, owner);
    await post(t, "/oauth/revoke", { token: late.accessToken }, owner.auth.headers);
    const woken = await waiting;
    expect(woken.events.map((e) => (e.subject.session as { id: string }).id)).toEqual([decodeJwt(late.accessToken).sid as string]);
    expect(performance.now() - started).toBeLessThan(2000);
    const [malformed, malformedBody] = await call(alpha, "POST", `/ssf/poll/${stream.stream_id}`, { maxEvents: "ten" });
    expect([malformed.status, malformedBody.error]).toEqual([400, "invalid_request"]);
    for (const body of [{ ack: "one" }, { ack: [7] }, { setErrs: ["x"] }]) {
      const [bad, badBody] = await call(alpha, "POST", `/ssf/poll/${stream.stream_id}`, body);
      expect([bad.status, badBody.error]).toEqual([400, "invalid_request"]);
    }
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
  });

  test("a revocation that rolls back sends nothing, and holds nothing up", async () => {
    const stream = await pushStream(alpha, pushA, { events_requested: [TYPES.sessionRevoked] });
    const owner = await createClient(t, "confidential");
    const doomed = await mintClientSession(t, owner);
    const from = pushA.events.length;
    await t.database.db
      .transaction(async (tx) => {
        await tx.execute(`select ta_revoke_sessions(array(select id from sessions where client_id = '${owner.client.clientId}'), 'revoked_by_operator')`);
        throw new Error("roll back");
      })
      .catch(() => {});
    const kept = await mintClientSession(t, owner);
    await post(t, "/oauth/revoke", { token: kept.accessToken }, owner.auth.headers);
    const [event] = (await pushA.until((e) => e.length >= from + 1)).slice(from);
    expect((event!.subject.session as { id: string }).id).toBe(decodeJwt(kept.accessToken).sid as string);
    await Bun.sleep(200);
    expect(pushA.events.slice(from).some((e) => (e.subject.session as { id: string }).id === decodeJwt(doomed.accessToken).sid)).toBe(false);
    expect((await t.services.pipeline.verify(doomed.accessToken)).ok).toBe(true);
    await call(alpha, "DELETE", `/ssf/streams?stream_id=${stream.stream_id}`);
  });
});
