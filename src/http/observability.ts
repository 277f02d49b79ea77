// Request observability for every endpoint: a request id (returned as X-Request-Id and added to
// every log line written while the request runs), one JSON log line per request, request
// metrics by route pattern, and GET /metrics (Prometheus text).
import { randomUUID } from "node:crypto";
import { Elysia } from "elysia";
import { isDatabaseError, isDatabaseUnavailable } from "../../db/failures.ts";
import type { Logger } from "../log.ts";
import { errorForLog, logContext } from "../log.ts";
import { toOAuthError } from "./error-plugin.ts";
import { NO_STORE } from "./responses.ts";
import type { Metrics } from "../metrics.ts";

/** An incoming X-Request-Id (set by a load balancer) is kept when it is this plain. */
const INCOMING_REQUEST_ID = /^[A-Za-z0-9._:-]{8,64}$/;

export const UNMATCHED_ROUTE = "unmatched";

function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const end = url.slice(start).search(/[?#]/);
  return end < 0 ? url.slice(start) : url.slice(start, start + end);
}

/** Must be used before the error plugin: its onError only observes, the error plugin answers. */
export function observability({ log, metrics }: { log: Logger; metrics: Metrics }) {
  const routes = new WeakMap<Request, string>();
  const plugin = new Elysia({ name: "observability" });
  let staticPaths: Set<string> | undefined;

  /** The route pattern of a request: what Elysia matched, else a known static path, else "unmatched". */
  function routeOf(request: Request): string {
    const matched = routes.get(request);
    if (matched) return matched;
    // Requests answered before routing (limits, CORS preflight): look the path up among the
    // app's static routes (getGlobalRoutes is protected; @elysiajs/openapi reads it the same way).
    if (!staticPaths) {
      const all = (plugin as unknown as { getGlobalRoutes(): Array<{ path: string }> }).getGlobalRoutes();
      staticPaths = new Set(all.map((r) => r.path).filter((p) => !/[:*]/.test(p)));
    }
    const path = pathOf(request.url);
    return staticPaths.has(path) ? path : UNMATCHED_ROUTE;
  }

  async function observe(request: Request, handle: (request: Request) => Response | Promise<Response>): Promise<Response> {
    const began = performance.now();
    const incoming = request.headers.get("x-request-id");
    const requestId = incoming && INCOMING_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    metrics.requestsInFlight.value++;
    let response: Response;
    try {
      response = await logContext.run({ request_id: requestId }, () => handle(request));
    } catch (error) {
      // Elysia maps handler errors itself; this is the last line of defence.
      log.error("http.error.unexpected", { request_id: requestId, error: errorForLog(error) });
      response = toOAuthError(error).toResponse();
    } finally {
      metrics.requestsInFlight.value--;
    }
    try {
      response.headers.set("x-request-id", requestId);
    } catch {
      response = new Response(response.body, response);
      response.headers.set("x-request-id", requestId);
    }
    const seconds = (performance.now() - began) / 1000;
    const labels = { method: request.method, route: routeOf(request), status: String(response.status) };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, seconds);
    log.info("http.request", {
      request_id: requestId,
      method: request.method.slice(0, 16),
      route: labels.route,
      status: response.status,
      duration_ms: Math.round(seconds * 100_000) / 100,
    });
    return response;
  }

  return plugin
    .wrap(((handle: (request: Request) => Response | Promise<Response>) => (request: Request) => observe(request, handle)) as never)
    .onTransform({ as: "global" }, ({ request, route }) => {
      routes.set(request, route);
    })
    .onError({ as: "global" }, ({ request, route, error }) => {
      if (route) routes.set(request, route);
      if (isDatabaseUnavailable(error)) metrics.dbErrors.inc({ kind: "unavailable" });
      else if (isDatabaseError(error) || isDatabaseError((error as { cause?: unknown })?.cause)) {
        metrics.dbErrors.inc({ kind: "query" });
      }
    })
    .get(
      "/metrics",
      async () =>
        new Response(await metrics.render(), {
          headers: { "Content-Type": metrics.contentType, ...NO_STORE },
        }),
      { detail: { summary: "Prometheus metrics", tags: ["operations"] } },
    );
}
