// POST /oauth/revoke (RFC 7009): tokens that are not tokens of this server — forged, altered,
// signed by others, oversized — are refused with unsupported_token_type and change nothing.
import { describe, expect, test } from "bun:test";
import { base64url, CompactSign, exportSPKI, generateKeyPair, importJWK } from "jose";
import { SigningKeyStore } from "../db/stores/signing-keys.ts";
import { KeyStore } from "../src/oauth/keys.ts";
import { createTokenService, MAX_TOKEN_LENGTH } from "../src/oauth/tokens.ts";
import type { TestApp } from "./helpers/app.ts";
import { issuedSecrets, revoke } from "./helpers/app.ts";
import type { Backend } from "./helpers/db.ts";
import { backends, openTestDatabase } from "./helpers/db.ts";
import type { Family } from "./helpers/families.ts";
import { client, clientFamily, codeFamily, expectLive, expectOAuthError, snapshot, useApp, watchLogs } from "./helpers/families.ts";

// Tokens that are not tokens of this server

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const b64json = (value: unknown) => base64url.encode(JSON.stringify(value));

function partsOf(token: string) {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  return {
    header: JSON.parse(decoder.decode(base64url.decode(header))) as Record<string, unknown>,
    claims: JSON.parse(decoder.decode(base64url.decode(payload))) as Record<string, unknown>,
    raw: { header, payload, signature },
  };
}

/** Signs `payload` with this server's active key, under any header it likes. */
function signWithOurKey(t: TestApp, payload: unknown, header: Record<string, unknown> = {}) {
  const { kid, alg, key } = t.services.keys.signingKey();
  return new CompactSign(encoder.encode(JSON.stringify(payload))).setProtectedHeader({ alg, kid, typ: "at+jwt", ...header }).sign(key);
}

type Forgery = (t: TestApp, f: Family, backend: Backend) => Promise<string> | string;

/** Each forgery names the live family's own jti, so that accepting it would revoke the family. */
const forgeries: ReadonlyArray<readonly [string, Forgery]> = [
  ["garbage", () => "not-a-token"],
  ["three dots of nothing", () => "..."],
  ["three parts that are not base64url JSON", () => "abc.def.ghi"],
  ["a header that is not JSON", (_t, f) => `${base64url.encode("{alg")}.${partsOf(f.accessToken).raw.payload}.${partsOf(f.accessToken).raw.signature}`],
  ["a bad signature", (_t, f) => {
    const { raw } = partsOf(f.accessToken);
    const signature = base64url.decode(raw.signature);
    signature[10]! ^= 0x01;
    return `${raw.header}.${raw.payload}.${base64url.encode(signature)}`;
  }],
  ["the signature of another token", async (t, f) => {
    const other = await clientFamily(t, f.owner);
    const { raw } = partsOf(f.accessToken);
    return `${raw.header}.${raw.payload}.${partsOf(other.accessToken).raw.signature}`;
  }],
  ["a tampered payload (the jti of this family in another token)", async (t, f) => {
    const other = await clientFamily(t, f.owner);
    const { raw: otherRaw, claims } = partsOf(other.accessToken);
    return `${otherRaw.header}.${b64json({ ...claims, jti: partsOf(f.accessToken).claims.jti })}.${otherRaw.signature}`;
  }],
  ["alg none", (_t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    return `${b64json({ ...header, alg: "none" })}.${raw.payload}.`;
  }],
  ["HS256 signed with the public key (JWK) as the secret", async (t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    const secret = encoder.encode(JSON.stringify(t.services.keys.jwks().keys[0]));
    return new CompactSign(base64url.decode(raw.payload)).setProtectedHeader({ ...header, alg: "HS256" }).sign(secret);
  }],
  ["HS256 signed with the public key (PEM) as the secret", async (t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    const pem = await exportSPKI(await importJWK(t.services.keys.jwks().keys[0]!, "ES256", { extractable: true }) as CryptoKey);
    return new CompactSign(base64url.decode(raw.payload)).setProtectedHeader({ ...header, alg: "HS256" }).sign(encoder.encode(pem));
  }],
  ["signed with our key for another issuer", async (t, f) => {
    const { claims } = partsOf(f.accessToken);
    const { iss: _iss, ...rest } = claims;
    return createTokenService(t.services.keys, "https://evil.example").sign("access_token", rest as never);
  }],
  ["signed with a fresh ES256 key under our kid", async (_t, f) => {
    const { header, raw } = partsOf(f.accessToken);
    const { privateKey } = await generateKeyPair("ES256");
    return new CompactSign(base64url.decode(raw.payload)).setProtectedHeader(header as { alg: string }).sign(privateKey);
  }],
  ["signed by another server with the same issuer (its own keys and database)", async (t, f, backend) => {
    const database = await openTestDatabase(backend);
    try {
      const keys = await KeyStore.open(new SigningKeyStore(database), { maxTokenLifetime: async () => 3600 });
      const { iss: _iss, ...rest } = partsOf(f.accessToken).claims;
      return await createTokenService(keys, t.config.issuer).sign("access_token", rest as never);
    } finally {
      await database.close();
    }
  }],
  ["signed with our key without a kid", (t, f) => {
    const { kid: _kid, alg, key } = t.services.keys.signingKey();
    return new CompactSign(base64url.decode(partsOf(f.accessToken).raw.payload)).setProtectedHeader({ alg, typ: "at+jwt" }).sign(key);
  }],
  ["signed with our key with typ JWT (not a token type of this server)", (t, f) => signWithOurKey(t, partsOf(f.accessToken).claims, { typ: "JWT" })],
  ["signed with our key without a typ", (t, f) => signWithOurKey(t, partsOf(f.accessToken).claims, { typ: undefined })],
  ["signed with our key, a payload that is JSON null", (t) => signWithOurKey(t, null)],
  ["signed with our key, a payload that is a JSON array", (t, f) => signWithOurKey(t, [partsOf(f.accessToken).claims])],
  ["signed with our key, without a jti", (t, f) => {
    const { jti: _jti, ...rest } = partsOf(f.accessToken).claims;
    return signWithOurKey(t, rest);
  }],
  ["a JWE-shaped token of five parts", (_t, f) => `${b64json({ alg: "RSA-OAEP", enc: "A256GCM" })}.${partsOf(f.accessToken).raw.payload}.a.b.c`],
  ["garbage exactly MAX_TOKEN_LENGTH long", () => "a".repeat(MAX_TOKEN_LENGTH)],
];

describe.each(backends)("undecodable tokens [%s]", (backend) => {
  const ready = useApp(backend);

  test.each(forgeries)("%s: 400 unsupported_token_type, nothing changes", async (_name, forge) => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    const forged = await forge(t, f, backend);
    issuedSecrets.add(forged);
    const before = await snapshot(t);
    for (const hint of [undefined, "access_token", "refresh_token"]) {
      const [res, body] = await revoke(t, owner, forged, hint);
      expectOAuthError(res, body, 400, "unsupported_token_type");
    }
    expect(await snapshot(t)).toEqual(before);
    await expectLive(t, f);
  });

  test("a token longer than MAX_TOKEN_LENGTH: 400 invalid_request, not processed", async () => {
    const t = await ready();
    const owner = await client(t, "confidential");
    const f = await codeFamily(t, owner);
    expect(f.accessToken.length).toBeLessThan(MAX_TOKEN_LENGTH / 4);
    const logs = watchLogs(t);
    const [res, body] = await revoke(t, owner, f.accessToken + "a".repeat(MAX_TOKEN_LENGTH));
    expectOAuthError(res, body, 400, "invalid_request");
    expect(logs().some((line) => line.event === "token.revocation.requested")).toBe(false);
    await expectLive(t, f);
  });
});
