// Fuzzing of POST /oauth/register (RFC 7591 takes JSON, so it has its own fuzzer beside the
// form one in fuzz.test.ts): random and malformed JSON, wrong types, NUL bytes, invalid UTF-8,
// 1 MiB values, odd content types. Never a 500, never a stack trace, and a client is created
// only when the answer is 201. Seeded: FUZZ_SEED=123 bun test test/fuzz-register.test.ts.
import { describe, expect, test } from "bun:test";
import { useTestApp } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import { prng, type Random } from "./helpers/prng.ts";

const CASES = Number(process.env.FUZZ_CASES ?? 300);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);


const FIELDS = [
  "redirect_uris", "client_name", "client_uri", "logo_uri", "contacts", "scope", "grant_types",
  "response_types", "token_endpoint_auth_method", "software_id", "jwks", "policy_uri", "__proto__", "constructor",
];

function jsonValue(r: Random, depth = 0): unknown {
  switch (r.int(depth > 2 ? 9 : 12)) {
    case 0: return "";
    case 1: return "\u0000";
    case 2: return "x".repeat(r.pick([10, 4096, 1024 * 1024]));
    case 3: return "\uD800";
    case 4: return r.pick(["https://app.example/cb", "http://127.0.0.1:8080/cb", "javascript:alert(1)", "https://a.example/#frag", "http://evil.example/cb"]);
    case 5: return r.pick([0, -1, 1e308, Number.MAX_SAFE_INTEGER + 2]);
    case 6: return r.pick([true, false, null]);
    case 7: return r.pick(["none", "client_secret_basic", "client_secret_post", "private_key_jwt", "authorization_code", "client_credentials", "implicit", "read write", "openid"]);
    case 8: return "é漢🙂";
    case 9: return Array.from({ length: r.int(4) }, () => jsonValue(r, depth + 1));
    case 10: return Object.fromEntries(Array.from({ length: r.int(4) }, () => [r.pick(FIELDS), jsonValue(r, depth + 1)]));
    default: return Array.from({ length: r.pick([0, 1, 200]) }, () => "https://app.example/cb");
  }
}

function body(r: Random): { body: BodyInit; contentType: string | undefined } {
  const contentType = r.pick(["application/json", "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", undefined]);
  switch (r.int(6)) {
    case 0: return { body: Uint8Array.from({ length: r.int(64) }, () => r.int(256)), contentType }; // random bytes, often invalid UTF-8
    case 1: return { body: r.pick(["{", "[]", "null", "1", '"x"', '{"redirect_uris":', '{"a":1}{"b":2}']), contentType };
    case 2: return { body: JSON.stringify(jsonValue(r)), contentType };
    case 3: {
      // Valid metadata with one field replaced by noise: reaches the field checks, sometimes passes.
      const metadata: Record<string, unknown> = { redirect_uris: ["https://app.example/cb"], client_name: "fuzz" };
      metadata[r.pick(FIELDS)] = jsonValue(r);
      return { body: JSON.stringify(metadata), contentType: "application/json" };
    }
    default: {
      const metadata = Object.fromEntries(Array.from({ length: 1 + r.int(6) }, () => [r.pick(FIELDS), jsonValue(r)]));
      return { body: JSON.stringify(metadata), contentType };
    }
  }
}

describe.each(backends)("fuzzing POST /oauth/register [%s]", (backend) => {
  const ready = useTestApp(backend);

  test(`${CASES} random registrations (seed ${SEED}): never a 500 or a stack, a client only on 201`, async () => {
    const t = await ready();
    const r = prng(SEED);
    const statuses: Record<number, number> = {};
    const errors = new Set<string>();
    let created = 0;
    for (let i = 0; i < CASES; i++) {
      const { body: payload, contentType } = body(r);
      const res = await t.app.handle(
        new Request("http://localhost/oauth/register", {
          method: "POST",
          headers: contentType ? { "content-type": contentType } : {},
          body: payload,
        }),
      );
      const text = await res.text();
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      expect(res.status, `case ${i}: ${text.slice(0, 200)}`).toBeLessThan(500);
      expect(text).not.toMatch(/\bat \S+\.(ts|js):\d+|stack/i);
      expect(res.headers.get("content-type") ?? "").toStartWith("application/json");
      if (res.status === 201) created++;
      else {
        const parsed = JSON.parse(text) as { error: string };
        expect(parsed).toHaveProperty("error");
        errors.add(parsed.error);
      }
    }
    expect((await t.services.clients.list()).length).toBe(created);
    // The run reached the metadata checks and registered some clients, not only the outer checks.
    expect(errors.has("invalid_request")).toBe(true);
    expect(errors.has("invalid_client_metadata") || errors.has("invalid_redirect_uri")).toBe(true);
    expect(created).toBeGreaterThan(0);
  }, 120_000);
});
