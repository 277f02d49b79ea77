// Fuzzing of the form endpoints with random and malformed bodies, headers and encodings (NUL
// bytes, invalid UTF-8, 1 MiB values, repeated parameters, wrong content types): never a 500,
// never a stack trace, never a change of state. Seeded, so a failure can be replayed:
// FUZZ_SEED=123 bun test test/fuzz.test.ts. Add an endpoint by adding an entry to ENDPOINTS.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { sql } from "drizzle-orm";
import { basic, createClient, mintClientSession, mintCodeSession, useTestApp } from "./helpers/app.ts";
import type { TestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { prng, type Random } from "./helpers/prng.ts";

// Databases opened inside tests and CLI runs take seconds on a loaded 2-core machine.
setDefaultTimeout(60_000);

interface FormEndpoint {
  path: string;
  /** Field names the endpoint knows; the fuzzer also sends unknown ones. */
  fields: readonly string[];
  /**
   * The fields of a well-formed request whose only faults may be its tokens (credentials are
   * added by the fuzzer), so that cases reach authentication and the endpoint's own logic.
   */
  wellFormed(r: Random, f: Fixture): Array<[string, string]>;
  /** Statuses the run must have produced, proof that it got past the outer checks. */
  reaches: readonly number[];
  /**
   * Whether live tokens may be sent intact. Safe for revocation (the fuzzer never has their
   * owner's credentials); not for the token endpoint, where another client presenting a live
   * refresh token is reuse and rightly revokes the family.
   */
  liveTokens: boolean;
}

/** RFC 7009 / RFC 7662 parameters: a live, tampered or foreign token, sometimes a hint. */
function tokenForm(r: Random, f: Fixture): Array<[string, string]> {
  const form: Array<[string, string]> = [["token", r.pick([r.pick(f.tokens), mutate(r, r.pick(f.tokens)), "garbage"])]];
  if (r.int(2) === 0) form.push(["token_type_hint", r.pick(["access_token", "refresh_token", "other"])]);
  return form;
}

/** Other form endpoints (/oauth/token, /oauth/introspect, ...) join by adding an entry here. */
const ENDPOINTS: readonly FormEndpoint[] = [
  {
    path: "/oauth/revoke",
    fields: ["token", "token_type_hint", "client_id", "client_secret"],
    wellFormed: tokenForm,
    reaches: [200, 400, 401, 405, 413],
    liveTokens: true,
  },
  {
    path: "/oauth/introspect",
    fields: ["token", "token_type_hint", "client_id", "client_secret"],
    wellFormed: tokenForm,
    reaches: [200, 400, 401, 405, 413],
    liveTokens: true,
  },
  {
    path: "/oauth/token",
    fields: ["grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "resource", "client_id", "client_secret"],
    wellFormed: (r, f) =>
      r.pick([
        () => [["grant_type", "refresh_token"], ["refresh_token", r.pick(f.tokens)], ...(r.int(2) ? [["scope", "read"] as [string, string]] : [])],
        () => [["grant_type", "authorization_code"], ["code", r.pick(["", "x", "a".repeat(43)])], ["redirect_uri", "https://app.example/callback"], ["code_verifier", "v".repeat(43)]],
        () => [["grant_type", r.pick(["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code", "REFRESH_TOKEN"])]],
      ] as Array<() => Array<[string, string]>>)(),
    reaches: [400, 401, 405, 413],
    liveTokens: false,
  },
];

const CASES_PER_ENDPOINT = Number(process.env.FUZZ_CASES ?? 300);
const CONCURRENCY = 16;
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);


interface Fixture {
  /** Live tokens of client A, whose valid credentials the fuzzer never uses. */
  tokens: string[];
  /** Valid credentials of other clients (authenticate, but own none of the tokens). */
  otherAuth: Array<{ headers: Record<string, string>; form: Record<string, string> }>;
  victimId: string;
}

const MIB = "x".repeat(1024 * 1024);

function randomBytes(r: Random, n: number): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length: n }, () => r.int(256));
}

function mutate(r: Random, token: string): string {
  // Only the payload segment is changed, so the signature can never still match.
  const [header, payload, signature] = token.split(".");
  const i = r.int(payload!.length);
  const replacement = payload![i] === "A" ? "B" : "A";
  return `${header}.${payload!.slice(0, i)}${replacement}${payload!.slice(i + 1)}.${signature}`;
}

function value(r: Random, f: Fixture): string {
  switch (r.int(14)) {
    case 0: return "";
    case 1: return "\u0000";
    case 2: return `${r.pick(f.tokens)}\u0000`;
    case 3: return r.pick(f.tokens); // a live token — presented without its owner's credentials
    case 4: return mutate(r, r.pick(f.tokens));
    case 5: return "x".repeat(r.pick([4095, 4096, 4097, 70_000]));
    case 6: return "\uD800"; // lone surrogate
    case 7: return "😀".repeat(r.int(2000));
    case 8: return "eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0."; // alg none
    case 9: return r.pick(["access_token", "refresh_token", "ACCESS_TOKEN", "id_token", "*"]);
    case 10: return f.victimId;
    case 11: return "../../etc/passwd%00";
    case 12: return String.fromCharCode(...Array.from({ length: 40 }, () => r.int(0x3000)));
    default: return r.next().toString(36).slice(2);
  }
}

const CONTENT_TYPES = [
  "application/x-www-form-urlencoded",
  "application/x-www-form-urlencoded; charset=utf-8",
  "application/x-www-form-urlencoded; charset=iso-8859-1",
  "APPLICATION/X-WWW-FORM-URLENCODED",
  "application/json",
  "text/plain",
  "multipart/form-data; boundary=xyz",
  "application/octet-stream",
  "",
];

function credentials(r: Random, f: Fixture): { headers: Record<string, string>; form: Record<string, string> } {
  switch (r.int(9)) {
    case 0: return { headers: {}, form: {} };
    case 1: return { headers: { authorization: basic(f.victimId, "wrong-secret") }, form: {} };
    case 2: return { headers: {}, form: { client_id: f.victimId, client_secret: "wrong" } };
    case 3: return r.pick(f.otherAuth);
    case 4: return { headers: { authorization: `Basic ${Buffer.from(randomBytes(r, 30)).toString("base64")}` }, form: {} };
    case 5: return { headers: { authorization: r.pick(["Basic", "Basic ", "Basic ====", "Bearer abc", "basic Og==", "Basic %%%"]) }, form: {} };
    case 6: return { headers: { authorization: `Basic ${"QUFB".repeat(r.pick([10, 3000]))}` }, form: {} };
    case 7: return { headers: { authorization: basic(f.victimId, "wrong") }, form: { client_id: f.victimId } };
    default: return { headers: { authorization: basic("\u0000", "\u0000") }, form: { client_id: "a\u0000b" } };
  }
}

/** Percent-encodes; a lone surrogate becomes its (invalid) UTF-8-style bytes %ED%A0%80. */
function escape(text: string): string {
  try {
    return encodeURIComponent(text).replace(/%20/g, "+");
  } catch {
    return [...text].map((ch) => (/[\uD800-\uDFFF]/.test(ch) ? "%ED%A0%80" : encodeURIComponent(ch))).join("");
  }
}

function encodeForm(r: Random, pairs: Array<[string, string]>): string {
  // Sometimes raw, unescaped text.
  return pairs.map(([k, v]) => (r.int(5) === 0 ? `${k}=${v}` : `${escape(k)}=${escape(v)}`)).join("&");
}

/** One random request for `endpoint`. */
function fuzzCase(r: Random, endpoint: FormEndpoint, f: Fixture): { method: string; headers: Record<string, string>; body?: BodyInit } {
  const auth = credentials(r, f);
  const headers: Record<string, string> = { ...auth.headers };
  const contentType = r.int(4) === 0 ? r.pick(CONTENT_TYPES) : CONTENT_TYPES[0]!;
  if (contentType) headers["content-type"] = contentType;
  if (r.int(10) === 0) headers["content-encoding"] = r.pick(["gzip", "br", "identity", "x-unknown"]);
  if (r.int(20) === 0) headers["x-padding"] = "p".repeat(r.pick([100, 40_000]));
  const pairs: Array<[string, string]> = [];
  for (const field of endpoint.fields) if (r.int(3) > 0) pairs.push([field, value(r, f)]);
  for (const [k, v] of Object.entries(auth.form)) pairs.push([k, v]);
  if (r.int(5) === 0) pairs.push([r.pick(endpoint.fields), value(r, f)]); // repeated parameter
  if (r.int(8) === 0) pairs.push([value(r, f).slice(0, 50), value(r, f)]); // unknown parameter
  if (r.int(3) === 0) {
    // Near-valid: a well-formed request whose only faults are the credentials or the token, so
    // the cases reach authentication and the endpoint's own logic, not only validation.
    const valid = r.int(2) === 0 ? r.pick(f.otherAuth) : auth; // half of them authenticate
    const form = [...endpoint.wellFormed(r, f), ...Object.entries(valid.form)];
    return { method: "POST", headers: { ...valid.headers, "content-type": CONTENT_TYPES[0]! }, body: form.map(([k, v]) => `${escape(k)}=${escape(v)}`).join("&") };
  }
  const method = r.int(15) === 0 ? r.pick(["GET", "PUT", "DELETE", "PATCH"]) : "POST";
  let body: BodyInit | undefined;
  switch (r.int(10)) {
    case 0: body = randomBytes(r, r.int(2048)); break; // random bytes, mostly invalid UTF-8
    case 1: body = Uint8Array.from([...Buffer.from("token="), 0xc0, 0xaf, 0xff, 0xfe, 0xed, 0xa0, 0x80]); break;
    case 2: body = r.pick(["%", "%G1=%ZZ", "token=%E0%A4%A", "=&=&&==", "token", "&&&", "token=%00%00"]); break;
    case 3: body = `token=${MIB}`; break; // 1 MiB value: 413
    case 4: body = JSON.stringify(Object.fromEntries(pairs)); break;
    case 5: body = Array.from({ length: 200 }, (_, i) => `p${i}=${i}`).join("&"); break;
    default: body = encodeForm(r, pairs);
  }
  if (method === "GET") body = undefined;
  return { method, headers, body };
}

async function stateOf(t: TestApp): Promise<string> {
  const rows = await t.database.rows(sql`
    select (select count(*) from sessions where status = 'created')::int as live,
           (select count(*) from sessions)::int as sessions,
           (select count(*) from revocation_events)::int as events,
           (select count(*) from clients)::int as clients,
           (select count(*) from authorization_grants)::int as grants,
           (select count(*) from signing_keys)::int as keys`);
  return JSON.stringify(rows);
}

const STACK_TRACE = /\bat \S+ \(|\.ts:\d+|node_modules|Error: |TypeError|undefined is not/;

describe.each(backends)(`fuzzing form endpoints [%s] (seed ${SEED})`, (backend) => {
  const ready = useTestApp(backend, {
    // Throttling would turn most cases into 429 after a few failures; fuzz the endpoints themselves.
    TA_AUTH_FAILURE_LIMIT: "1000000",
    TA_AUTH_FAILURE_IP_LIMIT: "1000000",
  });

  test.each(ENDPOINTS.map((e) => [e.path, e] as const))("%s: never 5xx, never a stack trace, never a state change", async (_path, endpoint) => {
    const t = await ready();
    const victim = await createClient(t, "confidential");
    const other = await createClient(t, "confidential");
    const publicClient = await createClient(t, "public");
    const sessions = [await mintCodeSession(t, victim), await mintCodeSession(t, victim), await mintClientSession(t, victim)];
    const live = sessions.flatMap((s) => [s.accessToken, s.refreshToken].filter((x): x is string => x !== undefined));
    const fixture: Fixture = {
      tokens: endpoint.liveTokens ? live : live.map((token) => mutate(prng(SEED + 1), token)),
      otherAuth: [other.auth, publicClient.auth],
      victimId: victim.client.clientId,
    };
    const before = await stateOf(t);
    const logsBefore = t.logs.length;
    const r = prng(SEED);
    const statuses = new Map<number, number>();
    for (let done = 0; done < CASES_PER_ENDPOINT; done += CONCURRENCY) {
      const batch = Array.from({ length: Math.min(CONCURRENCY, CASES_PER_ENDPOINT - done) }, () => fuzzCase(r, endpoint, fixture));
      await Promise.all(
        batch.map(async (c, i) => {
          let req: Request;
          try {
            req = new Request(`http://localhost${endpoint.path}`, { method: c.method, headers: c.headers, body: c.body });
          } catch {
            return; // not even expressible as a request (e.g. a NUL in a header)
          }
          const res = await t.app.handle(req);
          const text = await res.text();
          const where = `seed ${SEED}, case ${done + i}: ${c.method} ${JSON.stringify(c.headers).slice(0, 200)}`;
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          expect(res.status, where).toBeLessThan(500);
          expect(text, where).not.toMatch(STACK_TRACE);
          expect(text.length, where).toBeLessThan(1000); // no echo of the submitted values
          if (res.status >= 400) {
            expect(res.headers.get("cache-control"), where).toBe("no-store");
            expect(typeof JSON.parse(text).error, where).toBe("string");
          }
        }),
      );
    }
    expect(await stateOf(t)).toBe(before);
    for (const token of live) expect((await t.services.pipeline.verify(token)).ok).toBe(true);
    const errors = t.logs.slice(logsBefore).filter((line) => JSON.parse(line).level === "error");
    expect(errors).toEqual([]);
    // The fuzzer must reach the endpoint's own logic, not only the outer limits.
    for (const status of endpoint.reaches) expect(statuses.get(status) ?? 0, `status ${status}: ${JSON.stringify([...statuses])}`).toBeGreaterThan(0);
  });
});
