// Responses that must never be stored by a cache: every token, error and description a client
// receives (RFC 6749 §5.1: "Cache-Control: no-store"; Pragma for HTTP/1.0 caches).
export const NO_STORE: Readonly<Record<string, string>> = Object.freeze({ "Cache-Control": "no-store", Pragma: "no-cache" });

/** A JSON response with the no-store headers (and `headers` on top). */
export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", ...NO_STORE, ...headers },
  });
}

/** An empty response with the no-store headers (RFC 7009 §2.2: revocation answers 200 with no body). */
export function emptyResponse(status = 200): Response {
  return new Response(null, { status, headers: NO_STORE });
}
