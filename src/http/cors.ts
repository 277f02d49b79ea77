// CORS for endpoints browser-based public clients call (token, revocation, UserInfo), DPoP's headers included. Exact origins only,
// never `*`, never with credentials (the Fetch standard forbids `*` with credentials, and
// these endpoints authenticate by form fields, not cookies).
import { Elysia } from "elysia";

export function cors(paths: readonly string[], origins: readonly string[]) {
  const allowed = new Set(origins);
  const covered = new Set(paths);
  return new Elysia({ name: "cors", seed: [paths, origins] }).onRequest(({ request, set }) => {
    const path = new URL(request.url).pathname;
    if (!covered.has(path)) return;
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
          "Access-Control-Allow-Methods": "GET, POST",
          // DPoP (RFC 9449 §4.1): proofs come in a header of their own.
          "Access-Control-Allow-Headers": "Authorization, Content-Type, DPoP",
          "Access-Control-Max-Age": "600",
          Vary: "Origin",
        },
      });
    }
  });
}
