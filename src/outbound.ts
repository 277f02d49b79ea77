// The one way this server fetches or pushes anything (client ID metadata documents, SSF pushes,
// back-channel logout tokens): https only; the host resolved first and every address
// it names checked — no loopback, private, link-local, shared, multicast, documentation or
// metadata-service address — and the connection made to the address that was checked, so a
// second DNS answer cannot move it (no rebinding); redirects followed by hand, each hop checked
// again, at most a few; bounded in time and in size. TA_OUTBOUND_ALLOW_HOSTS names host[:port]s
// that may be reached over plain http and on any address (local development and tests).
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";

export class OutboundError extends Error {
  override name = "OutboundError";
}

export interface OutboundPolicy {
  /** host[:port] (lower case) reachable over http and on any address. */
  allowHosts: ReadonlySet<string>;
}

export interface OutboundRequest {
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  /** Seconds for the whole exchange, body included. */
  timeoutMs: number;
  /** The body is refused past this many bytes (or, with `truncate`, read no further). */
  maxBytes: number;
  /** Reads at most `maxBytes` of the body and drops the rest, rather than fail (the status is what counts). */
  truncate?: boolean;
  maxRedirects: number;
}

export interface OutboundResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The URL that answered (after redirects). */
  url: string;
}

/** Loopback, private, shared, link-local, multicast, documentation, benchmarking, reserved (IPv4). */
const BLOCKED_V4: ReadonlyArray<readonly [number, number]> = [
  [0x00000000, 8], // 0.0.0.0/8 "this network"
  [0x0a000000, 8], // 10/8
  [0x64400000, 10], // 100.64/10 shared (CGNAT)
  [0x7f000000, 8], // 127/8 loopback
  [0xa9fe0000, 16], // 169.254/16 link-local (and 169.254.169.254, cloud metadata)
  [0xac100000, 12], // 172.16/12
  [0xc0000000, 24], // 192.0.0/24 protocol assignments
  [0xc0000200, 24], // 192.0.2/24 documentation
  [0xc0a80000, 16], // 192.168/16
  [0xc6120000, 15], // 198.18/15 benchmarking
  [0xc6336400, 24], // 198.51.100/24 documentation
  [0xcb007100, 24], // 203.0.113/24 documentation
  [0xe0000000, 4], // 224/4 multicast
  [0xf0000000, 4], // 240/4 reserved, broadcast
];

function v4(address: string): number {
  return address.split(".").reduce((value, part) => (value << 8) + Number(part), 0) >>> 0;
}

function blockedV4(address: string): boolean {
  const value = v4(address);
  return BLOCKED_V4.some(([network, bits]) => value >>> (32 - bits) === network >>> (32 - bits));
}

/** The 8 groups of an IPv6 address, expanded. */
function groups(address: string): number[] {
  let text = address.toLowerCase().split("%")[0]!;
  // An IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const value = v4(tail[1]!);
    text = text.slice(0, -tail[1]!.length) + `${(value >>> 16).toString(16)}:${(value & 0xffff).toString(16)}`;
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const left = head === "" ? [] : head.split(":");
  const right = rest === undefined ? [] : rest === "" ? [] : rest.split(":");
  const middle = rest === undefined ? [] : new Array(8 - left.length - right.length).fill("0");
  return [...left, ...middle, ...right].map((group) => Number.parseInt(group, 16));
}

function blockedV6(address: string): boolean {
  const g = groups(address);
  if (g.length !== 8 || g.some(Number.isNaN)) return true;
  if (g.every((x) => x === 0)) return true; // ::
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return true; // ::1
  // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible: judged as the IPv4 address.
  if (g.slice(0, 5).every((x) => x === 0) && (g[5] === 0xffff || g[5] === 0)) {
    return blockedV4(`${g[6]! >>> 8}.${g[6]! & 0xff}.${g[7]! >>> 8}.${g[7]! & 0xff}`);
  }
  if (g[0] === 0x64 && g[1] === 0xff9b) return true; // 64:ff9b::/96 NAT64 (reaches IPv4 behind it)
  if ((g[0]! & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local (fd00:ec2::254: metadata)
  if ((g[0]! & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((g[0]! & 0xff00) === 0xff00) return true; // ff00::/8 multicast
  if (g[0] === 0x2001 && g[1] === 0x0db8) return true; // 2001:db8::/32 documentation
  return false;
}

/** True for an address no outbound request may reach (unless its host is allowed by name). */
export function isBlockedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blockedV4(address);
  if (family === 6) return blockedV6(address);
  return true;
}

/** `host[:port]` as TA_OUTBOUND_ALLOW_HOSTS lists it, for a URL. */
function hostKeys(url: URL): string[] {
  const host = url.hostname.toLowerCase();
  return url.port ? [`${host}:${url.port}`] : [host, `${host}:${url.protocol === "https:" ? 443 : 80}`];
}

/**
 * Fetches a URL by the rules at the top of this file. Throws OutboundError (with a description
 * fit for a client) for anything refused or failed; answers whatever status the server gave.
 */
export async function outboundFetch(target: string, request: OutboundRequest, policy: OutboundPolicy): Promise<OutboundResponse> {
  const signal = AbortSignal.timeout(request.timeoutMs);
  let url = parseTarget(target);
  for (let hop = 0; ; hop++) {
    const address = await checkedAddress(url, policy, signal);
    // Connect to the address that was checked; the host travels in Host and, for TLS, in SNI
    // and in the certificate check.
    const pinned = new URL(url);
    pinned.hostname = isIP(address) === 6 ? `[${address}]` : address;
    let response: Response;
    try {
      response = await fetch(pinned, {
        method: request.method ?? "GET",
        headers: { ...request.headers, host: url.host },
        body: request.body,
        redirect: "manual",
        signal,
        tls: isIP(url.hostname) === 0
          ? { serverName: url.hostname, checkServerIdentity: (_name: string, cert: never) => checkServerIdentity(url.hostname, cert) }
          : undefined,
      } as RequestInit);
    } catch (error) {
      throw new OutboundError(signal.aborted ? `no answer within ${request.timeoutMs} ms` : `could not connect (${(error as Error).message.slice(0, 80)})`);
    }
    if (response.status >= 300 && response.status < 400 && response.headers.has("location")) {
      await response.body?.cancel();
      if (hop >= request.maxRedirects) {
        throw new OutboundError(request.maxRedirects === 0 ? "the URL redirects (redirects are not followed)" : `more than ${request.maxRedirects} redirects`);
      }
      url = new URL(response.headers.get("location")!, url);
      continue;
    }
    return { status: response.status, headers: response.headers, body: await readBounded(response, request.maxBytes, signal, request.truncate ?? false), url: url.toString() };
  }
}

function parseTarget(target: string): URL {
  try {
    return new URL(target);
  } catch {
    throw new OutboundError("not an absolute URL");
  }
}

/** The address to connect to for `url`, once its scheme, credentials and every address are checked. */
function checkedAddress(url: URL, policy: OutboundPolicy, signal: AbortSignal): Promise<string> {
  const allowed = hostKeys(url).some((key) => policy.allowHosts.has(key));
  if (url.protocol !== "https:" && !(allowed && url.protocol === "http:")) throw new OutboundError("only https URLs are fetched");
  if (url.username || url.password) throw new OutboundError("a URL with credentials is not fetched");
  return resolve(url.hostname, allowed, signal);
}

/** Checks a URL the server will fetch or push to later, as a fetch would now (a configuration's endpoint). */
export async function checkOutboundTarget(target: string, policy: OutboundPolicy, timeoutMs = 5000): Promise<void> {
  await checkedAddress(parseTarget(target), policy, AbortSignal.timeout(timeoutMs));
}

/** The host's address, after checking every address it resolves to. */
async function resolve(hostname: string, allowed: boolean, signal: AbortSignal): Promise<string> {
  const bare = hostname.replace(/^\[|\]$/g, "");
  if (isIP(bare)) {
    if (!allowed && isBlockedAddress(bare)) throw new OutboundError("the host is a private or reserved address");
    return bare;
  }
  let addresses: Array<{ address: string }>;
  try {
    addresses = await Promise.race([
      lookup(bare, { all: true, verbatim: true }),
      new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(new Error("timeout")), { once: true })),
    ]);
  } catch {
    throw new OutboundError("the host does not resolve");
  }
  if (addresses.length === 0) throw new OutboundError("the host does not resolve");
  // Every address is checked: a name that also points inside must not be reachable at all.
  if (!allowed && addresses.some(({ address }) => isBlockedAddress(address))) {
    throw new OutboundError("the host resolves to a private or reserved address");
  }
  return addresses[0]!.address;
}

async function readBounded(response: Response, maxBytes: number, signal: AbortSignal, truncate: boolean): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? "NaN");
  if (declared > maxBytes && !truncate) {
    await response.body?.cancel();
    throw new OutboundError(`the answer is larger than ${maxBytes} bytes`);
  }
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (total + value.byteLength > maxBytes) {
        if (!truncate) throw new OutboundError(`the answer is larger than ${maxBytes} bytes`);
        chunks.push(value.subarray(0, maxBytes - total));
        total = maxBytes;
        await reader.cancel().catch(() => {});
        break;
      }
      total += value.byteLength;
      chunks.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    if (error instanceof OutboundError) throw error;
    throw new OutboundError(signal.aborted ? "the answer took too long" : "the answer could not be read");
  }
  return Buffer.concat(chunks, total);
}

/** What the server fetches or pushes, for the metrics. */
export type OutboundPurpose = "client_metadata_document" | "ssf_push" | "backchannel_logout";

/** outboundFetch with the server's policy, every request counted by purpose and result. */
export class Outbound {
  constructor(
    private readonly policy: OutboundPolicy,
    private readonly counter?: { inc(labels: { purpose: string; result: string }): void },
  ) {}

  /** True when `url`'s host may be reached over plain http (TA_OUTBOUND_ALLOW_HOSTS). */
  allows(url: URL): boolean {
    return hostKeys(url).some((key) => this.policy.allowHosts.has(key));
  }

  /** Refuses (OutboundError) a URL a fetch or push would refuse. */
  check(target: string): Promise<void> {
    return checkOutboundTarget(target, this.policy);
  }

  async fetch(purpose: OutboundPurpose, target: string, request: OutboundRequest): Promise<OutboundResponse> {
    try {
      const response = await outboundFetch(target, request, this.policy);
      this.counter?.inc({ purpose, result: "ok" });
      return response;
    } catch (error) {
      this.counter?.inc({ purpose, result: "error" });
      throw error;
    }
  }
}
