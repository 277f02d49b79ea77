// Shared Signals stream management (SSF 1.0 §7, §8): the transmitter's metadata, a receiver's
// streams (create, read, update, replace, delete), their status, the subjects a receiver removes
// or adds back, and verification. A receiver is a client whose `ssf` bearer token made the
// request; it sees and changes only its own streams (another's is "not found", no oracle).
import type { SsfStore, SsfStream, StreamStatus } from "../../db/stores/ssf.ts";
import type { Config } from "../config.ts";
import { OAuthError } from "../errors.ts";
import type { Outbound } from "../outbound.ts";
import { OutboundError } from "../outbound.ts";
import { SETTLE_SECONDS } from "../oauth/revocation-feed.ts";
import { canonical, EVENTS_SUPPORTED, subjectProblem } from "./events.ts";
import type { Subject } from "./events.ts";

export const PUSH = "urn:ietf:rfc:8935";
export const POLL = "urn:ietf:rfc:8936";
/** Seconds a receiver waits between two verification requests (SSF 1.0 §8.1.1 min_verification_interval). */
export const MIN_VERIFICATION_INTERVAL = 10;
const MAX_DESCRIPTION = 1000;

export const SSF_PATHS = {
  configuration: "/ssf/streams",
  status: "/ssf/status",
  addSubject: "/ssf/subjects/add",
  removeSubject: "/ssf/subjects/remove",
  verification: "/ssf/verify",
  poll: "/ssf/poll",
} as const;

/** SSF 1.0 §7.2: the path of the metadata, inserted between the host and the issuer's path. */
export function metadataPath(issuer: string): string {
  const path = new URL(issuer).pathname.replace(/\/$/, "");
  return `/.well-known/ssf-configuration${path}`;
}

/** SSF 1.0 §7.1 transmitter configuration metadata. */
export function transmitterMetadata(config: Pick<Config, "issuer">) {
  const { issuer } = config;
  return {
    spec_version: "1_0",
    issuer,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    delivery_methods_supported: [PUSH, POLL],
    configuration_endpoint: `${issuer}${SSF_PATHS.configuration}`,
    status_endpoint: `${issuer}${SSF_PATHS.status}`,
    add_subject_endpoint: `${issuer}${SSF_PATHS.addSubject}`,
    remove_subject_endpoint: `${issuer}${SSF_PATHS.removeSubject}`,
    verification_endpoint: `${issuer}${SSF_PATHS.verification}`,
    // §7.1.1: receivers call with OAuth 2.0 bearer tokens of this server (scope `ssf`).
    authorization_schemes: [{ spec_urn: "urn:ietf:rfc:6749" }],
    default_subjects: "ALL",
  };
}

/** The receiver-supplied part of a stream configuration, as a request carries it (§8.1.1). */
export interface StreamInput {
  stream_id?: string;
  events_requested?: string[];
  delivery?: { method?: string; endpoint_url?: string; authorization_header?: string };
  description?: string;
  /**
   * TokenAuthority's extension, at creation only: the stream starts with the events of every
   * revocation still in force (a receiver keeping its state in memory starts complete).
   */
  backlog?: boolean;
  // Transmitter-supplied: may be present in an update, and must then be what they are.
  iss?: unknown;
  aud?: unknown;
  events_supported?: unknown;
  events_delivered?: unknown;
  min_verification_interval?: unknown;
}

export type StreamsDeps = {
  store: SsfStore;
  config: Pick<Config, "issuer" | "ssfMaxStreams" | "ssfMaxSubjects" | "ssfRetention">;
  outbound: Outbound;
  /** Wakes delivery (a stream changed, or an event was logged for one). */
  changed: () => void;
};

const notFound = () => new OAuthError("not_found", "no such stream");

/** SSF 1.0 §8.1.2.1: a stream's status as the status endpoint answers it. */
const statusOf = (stream: SsfStream) => ({ stream_id: stream.id, status: stream.status, ...(stream.statusReason ? { reason: stream.statusReason } : {}) });

export class Streams {
  constructor(private readonly deps: StreamsDeps) {}

  /** The stream as the management API shows it; the push authorization header (a receiver's secret) is never shown. */
  describe(stream: SsfStream) {
    const { issuer } = this.deps.config;
    return {
      stream_id: stream.id,
      iss: issuer,
      aud: stream.audience,
      events_supported: EVENTS_SUPPORTED,
      ...(stream.eventsRequested ? { events_requested: stream.eventsRequested } : {}),
      events_delivered: stream.eventsDelivered,
      delivery:
        stream.deliveryMethod === PUSH
          ? { method: PUSH, endpoint_url: stream.endpointUrl }
          : { method: POLL, endpoint_url: `${issuer}${SSF_PATHS.poll}/${stream.id}` },
      ...(stream.description ? { description: stream.description } : {}),
      min_verification_interval: MIN_VERIFICATION_INTERVAL,
    };
  }

  async create(receiver: string, input: StreamInput) {
    if ((await this.deps.store.countFor(receiver)) >= this.deps.config.ssfMaxStreams) {
      // §8.1.1.1: 409 when the transmitter allows no more streams for this receiver.
      throw new OAuthError("conflict", `a receiver may have ${this.deps.config.ssfMaxStreams} streams (TA_SSF_MAX_STREAMS)`);
    }
    const stream = await this.deps.store.create(
      { clientId: receiver, audience: receiver, ...(await this.receiverSupplied(input)) },
      input.backlog ? { backlog: { settleSeconds: SETTLE_SECONDS } } : {},
    );
    this.deps.changed();
    return this.describe(stream);
  }

  async read(receiver: string, streamId: string | undefined) {
    if (streamId === undefined) return (await this.deps.store.list(receiver)).map((stream) => this.describe(stream));
    return this.describe(await this.own(receiver, streamId));
  }

  /** PATCH (§8.1.1.3): what is present changes, what is missing stays; PUT (§8.1.1.4): what is missing is deleted. */
  async update(receiver: string, input: StreamInput, replace: boolean) {
    if (typeof input.stream_id !== "string") throw OAuthError.invalidRequest("stream_id is required");
    const current = await this.own(receiver, input.stream_id);
    // "Transmitter-Supplied properties besides the stream_id MAY be present, but they MUST match
    // the expected value" (events_delivered: before the update).
    const shown = this.describe(current);
    for (const field of ["iss", "aud", "events_supported", "events_delivered", "min_verification_interval"] as const) {
      if (input[field] !== undefined && canonical(input[field]) !== canonical(shown[field])) {
        throw OAuthError.invalidRequest(`${field} is set by the transmitter and cannot change`);
      }
    }
    const merged: StreamInput = replace
      ? input
      : {
          events_requested: input.events_requested ?? current.eventsRequested ?? undefined,
          delivery: input.delivery ?? {
            method: current.deliveryMethod,
            ...(current.deliveryMethod === PUSH ? { endpoint_url: current.endpointUrl ?? undefined } : {}),
            ...(current.authorizationHeader ? { authorization_header: current.authorizationHeader } : {}),
          },
          description: input.description ?? current.description ?? undefined,
        };
    const stream = await this.deps.store.update(current.id, receiver, await this.receiverSupplied(merged));
    if (!stream) throw notFound();
    this.deps.changed();
    return this.describe(stream);
  }

  async delete(receiver: string, streamId: string): Promise<void> {
    if (!(await this.deps.store.delete(streamId, receiver))) throw notFound();
    this.deps.changed();
  }

  async status(receiver: string, streamId: string) {
    const stream = await this.own(receiver, streamId);
    return statusOf(stream);
  }

  /** The receiver changes its stream's status (no stream-updated event: it asked, §8.1.2). */
  async setStatus(receiver: string, streamId: string, status: StreamStatus, reason: string | undefined) {
    const stream = await this.deps.store.setStatus(streamId, status, reason ?? null, { clientId: receiver });
    if (!stream) throw notFound();
    this.deps.changed();
    return statusOf(stream);
  }

  /** An operator changes a stream's status: the receiver hears of it in a stream-updated event (§8.1.5). */
  async setStatusAsTransmitter(streamId: string, status: StreamStatus, reason: string | undefined) {
    const stream = await this.deps.store.setStatus(streamId, status, reason ?? null, { announce: { retention: this.deps.config.ssfRetention } });
    if (!stream) throw notFound();
    this.deps.changed();
    return statusOf(stream);
  }

  /** §8.1.3.2: the subject's events are sent again (every subject is in a stream until removed). */
  async addSubject(receiver: string, streamId: string, subject: unknown): Promise<void> {
    const stream = await this.own(receiver, streamId);
    await this.deps.store.includeSubject(stream.id, canonical(checkedSubject(subject)));
  }

  /** §8.1.3.3: no more events about the subject on this stream. */
  async removeSubject(receiver: string, streamId: string, subject: unknown): Promise<void> {
    const stream = await this.own(receiver, streamId);
    const checked = checkedSubject(subject);
    // §4.4 of the digest: the stream's own subject cannot be removed.
    if (checked.format === "opaque" && checked.id === stream.id) throw OAuthError.invalidRequest("a stream's own subject cannot be removed");
    if (!(await this.deps.store.excludeSubject(stream.id, canonical(checked), checked, this.deps.config.ssfMaxSubjects))) {
      throw OAuthError.invalidRequest(`a stream may have ${this.deps.config.ssfMaxSubjects} subjects removed (TA_SSF_MAX_SUBJECTS)`);
    }
  }

  /** §8.1.4.2: a verification event for the stream, echoing `state`; 429 more often than min_verification_interval. */
  async verify(receiver: string, streamId: string, state: string | undefined): Promise<void> {
    const stream = await this.own(receiver, streamId);
    if (!(await this.deps.store.verify(stream.id, state, MIN_VERIFICATION_INTERVAL, this.deps.config.ssfRetention))) {
      throw OAuthError.tooManyRequests(MIN_VERIFICATION_INTERVAL);
    }
    this.deps.changed();
  }

  private async own(receiver: string, streamId: string): Promise<SsfStream> {
    const stream = await this.deps.store.find(streamId, receiver);
    if (!stream) throw notFound();
    return stream;
  }

  /** The stored form of what the receiver supplies; endpoints checked as a push would check them. */
  private async receiverSupplied(input: StreamInput) {
    const requested = input.events_requested;
    // "A Transmitter MUST ignore any array values that it does not understand" (§8.1.1); with
    // nothing requested, every supported event is delivered.
    const delivered = requested === undefined ? [...EVENTS_SUPPORTED] : EVENTS_SUPPORTED.filter((type) => requested.includes(type));
    // §8.1.1.1: no delivery means poll.
    const method = input.delivery?.method ?? POLL;
    if (method !== PUSH && method !== POLL) throw OAuthError.invalidRequest(`delivery method must be ${PUSH} (push) or ${POLL} (poll)`);
    let endpointUrl: string | null = null;
    if (method === PUSH) {
      endpointUrl = input.delivery?.endpoint_url ?? null;
      if (!endpointUrl) throw OAuthError.invalidRequest("push delivery needs delivery.endpoint_url");
      try {
        await this.deps.outbound.check(endpointUrl);
      } catch (error) {
        if (error instanceof OutboundError) throw OAuthError.invalidRequest(`delivery.endpoint_url: ${error.message}`);
        throw error;
      }
    } else if (input.delivery?.endpoint_url !== undefined) {
      throw OAuthError.invalidRequest("for poll delivery the transmitter supplies endpoint_url");
    }
    return {
      eventsRequested: requested === undefined ? null : [...new Set(requested)],
      eventsDelivered: delivered,
      deliveryMethod: method,
      endpointUrl,
      authorizationHeader: method === PUSH ? (input.delivery?.authorization_header ?? null) : null,
      // "The transmitter MAY truncate the string beyond an allowed max length."
      description: input.description === undefined ? null : input.description.slice(0, MAX_DESCRIPTION),
    };
  }
}

function checkedSubject(subject: unknown): Subject {
  const problem = subjectProblem(subject);
  if (problem) throw OAuthError.invalidRequest(problem);
  return subject as Subject;
}
