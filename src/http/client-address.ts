// The address a request came from, for per-IP limits: the TCP peer, or — behind N trusted
// proxies (TA_TRUSTED_PROXIES) — the address the outermost trusted proxy saw, taken from the
// right of X-Forwarded-For (entries further left are written by the client and can be forged).
const peers = new WeakMap<Request, string>();

/** Records the TCP peer of a request (the server calls this; app.handle alone has no socket). */
export function rememberPeer(request: Request, address: string | undefined): void {
  if (address) peers.set(request, address);
}

export function clientAddress(request: Request, trustedProxies: number): string {
  const peer = peers.get(request) ?? "unknown";
  if (trustedProxies <= 0) return peer;
  const forwarded = request.headers.get("x-forwarded-for");
  if (!forwarded) return peer;
  const hops = forwarded.split(",").map((hop) => hop.trim()).filter((hop) => hop !== "");
  // The last trustedProxies entries were appended by our proxies; the one before is the client.
  return (hops[hops.length - trustedProxies] ?? hops[0] ?? peer).slice(0, 64);
}
