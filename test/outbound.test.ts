// The one outbound-fetch module (src/outbound.ts): which addresses are refused, https only unless
// the host is allowed by name, redirects checked hop by hop and bounded, time and size bounded,
// certificates verified on the pinned connection, every request counted.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { isBlockedAddress, Outbound, OutboundError, outboundFetch } from "../src/outbound.ts";
import type { DocumentHost } from "./helpers/documents.ts";
import { json, serveDocuments } from "./helpers/documents.ts";

describe("isBlockedAddress", () => {
  test.each([
    "127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "192.0.2.10", "198.18.0.1", "198.51.100.7", "203.0.113.9", "224.0.0.1", "255.255.255.255",
    "::", "::1", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::a00:1", "not-an-ip",
  ])("refuses %s", (address) => {
    expect(isBlockedAddress(address)).toBe(true);
  });
  test.each(["1.1.1.1", "8.8.8.8", "172.32.0.1", "192.169.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])("allows %s", (address) => {
    expect(isBlockedAddress(address)).toBe(false);
  });
});

describe("outboundFetch", () => {
  let host: DocumentHost;
  let tlsHost: DocumentHost;
  const request = { timeoutMs: 2000, maxBytes: 1024, maxRedirects: 2 };
  beforeAll(() => {
    host = serveDocuments();
    tlsHost = serveDocuments({ https: true });
    host.set("/ok", () => json({ ok: true }));
    host.set("/hop1", () => new Response(null, { status: 302, headers: { location: "/hop2" } }));
    host.set("/hop2", () => new Response(null, { status: 302, headers: { location: "/ok" } }));
    host.set("/loop", () => new Response(null, { status: 302, headers: { location: "/loop" } }));
    host.set("/to-private", () => new Response(null, { status: 302, headers: { location: "https://10.0.0.1/x" } }));
    host.set("/big", () => json({ pad: "x".repeat(5000) }));
    host.set("/slow", async () => (await Bun.sleep(1500), json({})));
    tlsHost.set("/ok", () => json({ ok: true }));
  });
  afterAll(() => {
    host.stop();
    tlsHost.stop();
  });
  const allowed = () => ({ allowHosts: new Set([host.host]) });

  test("reaches an allowed host over http and answers status, headers and body", async () => {
    const res = await outboundFetch(host.url("/ok"), request, allowed());
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(JSON.parse(new TextDecoder().decode(res.body))).toEqual({ ok: true });
  });

  test("refuses plain http to a host that is not allowed, and loopback by address or by name", async () => {
    const none = { allowHosts: new Set<string>() };
    await expect(outboundFetch(host.url("/ok"), request, none)).rejects.toThrow("only https URLs are fetched");
    await expect(outboundFetch(`https://${host.host}/ok`, request, none)).rejects.toThrow("the host is a private or reserved address");
    await expect(outboundFetch(`https://localhost:${host.host.split(":")[1]}/ok`, request, none)).rejects.toThrow(
      "the host resolves to a private or reserved address",
    );
  });

  test("follows redirects by hand up to the bound, checking each hop", async () => {
    const res = await outboundFetch(host.url("/hop1"), request, allowed());
    expect(res.url).toBe(host.url("/ok"));
    await expect(outboundFetch(host.url("/loop"), request, allowed())).rejects.toThrow("more than 2 redirects");
    await expect(outboundFetch(host.url("/hop1"), { ...request, maxRedirects: 0 }, allowed())).rejects.toThrow("redirects are not followed");
    await expect(outboundFetch(host.url("/to-private"), request, allowed())).rejects.toThrow("the host is a private or reserved address");
  });

  test("bounds the size and the time", async () => {
    await expect(outboundFetch(host.url("/big"), request, allowed())).rejects.toThrow("larger than 1024 bytes");
    const started = performance.now();
    await expect(outboundFetch(host.url("/slow"), { ...request, timeoutMs: 200 }, allowed())).rejects.toThrow("no answer within 200 ms");
    expect(performance.now() - started).toBeLessThan(1200);
  });

  test("verifies the certificate of an https host it is allowed to reach (a self-signed one fails)", async () => {
    const error = await outboundFetch(tlsHost.url("/ok"), request, { allowHosts: new Set([tlsHost.host]) }).catch((e) => e);
    expect(error).toBeInstanceOf(OutboundError);
    expect(error.message).toStartWith("could not connect");
  });

  test("Outbound counts each request by purpose and result", async () => {
    const counted: string[] = [];
    const outbound = new Outbound(allowed(), { inc: ({ purpose, result }) => void counted.push(`${purpose}:${result}`) });
    await outbound.fetch("client_metadata_document", host.url("/ok"), request);
    await outbound.fetch("client_metadata_document", host.url("/big"), request).catch(() => {});
    expect(counted).toEqual(["client_metadata_document:ok", "client_metadata_document:error"]);
    expect(outbound.allows(new URL(host.url("/x")))).toBe(true);
    expect(outbound.allows(new URL("http://127.0.0.1:1/x"))).toBe(false);
  });
});
