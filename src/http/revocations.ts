// GET /oauth/revocations — the revocation feed for resource servers: a JSON page of revoked
// JTIs after a cursor, or with `Accept: text/event-stream` a Server-Sent Events stream
// (one event per entry, `id:` = cursor, resumable with Last-Event-ID; WHATWG HTML §9.2).
import { Elysia, t } from "elysia";
import { OAuthError } from "../errors.ts";
import { jsonResponse, NO_STORE } from "./responses.ts";
import { BASIC_REALM } from "../oauth/client-auth.ts";
import type { FeedEvent, RevocationFeed, Subscription } from "../oauth/revocation-feed.ts";
import { MAX_PAGE } from "../oauth/revocation-feed.ts";
import type { Services } from "../services.ts";
import type { ClientAuthDeps } from "./client-auth.ts";
import { authenticateThrottled } from "./client-auth.ts";
import { onlyMethods } from "./method-not-allowed.ts";

const cursor = t.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const revocationsQuery = t.Object({
  after: t.Optional(cursor),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: MAX_PAGE })),
  /** Only entries of this kind (resource servers only ever see access tokens). */
  token_type: t.Optional(t.Union([t.Literal("access_token"), t.Literal("refresh_token")])),
});

/** A GET has no form body: confidential clients authenticate with HTTP Basic (RFC 6749 §2.3.1). */
function basicClientAuth(deps: ClientAuthDeps) {
  return new Elysia().resolve({ as: "scoped" }, async ({ headers, request, server }) => {
    const authorization = headers.authorization;
    if (!authorization || !/^Basic\s/i.test(authorization)) {
      throw OAuthError.invalidClient("authenticate with HTTP Basic client credentials", { "WWW-Authenticate": BASIC_REALM });
    }
    const credentials = { authorization, clientId: undefined, clientSecret: undefined };
    return { authenticated: await authenticateThrottled(deps, credentials, request, server) };
  });
}

const encoder = new TextEncoder();
/**
 * One SSE event per entry. Its id is where a reconnecting client resumes: the entry's cursor,
 * or the cursor below a revocation still being committed (see oauth/revocation-feed.ts).
 */
const event = ({ entry, resume }: FeedEvent) => `id: ${resume}\ndata: ${JSON.stringify(entry)}\n\n`;
/** Chunks queued for a subscriber that does not read; past this it is dropped (it resumes later). */
const MAX_QUEUED_CHUNKS = 1000;

function eventStream(subscription: Subscription, feed: RevocationFeed, signal: AbortSignal): Response {
  let stop = () => {};
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      let stopped = false;
      const heartbeat = setInterval(() => send(": heartbeat\n\n"), feed.options.heartbeatMs);
      stop = () => {
        if (stopped) return;
        stopped = true;
        clearInterval(heartbeat);
        signal.removeEventListener("abort", stop);
        subscription.close();
        try {
          controller.close();
        } catch {
          // already closed by the client
        }
      };
      function send(text: string) {
        if (stopped) return;
        if ((controller.desiredSize ?? 0) < -MAX_QUEUED_CHUNKS) return stop();
        controller.enqueue(encoder.encode(text));
      }
      signal.addEventListener("abort", stop);
      send("retry: 1000\n\n");
      for (let i = 0; i < subscription.backlog.length; i += 500) {
        send(subscription.backlog.slice(i, i + 500).map(event).join(""));
      }
      // Marks the end of the backlog: what follows is live.
      send(`event: ready\ndata: {"backlog":${subscription.backlog.length}}\n\n`);
      subscription.attach({ events: (events) => send(events.map(event).join("")), close: () => stop() });
    },
    cancel() {
      stop();
    },
  });
  return new Response(stream, {
    headers: {
      "Content-Type": "text/event-stream; charset=utf-8",
      ...NO_STORE,
      "X-Accel-Buffering": "no",
    },
  });
}

export function revocationsEndpoint(services: Services) {
  const { feed } = services;
  return new Elysia()
    .use(onlyMethods("/oauth/revocations", ["GET"]))
    .use(basicClientAuth(services))
    .get(
      "/oauth/revocations",
      async ({ query, headers, request, server }) => {
        const kind = query.token_type;
        if (!headers.accept?.includes("text/event-stream")) {
          return jsonResponse(await feed.page(query.after ?? 0, query.limit ?? 100, kind));
        }
        // A reconnecting EventSource sends the id of the last event it received.
        const lastEventId = headers["last-event-id"];
        if (lastEventId !== undefined && !/^\d{1,15}$/.test(lastEventId)) {
          throw OAuthError.invalidRequest("Last-Event-ID must be a cursor");
        }
        const after = lastEventId !== undefined ? Number(lastEventId) : (query.after ?? 0);
        const subscription = await feed.subscribe(after, kind);
        // Bun closes connections idle for 10 s by default; heartbeats keep it busy, this makes sure.
        server?.timeout?.(request, 0);
        return eventStream(subscription, feed, request.signal);
      },
      { query: revocationsQuery },
    );
}
