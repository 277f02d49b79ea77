// An independent Shared Signals receiver, written from RFC 8417 (SET), RFC 8935 (push), RFC 8936
// (poll), RFC 9493 (subject identifiers) and the SSF 1.0 / CAEP 1.0 / RISC 1.0 texts only — it
// imports nothing of the server. It verifies each SET's signature against the transmitter's JWKS
// with plain jose and checks every claim itself; a SET that fails a check is refused (push: 400
// with RFC 8935 §2.3's {err, description}; poll: reported in setErrs), never recorded.
import type { JWTPayload } from "jose";
import { compactVerify, createRemoteJWKSet, decodeProtectedHeader } from "jose";

const CAEP = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC = "https://schemas.openid.net/secevent/risc/event-type/";
const SSF = "https://schemas.openid.net/secevent/ssf/event-type/";

export const TYPES = {
  sessionRevoked: `${CAEP}session-revoked`,
  credentialChange: `${CAEP}credential-change`,
  accountDisabled: `${RISC}account-disabled`,
  accountEnabled: `${RISC}account-enabled`,
  accountPurged: `${RISC}account-purged`,
  verification: `${SSF}verification`,
  streamUpdated: `${SSF}stream-updated`,
};

/** A SET that passed every check. */
export interface ReceivedEvent {
  jti: string;
  type: string;
  event: Record<string, unknown>;
  subject: Record<string, unknown>;
  txn: string | undefined;
  iat: number;
  /** Milliseconds since the epoch when it arrived. */
  receivedAt: number;
}

export class SetRejected extends Error {
  constructor(
    readonly err: string,
    readonly description: string,
  ) {
    super(`${err}: ${description}`);
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** RFC 9493 §3.2 and SSF 1.0 §3.3: the subject identifiers this receiver understands. */
function checkSubject(subject: unknown, nested = false): void {
  if (!isObject(subject) || typeof subject.format !== "string") throw new SetRejected("invalid_request", "sub_id is not a subject identifier");
  const required: Record<string, string[]> = { iss_sub: ["iss", "sub"], opaque: ["id"], email: ["email"], account: ["uri"] };
  if (subject.format === "complex") {
    if (nested) throw new SetRejected("invalid_request", "nested complex subject");
    const members = Object.keys(subject).filter((k) => k !== "format");
    if (members.length === 0) throw new SetRejected("invalid_request", "empty complex subject");
    for (const member of members) checkSubject(subject[member], true);
    return;
  }
  const fields = required[subject.format];
  if (!fields) throw new SetRejected("invalid_request", `unknown subject format ${subject.format}`);
  for (const field of fields) if (typeof subject[field] !== "string" || subject[field] === "") throw new SetRejected("invalid_request", `${subject.format} without ${field}`);
}

/** CAEP 1.0 / RISC 1.0 / SSF 1.0: the members each event type here must (and may) have. */
function checkEvent(type: string, event: Record<string, unknown>): void {
  const caepCommon = () => {
    if (event.event_timestamp !== undefined && typeof event.event_timestamp !== "number") throw new SetRejected("invalid_request", "event_timestamp is a number");
    if (event.initiating_entity !== undefined && !["admin", "user", "policy", "system"].includes(event.initiating_entity as string)) {
      throw new SetRejected("invalid_request", "initiating_entity is admin, user, policy or system");
    }
    for (const field of ["reason_admin", "reason_user"]) {
      const value = event[field];
      if (value !== undefined && (!isObject(value) || Object.values(value).some((v) => typeof v !== "string"))) {
        throw new SetRejected("invalid_request", `${field} maps language tags to strings`);
      }
    }
  };
  switch (type) {
    case TYPES.sessionRevoked:
    case TYPES.accountEnabled:
    case TYPES.accountPurged:
      caepCommon();
      return;
    case TYPES.credentialChange:
      caepCommon();
      if (typeof event.credential_type !== "string") throw new SetRejected("invalid_request", "credential_type is required");
      if (!["create", "revoke", "update", "delete"].includes(event.change_type as string)) throw new SetRejected("invalid_request", "change_type is create, revoke, update or delete");
      return;
    case TYPES.accountDisabled:
      caepCommon();
      if (event.reason !== undefined && !["hijacking", "bulk-account"].includes(event.reason as string)) throw new SetRejected("invalid_request", "reason is hijacking or bulk-account");
      return;
    case TYPES.verification:
      if (event.state !== undefined && typeof event.state !== "string") throw new SetRejected("invalid_request", "state is a string");
      return;
    case TYPES.streamUpdated:
      if (!["enabled", "paused", "disabled"].includes(event.status as string)) throw new SetRejected("invalid_request", "status is enabled, paused or disabled");
      return;
    default:
      throw new SetRejected("invalid_request", `event type ${type} is not one this receiver understands`);
  }
}

export interface SetChecks {
  issuer: string;
  audience: string;
  jwksUrl: string;
  /** Seconds iat may be ahead of this clock. */
  leeway?: number;
}

/** Verifies a SET as RFC 8417 §2 and SSF 1.0 §4 say; throws SetRejected. */
export function setVerifier(checks: SetChecks) {
  const jwks = createRemoteJWKSet(new URL(checks.jwksUrl));
  return async (set: string): Promise<ReceivedEvent> => {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(set);
    } catch {
      throw new SetRejected("invalid_request", "not a JWS");
    }
    // SSF 1.0 §4.1.1 (RFC 8417 §2.3): explicit typing.
    if (header.typ !== "secevent+jwt") throw new SetRejected("invalid_request", `typ is ${String(header.typ)}`);
    if (!header.alg || header.alg === "none") throw new SetRejected("invalid_key", "unsigned");
    let payload: JWTPayload;
    try {
      const verified = await compactVerify(set, jwks);
      payload = JSON.parse(new TextDecoder().decode(verified.payload)) as JWTPayload;
    } catch {
      throw new SetRejected("invalid_key", "the signature does not verify against the transmitter's keys");
    }
    if (payload.iss !== checks.issuer) throw new SetRejected("invalid_issuer", `iss is ${String(payload.iss)}`);
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (!audiences.includes(checks.audience)) throw new SetRejected("invalid_audience", `aud is ${JSON.stringify(payload.aud)}`);
    if (typeof payload.jti !== "string" || payload.jti === "") throw new SetRejected("invalid_request", "no jti");
    if (typeof payload.iat !== "number" || payload.iat > Date.now() / 1000 + (checks.leeway ?? 5)) throw new SetRejected("invalid_request", "iat missing or in the future");
    // SSF 1.0 §4.1.2, §4.1.7: no sub, no exp.
    if ("sub" in payload) throw new SetRejected("invalid_request", "a SET has no sub");
    if ("exp" in payload) throw new SetRejected("invalid_request", "a SET has no exp");
    if (payload.txn !== undefined && typeof payload.txn !== "string") throw new SetRejected("invalid_request", "txn is a string");
    // SSF 1.0 §3.1: a top-level sub_id.
    checkSubject(payload.sub_id);
    const events = payload.events;
    if (!isObject(events) || Object.keys(events).length !== 1) throw new SetRejected("invalid_request", "events holds exactly one event");
    const [type, event] = Object.entries(events)[0]!;
    if (!isObject(event)) throw new SetRejected("invalid_request", "an event is an object");
    checkEvent(type, event);
    return { jti: payload.jti, type, event, subject: payload.sub_id as Record<string, unknown>, txn: payload.txn as string | undefined, iat: payload.iat, receivedAt: Date.now() };
  };
}

export interface PushReceiver {
  url: string;
  /** Every SET accepted (with 202), in arrival order — a SET delivered twice appears twice. */
  events: ReceivedEvent[];
  /** Requests it answered with an error on purpose, and SETs it refused. */
  refused: number;
  rejected: SetRejected[];
  /** The next `n` requests get `status` (a receiver outage). */
  failNext(n: number, status?: number): void;
  /** Resolves once `predicate` holds for the events received (or rejects after `ms`). */
  until(predicate: (events: ReceivedEvent[]) => boolean, ms?: number): Promise<ReceivedEvent[]>;
  stop(): void;
}

/** RFC 8935 push endpoint on loopback: 202 for a valid SET, 400 {err, description} for one it refuses. */
export function pushReceiver(checks: SetChecks & { authorization?: string; port?: number }): PushReceiver {
  const verify = setVerifier(checks);
  let failing = 0;
  let failStatus = 503;
  const receiver: PushReceiver = {
    url: "",
    events: [],
    refused: 0,
    rejected: [],
    failNext(n, status = 503) {
      failing = n;
      failStatus = status;
    },
    async until(predicate, ms = 5000) {
      const deadline = Date.now() + ms;
      while (!predicate(receiver.events)) {
        if (Date.now() > deadline) throw new Error(`the receiver did not get what was expected; it has ${JSON.stringify(receiver.events.map((e) => e.type))}`);
        await Bun.sleep(5);
      }
      return receiver.events;
    },
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: checks.port ?? 0,
    async fetch(request) {
      if (failing > 0) {
        failing--;
        receiver.refused++;
        return new Response("unavailable", { status: failStatus });
      }
      if (checks.authorization !== undefined && request.headers.get("authorization") !== checks.authorization) {
        return Response.json({ err: "authentication_failed", description: "wrong Authorization header" }, { status: 400 });
      }
      if (request.method !== "POST" || request.headers.get("content-type") !== "application/secevent+jwt") {
        return Response.json({ err: "invalid_request", description: "POST an application/secevent+jwt" }, { status: 400 });
      }
      try {
        receiver.events.push(await verify(await request.text()));
        return new Response(null, { status: 202 });
      } catch (error) {
        if (!(error instanceof SetRejected)) throw error;
        receiver.rejected.push(error);
        return Response.json({ err: error.err, description: error.description }, { status: 400 });
      }
    },
  });
  receiver.url = `http://127.0.0.1:${server.port}/events`;
  return receiver;
}

/** RFC 8936 poll: one request, its SETs verified; those that fail go back in setErrs on the next call. */
export async function pollOnce(
  pollUrl: string,
  token: string,
  verify: ReturnType<typeof setVerifier>,
  request: { maxEvents?: number; returnImmediately?: boolean; ack?: string[]; setErrs?: Record<string, { err: string; description: string }> },
  fetchFn: typeof fetch = fetch,
): Promise<{ status: number; events: ReceivedEvent[]; rejected: Record<string, SetRejected>; moreAvailable: boolean; raw: unknown }> {
  const response = await fetchFn(pollUrl, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(request),
  });
  const raw = (await response.json()) as { sets?: Record<string, string>; moreAvailable?: boolean };
  const events: ReceivedEvent[] = [];
  const rejected: Record<string, SetRejected> = {};
  for (const [jti, set] of Object.entries(raw.sets ?? {})) {
    try {
      const event = await verify(set);
      // RFC 8936 §2.3: each member's name is the jti of its SET.
      if (event.jti !== jti) throw new SetRejected("invalid_request", "the member name is not the SET's jti");
      events.push(event);
    } catch (error) {
      if (!(error instanceof SetRejected)) throw error;
      rejected[jti] = error;
    }
  }
  return { status: response.status, events, rejected, moreAvailable: raw.moreAvailable === true, raw };
}
