// Honours revocation through the authorization server's Shared Signals transmitter (SSF 1.0,
// poll delivery, RFC 8936): a receiver of its own with a client_credentials token (scope `ssf`)
// makes a poll stream for this process, long-polls it, verifies every Security Event Token
// (RFC 8417) against the server's JWKS and acknowledges it, and keeps the deny-list the events
// imply — a CAEP session-revoked names the token family (the `sid` claim of its access tokens),
// a RISC account-disabled or account-purged the user (`sub`, for tokens issued before it).
// The stream is made with TokenAuthority's `backlog` extension, so it starts with every
// revocation still in force; it is deleted on close, and made again if it disappears.
import type { JWTVerifyGetKey } from "jose";
import { errors, jwtVerify } from "jose";
import type { ClientCredentials } from "./client-credentials.ts";
import { basicAuthorization } from "./client-credentials.ts";
import { BearerError } from "./errors.ts";

const CAEP = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC = "https://schemas.openid.net/secevent/risc/event-type/";
export const SESSION_REVOKED = `${CAEP}session-revoked`;
export const ACCOUNT_DISABLED = `${RISC}account-disabled`;
export const ACCOUNT_PURGED = `${RISC}account-purged`;
const POLL = "urn:ietf:rfc:8936";
/** Streams this library makes say so in their description (and which resource they serve). */
export const STREAM_DESCRIPTION_PREFIX = "token-authority resource server";

export interface SsfClientOptions extends ClientCredentials {
  issuer: string;
  /** Which resource this process serves (named in its stream's description). */
  audience: string;
  jwks: JWTVerifyGetKey;
  algorithms: string[];
  /** Default `${issuer}/oauth/token`. */
  tokenEndpoint?: string;
  /** The transmitter's metadata; default the SSF 1.0 §7.2 well-known URL of the issuer. */
  configurationUrl?: string;
  /**
   * Without a poll answered for this long the deny-list may be missing revocations: tokens are
   * then refused with 503 until the transmitter answers again. Default 45 s (a long poll lasts
   * up to the server's TA_SSF_LONG_POLL, 20 s by default).
   */
  maxStalenessMs?: number;
  /** How long a revoked family or user is remembered: the longest access-token lifetime. Default 24 h. */
  tokenLifetimeSeconds?: number;
  fetch?: typeof fetch;
  /** Problems, for the host's logs (never carries credentials or tokens). */
  onError?: (error: unknown) => void;
}

/** What a verified access token says that revocation by event can match. */
export interface RevocableClaims {
  sub: string;
  iat: number;
  sid?: unknown;
}

interface Metadata {
  configuration_endpoint: string;
}

class HttpError extends Error {
  constructor(readonly status: number, what: string) {
    super(`${what} answered ${status}`);
  }
}

const MAX_EVENTS = 1000;
const MAX_RETRY_MS = 10_000;
const REQUEST_TIMEOUT_MS = 60_000;

/** SSF 1.0 §7.2: the metadata URL, with the issuer's path (if any) after the well-known segment. */
function metadataUrlOf(issuer: string): string {
  const url = new URL(issuer);
  const path = url.pathname === "/" ? "" : url.pathname.replace(/\/$/, "");
  return `${url.origin}/.well-known/ssf-configuration${path}`;
}

export class SharedSignalsClient {
  /** sid (a token family) → until when (ms) it is remembered. */
  private readonly families = new Map<string, number>();
  /** sub → the newest event that revoked the user's tokens (NumericDate), and until when it is remembered. */
  private readonly users = new Map<string, { at: number; until: number }>();
  private readonly abort = new AbortController();
  private readonly maxStalenessMs: number;
  private readonly lifetimeMs: number;
  private readonly fetchFn: typeof fetch;
  private token: { value: string; until: number } | undefined;
  private pollUrl: string | undefined;
  private streamId: string | undefined;
  private configurationEndpoint: string | undefined;
  private lastAnswer = 0;
  private synced = false;
  private closed = false;
  private markReady!: () => void;
  /** Resolves once the stream's backlog has been read (every revocation in force is known). */
  readonly ready = new Promise<void>((resolve) => (this.markReady = resolve));
  private readonly running: Promise<void>;

  constructor(private readonly options: SsfClientOptions) {
    this.maxStalenessMs = options.maxStalenessMs ?? 45_000;
    this.lifetimeMs = (options.tokenLifetimeSeconds ?? 24 * 3600) * 1000;
    this.fetchFn = options.fetch ?? fetch;
    this.running = this.run();
  }

  /** True if an event revoked this token; throws 503 when the deny-list cannot be trusted. */
  isRevoked(claims: RevocableClaims): boolean {
    if (!this.synced) throw BearerError.unavailable("the shared signals stream has not synchronised yet");
    if (Date.now() - this.lastAnswer > this.maxStalenessMs) throw BearerError.unavailable("the shared signals transmitter is unreachable");
    if (typeof claims.sid === "string" && this.families.has(claims.sid)) return true;
    const user = this.users.get(claims.sub);
    return user !== undefined && claims.iat <= user.at;
  }

  /** Stops polling and deletes this process's stream (best effort). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    await this.running;
    if (this.streamId && this.configurationEndpoint && this.token) {
      const url = new URL(this.configurationEndpoint);
      url.searchParams.set("stream_id", this.streamId);
      await this.fetchFn(url, { method: "DELETE", headers: { authorization: `Bearer ${this.token.value}` }, signal: AbortSignal.timeout(5000) })
        .then((response) => response.body?.cancel())
        .catch((error) => this.options.onError?.(error));
    }
  }

  private async run(): Promise<void> {
    let failures = 0;
    let ack: string[] = [];
    let setErrs: Record<string, { err: string; description: string }> = {};
    while (!this.closed) {
      try {
        if (!this.pollUrl) await this.makeStream();
        const answer = await this.poll({
          ack,
          setErrs,
          maxEvents: MAX_EVENTS,
          // Until the backlog is read, and while more is waiting, no waiting.
          returnImmediately: !this.synced,
        });
        ack = [];
        setErrs = {};
        this.lastAnswer = Date.now();
        failures = 0;
        for (const [jti, set] of Object.entries(answer.sets ?? {})) {
          const problem = await this.apply(set);
          if (problem) setErrs[jti] = problem;
          else ack.push(jti);
        }
        if (!this.synced && !answer.moreAvailable && Object.keys(answer.sets ?? {}).length === 0) {
          this.synced = true;
          this.markReady();
        }
        this.prune();
      } catch (error) {
        if (this.closed) return;
        // Unacknowledged SETs come again (RFC 8936 §2.4): nothing is lost by dropping the acks.
        ack = [];
        setErrs = {};
        if (error instanceof HttpError && error.status === 401) this.token = undefined;
        if (error instanceof HttpError && error.status === 404) this.pollUrl = undefined; // the stream is gone: make another
        this.options.onError?.(error);
        failures++;
        const delay = Math.min(500 * 2 ** Math.max(0, failures - 1), MAX_RETRY_MS);
        await new Promise((resolve) => setTimeout(resolve, delay * (0.75 + Math.random() / 2)));
      }
    }
  }

  /**
   * Verifies one SET (RFC 8417 §2, SSF 1.0 §4.1: signed by the issuer's key, typ secevent+jwt,
   * this receiver as audience) and applies what it says; answers an RFC 8935 §2.4 error for setErrs.
   */
  private async apply(set: string): Promise<{ err: string; description: string } | undefined> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(set, this.options.jwks, {
        issuer: this.options.issuer,
        audience: this.options.clientId,
        typ: "secevent+jwt",
        algorithms: this.options.algorithms,
      }));
    } catch (error) {
      this.options.onError?.(error);
      if (error instanceof errors.JWTClaimValidationFailed && error.claim === "aud") return { err: "invalid_audience", description: "not for this receiver" };
      if (error instanceof errors.JWTClaimValidationFailed && error.claim === "iss") return { err: "invalid_issuer", description: "not from this issuer" };
      // A key set that could not be fetched is not the SET's fault: left unacknowledged, it comes again.
      if (!(error instanceof errors.JOSEError) || error instanceof errors.JWKSTimeout || error.code === "ERR_JOSE_GENERIC") throw error;
      return { err: "invalid_key", description: "the signature does not verify" };
    }
    const events = payload.events;
    const subject = payload.sub_id as Record<string, unknown> | undefined;
    if (typeof events !== "object" || events === null || typeof subject !== "object" || subject === null) {
      return { err: "invalid_request", description: "a SET has events and a sub_id" };
    }
    for (const [type, event] of Object.entries(events as Record<string, Record<string, unknown>>)) {
      const at = typeof event?.event_timestamp === "number" ? event.event_timestamp : Math.floor(Date.now() / 1000);
      if (type === SESSION_REVOKED) {
        const session = (subject.format === "complex" ? subject.session : subject) as Record<string, unknown> | undefined;
        if (session?.format === "opaque" && typeof session.id === "string") this.families.set(session.id, Date.now() + this.lifetimeMs);
      } else if (type === ACCOUNT_DISABLED || type === ACCOUNT_PURGED) {
        const user = (subject.format === "complex" ? subject.user : subject) as Record<string, unknown> | undefined;
        if (user?.format === "iss_sub" && user.iss === this.options.issuer && typeof user.sub === "string") {
          const known = this.users.get(user.sub);
          this.users.set(user.sub, { at: Math.max(at, known?.at ?? 0), until: Date.now() + this.lifetimeMs });
        }
      }
      // Other events (credential-change, account-enabled, verification, stream-updated) end no token here.
    }
    return undefined;
  }

  private prune(now = Date.now()): void {
    for (const [sid, until] of this.families) if (until <= now) this.families.delete(sid);
    for (const [sub, entry] of this.users) if (entry.until <= now) this.users.delete(sub);
  }

  private async poll(body: Record<string, unknown>): Promise<{ sets?: Record<string, string>; moreAvailable?: boolean }> {
    const response = await this.call("POST", this.pollUrl!, body);
    if (response.status !== 200) throw new HttpError(response.status, "the poll endpoint");
    return (await response.json()) as { sets?: Record<string, string>; moreAvailable?: boolean };
  }

  /**
   * A poll stream for this process (SSF 1.0 §8.1.1.1), for the events that end tokens. With too
   * many streams already (409: earlier processes that did not close), the oldest of this
   * library's is deleted and the creation tried once more.
   */
  private async makeStream(): Promise<void> {
    if (!this.configurationEndpoint) {
      const response = await this.fetchFn(this.options.configurationUrl ?? metadataUrlOf(this.options.issuer), { signal: this.signal() });
      if (response.status !== 200) throw new HttpError(response.status, "the transmitter's metadata");
      this.configurationEndpoint = ((await response.json()) as Metadata).configuration_endpoint;
    }
    const config = {
      delivery: { method: POLL },
      events_requested: [SESSION_REVOKED, ACCOUNT_DISABLED, ACCOUNT_PURGED],
      description: `${STREAM_DESCRIPTION_PREFIX} for ${this.options.audience}`,
      backlog: true,
    };
    let response = await this.call("POST", this.configurationEndpoint, config);
    if (response.status === 409) {
      await response.body?.cancel();
      await this.deleteOldestOwnStream();
      response = await this.call("POST", this.configurationEndpoint, config);
    }
    if (response.status !== 201) throw new HttpError(response.status, "stream creation");
    const stream = (await response.json()) as { stream_id: string; delivery: { endpoint_url: string } };
    this.streamId = stream.stream_id;
    this.pollUrl = stream.delivery.endpoint_url;
    // A stream made again reads the backlog again: the deny-list is not trusted meanwhile only if it never was.
  }

  private async deleteOldestOwnStream(): Promise<void> {
    const response = await this.call("GET", this.configurationEndpoint!);
    if (response.status !== 200) throw new HttpError(response.status, "the stream list");
    const streams = (await response.json()) as Array<{ stream_id: string; description?: string }>;
    const oldest = streams.find((stream) => stream.description?.startsWith(STREAM_DESCRIPTION_PREFIX));
    if (!oldest) return;
    const url = new URL(this.configurationEndpoint!);
    url.searchParams.set("stream_id", oldest.stream_id);
    await (await this.call("DELETE", url.href)).body?.cancel();
  }

  /** One call with this receiver's bearer token (fetched, and fetched again when it nears expiry). */
  private async call(method: string, url: string, body?: unknown): Promise<Response> {
    const token = await this.accessToken();
    return this.fetchFn(url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: this.signal(),
    });
  }

  private async accessToken(): Promise<string> {
    if (this.token && this.token.until > Date.now()) return this.token.value;
    const response = await this.fetchFn(this.options.tokenEndpoint ?? `${this.options.issuer}/oauth/token`, {
      method: "POST",
      headers: { authorization: basicAuthorization(this.options), "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", scope: "ssf" }),
      signal: this.signal(),
    });
    if (response.status !== 200) throw new HttpError(response.status, "the token endpoint");
    const { access_token, expires_in } = (await response.json()) as { access_token: string; expires_in?: number };
    // Renewed a minute early (or at half its life, if shorter), so a long poll never carries an expired token.
    const lifetime = (expires_in ?? 300) * 1000;
    this.token = { value: access_token, until: Date.now() + Math.max(lifetime / 2, lifetime - 60_000) };
    return access_token;
  }

  private signal(): AbortSignal {
    return AbortSignal.any([this.abort.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
  }
}
