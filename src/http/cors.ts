// CORS for endpoints browser-based public clients call (token, revocation, UserInfo), DPoP's headers included. Exact origins only,
// never `*`, never with credentials (the Fetch standard forbids `*` with credentials, and
// these endpoints authenticate by form fields, not cookies).
import { Elysia } from "elysia";

/** `methods`: each covered path and the methods a preflight allows on it. */
export function cors(methods: Readonly<Record<string, readonly string[]>>, origins: readonly string[]) {
  const allowed = new Set(origins);
  return new Elysia({ name: "cors", seed: [methods, origins] }).onRequest(({ request, set }) => {
    const path = new URL(request.url).pathname;
    const pathMethods = Object.hasOwn(methods, path) ? methods[path] : undefined;
    if (!pathMethods) return;
    set.headers["vary"] = "Origin";
    const origin = request.headers.get("origin");
    if (!origin || !allowed.has(origin)) return;
    set.headers["access-control-allow-origin"] = origin;
    // RFC 9449 §8: a browser client reads the server's nonce from the DPoP-Nonce header.
    set.headers["access-control-expose-headers"] = "DPoP-Nonce";
    if (request.method === "OPTIONS") {
      return new Response(null, {
        status: 204,
        headers: {
          "Access-Control-Allow-Origin": origin,
          "Access-Control-Allow-Methods": pathMethods.join(", "),
          // DPoP (RFC 9449 §4.1): proofs come in a header of their own.
          "Access-Control-Allow-Headers": "Authorization, Content-Type, DPoP",
          "Access-Control-Max-Age": "600",
          Vary: "Origin",
        },
      });
    }
  });
}
