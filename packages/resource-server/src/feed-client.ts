// Follows the authorization server's revocation feed (GET /oauth/revocations as Server-Sent
// Events) and keeps the deny-list of revoked access tokens: a revocation is known within
// milliseconds, with no network call per request. Reconnects with Last-Event-ID.
import type { ClientCredentials } from "./client-credentials.ts";
import { basicAuthorization } from "./client-credentials.ts";
import { DenyList } from "./deny-list.ts";
import { BearerError } from "./errors.ts";

export interface FeedClientOptions extends ClientCredentials {
  /** The feed URL, e.g. https://auth.example/oauth/revocations. */
  url: string;
  /**
   * With no byte from the feed (entries or heartbeats) for this long, the deny-list may be
   * missing revocations: tokens are then refused with 503 until the feed is back. Default 15 s.
   */
  maxStalenessMs?: number;
  /** Kept past a token's exp (the verifier's clock tolerance). */
  retainSeconds?: number;
  fetch?: typeof fetch;
  /** Connection problems, for the host's logs (never carries credentials). */
  onError?: (error: unknown) => void;
}

interface FeedEntry {
  jti: string;
  exp: number;
}

const MAX_RECONNECT_MS = 10_000;

export class RevocationFeedClient {
  readonly denyList: DenyList;
  private readonly abort = new AbortController();
  private readonly maxStalenessMs: number;
  private lastEventId: string | undefined;
  private lastActivity = 0;
  private reconnectMs = 1000;
  private synced = false;
  private closed = false;
  private markReady!: () => void;
  /** Resolves when the feed has sent its backlog once. */
  readonly ready = new Promise<void>((resolve) => (this.markReady = resolve));
  private readonly pruner: ReturnType<typeof setInterval>;

  constructor(private readonly options: FeedClientOptions) {
    this.maxStalenessMs = options.maxStalenessMs ?? 15_000;
    this.denyList = new DenyList(options.retainSeconds ?? 0);
    this.pruner = setInterval(() => this.denyList.prune(), 60_000);
    (this.pruner as { unref?: () => void }).unref?.();
    void this.run();
  }

  /** True if the token is revoked; throws 503 when the deny-list cannot be trusted. */
  isRevoked(jti: string): boolean {
    if (!this.synced) throw BearerError.unavailable("the revocation feed has not synchronised yet");
    if (Date.now() - this.lastActivity > this.maxStalenessMs) throw BearerError.unavailable("the revocation feed is unreachable");
    return this.denyList.has(jti);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.pruner);
    this.abort.abort();
  }

  private async run(): Promise<void> {
    const fetchFn = this.options.fetch ?? fetch;
    const url = new URL(this.options.url);
    url.searchParams.set("token_type", "access_token"); // resource servers only ever see access tokens
    let failures = 0;
    while (!this.closed) {
      try {
        const headers: Record<string, string> = {
          accept: "text/event-stream",
          authorization: basicAuthorization(this.options),
        };
        if (this.lastEventId !== undefined) headers["last-event-id"] = this.lastEventId;
        const response = await fetchFn(url, { headers, signal: this.abort.signal });
        if (!response.ok || !response.body) {
          await response.body?.cancel();
          throw new Error(`the revocation feed answered ${response.status}`);
        }
        failures = 0;
        await this.consume(response.body);
        if (!this.closed) throw new Error("the revocation feed closed the stream");
      } catch (error) {
        if (this.closed) return;
        this.options.onError?.(error);
        failures++;
      }
      const delay = Math.min(this.reconnectMs * 2 ** Math.max(0, failures - 1), MAX_RECONNECT_MS);
      await new Promise((resolve) => setTimeout(resolve, delay * (0.75 + Math.random() / 2)));
    }
  }

  /** Reads the event stream (WHATWG HTML §9.2.6 "Interpreting an event stream"). */
  private async consume(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = "message";
    let data: string[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      this.lastActivity = Date.now();
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop()!;
      for (const line of lines) {
        if (line === "") {
          if (data.length > 0) this.dispatch(event, data.join("\n"));
          event = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // heartbeat
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
        else if (field === "retry" && /^\d+$/.test(value)) this.reconnectMs = Number(value);
      }
    }
  }

  private dispatch(event: string, data: string): void {
    if (event === "ready") {
      this.synced = true;
      this.markReady();
    } else if (event === "message") {
      const entry = JSON.parse(data) as FeedEntry;
      if (typeof entry.jti === "string" && typeof entry.exp === "number") this.denyList.add(entry.jti, entry.exp);
    }
  }
}
