// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-01): a URL as
// client_id makes the server fetch, validate, store and cache the client's registration; every
// bad document fails the request with a clear invalid_client description, stores nothing and
// never hangs; the policy switch; a cached document costs no outbound fetch.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { clients } from "../db/schema.ts";
import { ClientDocuments, freshnessSeconds } from "../src/oauth/client-documents.ts";
import { OAuthError } from "../src/errors.ts";
import { Outbound } from "../src/outbound.ts";
import type { TestApp } from "./helpers/app.ts";
import { admin, createTestApp, post, request } from "./helpers/app.ts";
import { Agent, createUser, hiddenFields, pkce, redirectParams, signIn } from "./helpers/agent.ts";
import { backends } from "./helpers/db.ts";
import type { DocumentHost } from "./helpers/documents.ts";
import { documentFor, json, serveDocuments } from "./helpers/documents.ts";

setDefaultTimeout(30_000);

const REDIRECT = "http://127.0.0.1:8765/callback";

function authorizePath(clientId: string, extra: Record<string, string> = {}) {
  const { challenge } = pkce();
  return `/oauth/authorize?${new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: REDIRECT,
    scope: "read",
    state: "s1",
    code_challenge: challenge,
    code_challenge_method: "S256",
    ...extra,
  })}`;
}

const storedRow = async (t: TestApp, clientId: string) =>
  (await t.database.db.select().from(clients).where(eq(clients.clientId, clientId)))[0];

async function metric(t: TestApp, line: string): Promise<number> {
  const [, text] = await request(t, "GET", "/metrics");
  const found = (text as string).split("\n").find((l) => l.startsWith(`${line} `));
  return found ? Number(found.split(" ")[1]) : 0;
}

describe.each(backends)("client ID metadata documents [%s]", (backend) => {
  let host: DocumentHost;
  let t: TestApp;
  let counter = 0;
  /** A fresh path on the document host, answering a document for itself (with `extra`). */
  const documentAt = (extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) => {
    const path = `/clients/${++counter}.json`;
    const url = host.url(path);
    host.set(path, () => json(documentFor(url, extra), headers));
    return { path, url };
  };

  beforeAll(async () => {
    host = serveDocuments();
    t = await createTestApp(backend, { TA_OUTBOUND_ALLOW_HOSTS: host.host });
  }, 60_000);
  afterAll(async () => {
    host.stop();
    await t.close();
  });

  test("advertises client_id_metadata_document_supported", async () => {
    const [, body] = await request(t, "GET", "/.well-known/oauth-authorization-server");
    expect(body.client_id_metadata_document_supported).toBe(true);
  });

  test("a URL client_id runs the whole flow: consent names the document's host, tokens, refresh, revocation", async () => {
    const { path, url } = documentAt({ client_name: "Notes for MCP", scope: "read write" }, { "cache-control": "max-age=600" });
    const username = `cimd-${backend}-${Date.now()}`;
    await createUser(t, username);
    const agent = new Agent(t);
    await signIn(agent, username);
    const { verifier, challenge } = pkce();
    const consent = await agent.get(authorizePath(url, { code_challenge: challenge }));
    expect(consent.res.status).toBe(200);
    expect(consent.text).toContain("Authorize Notes for MCP");
    expect(consent.text).toContain(`published by <strong>${host.host}</strong>`);
    expect(consent.text).toContain("returns to an address on this device");
    expect(host.hits(path)).toBe(1);
    const row = await storedRow(t, url);
    expect(row).toMatchObject({ type: "public", registration: "document", tokenEndpointAuthMethod: "none", secretHash: null, redirectUris: [REDIRECT], scope: "read write" });
    // Fresh for the document's max-age.
    const freshFor = row!.documentExpiresAt!.getTime() - Date.now();
    expect(freshFor).toBeGreaterThan(590_000);
    expect(freshFor).toBeLessThanOrEqual(600_000);

    const done = await agent.post("/oauth/consent", [...hiddenFields(consent.text, "/oauth/consent"), ["decision", "approve"]]);
    expect(done.res.status).toBe(303);
    const code = redirectParams(done.location).get("code")!;
    const [tokenRes, tokens] = await post(t, "/oauth/token", { grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: url });
    expect(tokenRes.status).toBe(200);
    expect(tokens.refresh_token).toEqual(expect.any(String));
    const verified = await t.services.pipeline.verify(tokens.access_token);
    expect(verified).toMatchObject({ ok: true, claims: { client_id: url } });
    const [refreshRes, refreshed] = await post(t, "/oauth/token", { grant_type: "refresh_token", refresh_token: tokens.refresh_token, client_id: url });
    expect(refreshRes.status).toBe(200);
    const [revokeRes] = await post(t, "/oauth/revoke", { token: refreshed.refresh_token, client_id: url });
    expect(revokeRes.status).toBe(200);
    expect((await t.services.pipeline.verify(refreshed.access_token)).ok).toBe(false);
    // Every step after the first used the stored document.
    expect(host.hits(path)).toBe(1);
    // The operator sees where the client came from.
    const [, listed] = await admin(t, "GET", "/clients?limit=100");
    expect(listed.items.find((item: { client_id: string }) => item.client_id === url)).toMatchObject({
      registration: "document",
      client_type: "public",
      client_name: "Notes for MCP",
      document_expires_at: row!.documentExpiresAt!.toISOString(),
    });
  });

  test("a cached document costs no outbound request; a stale one is fetched again and its changes apply", async () => {
    const { path, url } = documentAt({}, { "cache-control": "max-age=3600" });
    const agent = new Agent(t);
    expect((await agent.get(authorizePath(url))).res.status).toBe(302); // to the sign-in page
    const outbound = await metric(t, 'ta_outbound_requests_total{purpose="client_metadata_document",result="ok"}');
    const cached = await metric(t, 'ta_client_documents_total{result="cached"}');
    for (let i = 0; i < 5; i++) expect((await agent.get(authorizePath(url))).res.status).toBe(302);
    expect(await metric(t, 'ta_outbound_requests_total{purpose="client_metadata_document",result="ok"}')).toBe(outbound);
    expect(await metric(t, 'ta_client_documents_total{result="cached"}')).toBe(cached + 5);
    expect(host.hits(path)).toBe(1);

    // The document changes its redirect URI and goes stale.
    host.set(path, () => json(documentFor(url, { redirect_uris: ["http://127.0.0.1:9999/new"] })));
    await t.database.db.update(clients).set({ documentExpiresAt: sql`now() - interval '1 second'` }).where(eq(clients.clientId, url));
    t.services.stores.clients.forget(url);
    const old = await agent.get(authorizePath(url));
    expect(old.res.status).toBe(400);
    expect(old.text).toContain("redirect_uri is not registered");
    expect(host.hits(path)).toBe(2);
    expect((await agent.get(authorizePath(url, { redirect_uri: "http://127.0.0.1:9999/new" }))).res.status).toBe(302);
    expect(host.hits(path)).toBe(2);
  });

  const bad: Array<[string, (url: string) => Response, RegExp]> = [
    ["a client_id that is not its URL", () => json(documentFor("https://other.example/client.json")), /its client_id does not match the URL/],
    ["a client_secret", (url) => json(documentFor(url, { client_secret: "s3cret" })), /must not contain a client_secret/],
    ["client_secret_expires_at", (url) => json(documentFor(url, { client_secret_expires_at: 0 })), /must not contain a client_secret/],
    ["a shared-secret auth method", (url) => json(documentFor(url, { token_endpoint_auth_method: "client_secret_basic" })), /cannot use a shared secret/],
    ["an auth method the server lacks", (url) => json(documentFor(url, { token_endpoint_auth_method: "private_key_jwt" })), /"private_key_jwt" is not supported here; use none/],
    ["a javascript: redirect URI", (url) => json(documentFor(url, { redirect_uris: ["javascript:alert(1)"] })), /redirect_uris must use https/],
    ["a non-https redirect URI", (url) => json(documentFor(url, { redirect_uris: ["http://app.example/callback"] })), /redirect_uris must use https/],
    ["no redirect URIs", (url) => json(documentFor(url, { redirect_uris: [] })), /must list redirect_uris/],
    ["an HTML content type", (url) => new Response(JSON.stringify(documentFor(url)), { headers: { "content-type": "text/html" } }), /must be served as JSON, not "text\/html"/],
    ["no content type", (url) => new Response(new TextEncoder().encode(JSON.stringify(documentFor(url)))), /must be served as JSON/],
    ["invalid JSON", () => new Response("{ not json", { headers: { "content-type": "application/json" } }), /not valid JSON/],
    ["a JSON array", () => json([]), /must be a JSON object/],
    ["a huge body (over 64 KiB)", (url) => json(documentFor(url, { client_name: "x".repeat(70_000) })), /larger than 65536 bytes/],
    ["a huge body without a length", (url) => new Response(new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(JSON.stringify(documentFor(url)).slice(0, -1)));
        for (let i = 0; i < 80; i++) controller.enqueue(new TextEncoder().encode(" ".repeat(1024)));
        controller.enqueue(new TextEncoder().encode("}"));
        controller.close();
      },
    }), { headers: { "content-type": "application/json" } }), /larger than 65536 bytes/],
    ["a 404", () => new Response("gone", { status: 404 }), /answered HTTP 404, not 200/],
    ["a 204", () => new Response(null, { status: 204 }), /answered HTTP 204, not 200/],
    ["a redirect", () => new Response(null, { status: 302, headers: { location: "/elsewhere.json" } }), /redirects are not followed/],
  ];

  test.each(bad)("refuses a document with %s: invalid_client, shown not redirected, nothing stored", async (_name, answer, reason) => {
    const path = `/bad/${++counter}.json`;
    const url = host.url(path);
    host.set(path, (u) => answer(u.toString()));
    const refused = await metric(t, 'ta_client_documents_total{result="refused"}');
    const page = await new Agent(t).get(authorizePath(url));
    expect(page.res.status).toBe(400);
    expect(page.location).toBeNull();
    expect(page.text).toContain("(invalid_client)");
    expect(page.text.replaceAll("&quot;", '"')).toMatch(reason);
    expect(await storedRow(t, url)).toBeUndefined();
    expect(await metric(t, 'ta_client_documents_total{result="refused"}')).toBe(refused + 1);
    // Nothing was cached: the next request asks again.
    await new Agent(t).get(authorizePath(url));
    expect(host.hits(path)).toBe(2);
  });

  test("a redirect loop is one refused fetch, not a loop", async () => {
    const path = `/loop/${++counter}.json`;
    host.set(path, () => new Response(null, { status: 301, headers: { location: path } }));
    const page = await new Agent(t).get(authorizePath(host.url(path)));
    expect(page.text).toMatch(/redirects are not followed/);
    expect(host.hits(path)).toBe(1);
  });

  test.each([
    ["no path", "https://client.example", /must have a path/],
    ["a root path", "https://client.example/", /must have a path/],
    ["a dot segment", "https://client.example/a/../client.json", /must not have \. or \.\. segments/],
    ["an encoded dot segment", "https://client.example/a/%2e%2e/client.json", /must not have \. or \.\. segments/],
    ["a fragment", "https://client.example/client.json#x", /must not have a fragment/],
    ["a user name", "https://user@client.example/client.json", /must not hold a user name or password/],
    ["plain http to a host not allowed", "http://client.example/client.json", /must use https/],
    ["a loopback host", "https://127.0.0.1:1/client.json", /private or reserved address/],
    ["a private address", "https://10.1.2.3/client.json", /private or reserved address/],
    ["the cloud metadata address", "https://169.254.169.254/latest/meta-data", /private or reserved address/],
    ["a name that resolves to loopback", "https://localhost:1/client.json", /resolves to a private or reserved address/],
  ])("refuses a client_id URL with %s before or without connecting", async (_name, clientId, reason) => {
    const page = await new Agent(t).get(authorizePath(clientId));
    expect(page.res.status).toBe(400);
    expect(page.text).toContain("(invalid_client)");
    expect(page.text).toMatch(reason);
    expect(await storedRow(t, clientId)).toBeUndefined();
  });

  test("at the token endpoint a bad document is invalid_client (401 JSON), nothing stored", async () => {
    const path = `/bad/${++counter}.json`;
    host.set(path, () => new Response("no", { status: 500 }));
    const [res, body] = await post(t, "/oauth/token", { grant_type: "authorization_code", code: "x", code_verifier: "y".repeat(43), client_id: host.url(path) });
    expect(res.status).toBe(401);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body).toEqual({ error: "invalid_client", error_description: "client metadata document: fetching it answered HTTP 500, not 200" });
  });

  test("concurrent first requests of one document make one fetch", async () => {
    const path = `/slowish/${++counter}.json`;
    const url = host.url(path);
    host.set(path, async () => (await Bun.sleep(50), json(documentFor(url))));
    const pages = await Promise.all(Array.from({ length: 10 }, () => new Agent(t).get(authorizePath(url))));
    expect(pages.map((p) => p.res.status)).toEqual(new Array(10).fill(302));
    expect(host.hits(path)).toBe(1);
  });

  test("a document that answers too slowly fails within the time bound, and is not stored", async () => {
    const path = `/slow/${++counter}.json`;
    const url = host.url(path);
    host.set(path, async () => (await Bun.sleep(2000), json(documentFor(url))));
    // The server's bound is 5 s; this instance is given 300 ms to keep the suite fast.
    const documents = new ClientDocuments({
      store: t.services.stores.clients,
      outbound: new Outbound({ allowHosts: t.config.outboundAllowHosts }),
      config: t.config,
      metrics: t.services.metrics,
      timeoutMs: 300,
    });
    const started = performance.now();
    const error = await documents.resolve(url).catch((e) => e);
    expect(performance.now() - started).toBeLessThan(1500);
    expect(error).toBeInstanceOf(OAuthError);
    expect(error).toMatchObject({ code: "invalid_client", description: "client metadata document: no answer within 300 ms" });
    expect(await storedRow(t, url)).toBeUndefined();
  });
});

describe("client ID metadata document policy", () => {
  let host: DocumentHost;
  beforeAll(() => {
    host = serveDocuments();
    const path = "/c.json";
    host.set(path, () => json(documentFor(host.url(path))));
  });
  afterAll(() => host.stop());

  test("TA_CLIENT_ID_DOCUMENTS=none: not advertised, a URL client_id is refused without a fetch", async () => {
    const t = await createTestApp("pglite", { TA_OUTBOUND_ALLOW_HOSTS: host.host, TA_CLIENT_ID_DOCUMENTS: "none" });
    try {
      const [, metadata] = await request(t, "GET", "/.well-known/oauth-authorization-server");
      expect(metadata.client_id_metadata_document_supported).toBeUndefined();
      const page = await new Agent(t).get(authorizePath(host.url("/c.json")));
      expect(page.res.status).toBe(400);
      expect(page.text).toMatch(/this server does not accept client ID metadata documents/);
      expect(host.hits("/c.json")).toBe(0);
    } finally {
      await t.close();
    }
  });

  test("an allow-list: listed hosts serve documents, others are refused without a fetch", async () => {
    const t = await createTestApp("pglite", { TA_OUTBOUND_ALLOW_HOSTS: host.host, TA_CLIENT_ID_DOCUMENTS: "apps.example.com, other.example:8443" });
    try {
      const page = await new Agent(t).get(authorizePath(host.url("/c.json")));
      expect(page.text).toContain(`${host.host} may not serve client metadata documents here`);
      expect(host.hits("/c.json")).toBe(0);
    } finally {
      await t.close();
    }
    const allowed = await createTestApp("pglite", { TA_OUTBOUND_ALLOW_HOSTS: host.host, TA_CLIENT_ID_DOCUMENTS: host.host });
    try {
      expect((await new Agent(allowed).get(authorizePath(host.url("/c.json")))).res.status).toBe(302);
      expect(host.hits("/c.json")).toBe(1);
    } finally {
      await allowed.close();
    }
  });
});

describe("document freshness (RFC 9111 §4.2.1, within bounds)", () => {
  const now = Date.parse("2026-12-03T12:00:00Z");
  const max = 86_400;
  test.each([
    ["max-age", { "cache-control": "public, max-age=600" }, 600],
    ["s-maxage wins over max-age", { "cache-control": "max-age=600, s-maxage=1200" }, 1200],
    ["max-age less Age", { "cache-control": "max-age=600", age: "100" }, 500],
    ["Expires − Date", { expires: "Thu, 03 Dec 2026 13:00:00 GMT", date: "Thu, 03 Dec 2026 12:00:00 GMT" }, 3600],
    ["no-store: the lower bound", { "cache-control": "no-store" }, 60],
    ["no-cache: the lower bound", { "cache-control": "no-cache" }, 60],
    ["a tiny max-age: the lower bound", { "cache-control": "max-age=5" }, 60],
    ["a huge max-age: the upper bound", { "cache-control": "max-age=99999999" }, max],
    ["no header: an hour", {}, 3600],
  ])("%s", (_name, headers, seconds) => {
    expect(freshnessSeconds(new Headers(headers as Record<string, string>), max, now)).toBe(seconds);
  });
});
