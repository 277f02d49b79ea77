// What a Shared Signals stream carries: the event types (CAEP 1.0, RISC 1.0, SSF 1.0's own), the
// subjects (RFC 9493 formats, SSF 1.0 §3.3 complex subjects), and the Security Event Tokens
// (RFC 8417, SSF 1.0 §4) made from entries of the event log — one per ended token family, per
// account or credential event, per stream event — signed with the server's key.
import type { LogEntry } from "../../db/stores/ssf.ts";

const CAEP = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC = "https://schemas.openid.net/secevent/risc/event-type/";
const SSF = "https://schemas.openid.net/secevent/ssf/event-type/";

export const EVENT_TYPES = {
  sessionRevoked: `${CAEP}session-revoked`,
  credentialChange: `${CAEP}credential-change`,
  accountDisabled: `${RISC}account-disabled`,
  accountEnabled: `${RISC}account-enabled`,
  accountPurged: `${RISC}account-purged`,
  verification: `${SSF}verification`,
  streamUpdated: `${SSF}stream-updated`,
} as const;

/** What a receiver may ask for (verification and stream-updated are sent to every stream, §8.1.4, §8.1.5). */
export const EVENTS_SUPPORTED: readonly string[] = [
  EVENT_TYPES.sessionRevoked,
  EVENT_TYPES.credentialChange,
  EVENT_TYPES.accountDisabled,
  EVENT_TYPES.accountEnabled,
  EVENT_TYPES.accountPurged,
];

const LOGGED: Record<string, string> = {
  "account-disabled": EVENT_TYPES.accountDisabled,
  "account-enabled": EVENT_TYPES.accountEnabled,
  "account-purged": EVENT_TYPES.accountPurged,
  "credential-change": EVENT_TYPES.credentialChange,
  verification: EVENT_TYPES.verification,
  "stream-updated": EVENT_TYPES.streamUpdated,
};

/** Token entries that end no family: a rotation retiring the previous access token, a retried refresh replacing its child. */
const NOT_A_REVOCATION = new Set(["refreshed", "replaced_by_retry"]);

/** CAEP 1.0 §2 initiating_entity, from why the sessions ended. */
const INITIATED_BY: Record<string, "admin" | "user" | "policy" | "system"> = {
  revoked_by_client: "user",
  signed_out: "user",
  consent_withdrawn: "user",
  password_changed: "user",
  user_disabled: "admin",
  user_enabled: "admin",
  user_deleted: "admin",
  client_deleted: "admin",
  secret_rotated: "admin",
  key_revoked: "admin",
  revoked_by_operator: "admin",
  refresh_token_reuse: "policy",
  authorization_code_reuse: "policy",
};

export type Subject = Record<string, unknown> & { format: string };

/** One Security Event Token to be, before its stream's audience and signature. */
export interface Signal {
  /** Every log entry it stands for (a family's two tokens are one event), ascending. */
  cursors: number[];
  type: string;
  subject: Subject;
  event: Record<string, unknown>;
  txn: string | null;
  /** For one stream only (verification, stream-updated). */
  streamId: string | null;
}

/** Turns log entries (ascending) into signals; entries that signal nothing yield none. */
export function signalsOf(entries: readonly LogEntry[], issuer: string): { signals: Signal[]; silent: number[] } {
  const signals: Signal[] = [];
  const silent: number[] = [];
  const families = new Map<string, Signal>();
  const user = (sub: string): Subject => ({ format: "iss_sub", iss: issuer, sub });
  const application = (clientId: string): Subject => ({ format: "opaque", id: clientId });
  for (const entry of entries) {
    const reason = entry.reason ?? "revoked";
    if (entry.tokenKind !== null) {
      if (NOT_A_REVOCATION.has(reason) || entry.familyId === null) {
        silent.push(entry.cursor);
        continue;
      }
      // A family's entries of one transaction (its access and refresh token, its live sessions) are one event.
      const key = `${entry.txn}:${entry.familyId}`;
      const known = families.get(key);
      if (known) {
        known.cursors.push(entry.cursor);
        continue;
      }
      const subject: Subject = { format: "complex", session: { format: "opaque", id: entry.familyId } };
      // A client's own family (client_credentials) has the client as its subject: no user.
      if (entry.subject !== null && entry.hasGrant) subject.user = user(entry.subject);
      if (entry.clientId !== null) subject.application = application(entry.clientId);
      const signal = { cursors: [entry.cursor], type: EVENT_TYPES.sessionRevoked, subject, event: common(entry, reason), txn: entry.txn, streamId: null };
      families.set(key, signal);
      signals.push(signal);
      continue;
    }
    const type = entry.event === null ? undefined : LOGGED[entry.event];
    if (type === undefined) {
      silent.push(entry.cursor);
      continue;
    }
    const detail = entry.detail ?? {};
    let subject: Subject;
    let event: Record<string, unknown>;
    if (entry.streamId !== null) {
      // SSF 1.0 §8.1.4.1, §8.1.5: the stream itself is the subject, as an opaque id.
      subject = { format: "opaque", id: entry.streamId };
      event = type === EVENT_TYPES.verification
        ? detail.state === undefined ? {} : { state: detail.state }
        : { status: detail.status, ...(entry.reason ? { reason: entry.reason } : {}) };
    } else if (entry.subject !== null) {
      subject = user(entry.subject);
      event = { ...common(entry, reason), ...detail };
    } else if (entry.clientId !== null) {
      subject = { format: "complex", application: application(entry.clientId) };
      event = { ...common(entry, reason), ...detail };
    } else {
      silent.push(entry.cursor);
      continue;
    }
    signals.push({ cursors: [entry.cursor], type, subject, event, txn: entry.txn, streamId: entry.streamId });
  }
  return { signals, silent };
}

/** CAEP 1.0 §2's optional claims every event here carries. */
function common(entry: LogEntry, reason: string): Record<string, unknown> {
  return {
    event_timestamp: entry.at,
    initiating_entity: INITIATED_BY[reason] ?? "system",
    reason_admin: { en: reason },
  };
}

/** JSON with its object keys sorted: a subject's identity, whatever order its members came in. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * Whether a subject a receiver named matches an event's subject (SSF 1.0 §8.1.3.1): simple
 * subjects when identical; complex ones when every member is absent from one of them or
 * identical in both. A simple subject also matches a complex one holding it as a member (the
 * user of a session, say): removing a user removes the events about that user.
 */
export function subjectMatches(named: Subject, event: Subject): boolean {
  if (named.format !== "complex" && event.format !== "complex") return canonical(named) === canonical(event);
  if (named.format !== "complex") return members(event).some((member) => canonical(member) === canonical(named));
  if (event.format !== "complex") return false;
  const fields = new Set([...Object.keys(named), ...Object.keys(event)].filter((field) => field !== "format"));
  for (const field of fields) {
    if (named[field] !== undefined && event[field] !== undefined && canonical(named[field]) !== canonical(event[field])) return false;
  }
  return true;
}

const members = (subject: Subject): unknown[] => Object.entries(subject).filter(([field]) => field !== "format").map(([, value]) => value);

/** RFC 9493 formats (and SSF 1.0 §3.5's) whose members a receiver may name, with what each requires. */
const FORMATS: Record<string, readonly string[]> = {
  account: ["uri"],
  email: ["email"],
  iss_sub: ["iss", "sub"],
  opaque: ["id"],
  phone_number: ["phone_number"],
  did: ["url"],
  uri: ["uri"],
  jwt_id: ["iss", "jti"],
  saml_assertion_id: ["issuer", "assertion_id"],
};
const COMPLEX_MEMBERS = new Set(["user", "device", "session", "application", "tenant", "org_unit", "group"]);

/** Checks a subject a receiver sent (add/remove subject); answers why it is not one, or undefined. */
export function subjectProblem(value: unknown, nested = false): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "a subject is a JSON object";
  const subject = value as Record<string, unknown>;
  const format = subject.format;
  if (typeof format !== "string") return "a subject has a format";
  if (format === "complex") {
    if (nested) return "a complex subject cannot hold another";
    const fields = Object.keys(subject).filter((field) => field !== "format");
    if (fields.length === 0) return "a complex subject has at least one member";
    for (const field of fields) {
      if (!COMPLEX_MEMBERS.has(field)) return `unknown complex subject member "${field.slice(0, 40)}"`;
      const problem = subjectProblem(subject[field], true);
      if (problem) return `${field}: ${problem}`;
    }
    return undefined;
  }
  const required = FORMATS[format];
  if (!required) return `unsupported subject format "${format.slice(0, 40)}"`;
  for (const member of required) {
    if (typeof subject[member] !== "string" || subject[member] === "") return `a subject of format ${format} has a non-empty ${member}`;
  }
  const extra = Object.keys(subject).filter((field) => field !== "format" && !required.includes(field));
  if (extra.length > 0) return `a subject of format ${format} has no member "${extra[0]!.slice(0, 40)}"`;
  return undefined;
}
