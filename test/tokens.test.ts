// The JWS compact serialization done over node:crypto (src/oauth/tokens.ts): interoperable
// with an independent implementation (jose) both ways, and strict about what it refuses.
import { describe, expect, test } from "bun:test";
import { CompactSign, compactVerify, importJWK } from "jose";
import { TokenFormatError } from "../src/oauth/tokens.ts";
import { useTestApp } from "./helpers/app.ts";

const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

describe("token format", () => {
  const ready = useTestApp("pglite");
  const claims = () => ({
    sub: "user-1",
    aud: "http://localhost/api",
    exp: Math.floor(Date.now() / 1000) + 60,
    iat: Math.floor(Date.now() / 1000),
    jti: crypto.randomUUID(),
    client_id: "client-1",
    scope: "read",
  });

  test("a signed token verifies with jose against the published key", async () => {
    const t = await ready();
    const token = await t.services.tokens.sign("access_token", claims());
    const [jwk] = t.services.keys.jwks().keys;
    const { payload, protectedHeader } = await compactVerify(token, await importJWK(jwk!, "ES256"));
    expect(protectedHeader).toEqual({ alg: "ES256", kid: jwk!.kid, typ: "at+jwt" });
    expect(JSON.parse(new TextDecoder().decode(payload)).iss).toBe("http://localhost");
  });

  test("a token signed by jose with the server's key verifies", async () => {
    const t = await ready();
    const { kid, key } = t.services.keys.signingKey();
    const token = await new CompactSign(new TextEncoder().encode(JSON.stringify({ iss: "http://localhost", ...claims() })))
      .setProtectedHeader({ alg: "ES256", kid, typ: "rt+jwt" })
      .sign(key);
    const verified = await t.services.tokens.verify(token);
    expect(verified.kind).toBe("refresh_token");
    expect(verified.expired).toBe(false);
  });

  const forgeries: Record<string, (token: string, kid: string) => string> = {
    "alg none": (token) => `${b64({ alg: "none", typ: "at+jwt" })}.${token.split(".")[1]}.`,
    "alg HS256": (token, kid) => `${b64({ alg: "HS256", kid, typ: "at+jwt" })}.${token.split(".")[1]}.${token.split(".")[2]}`,
    "an unknown typ": (token, kid) => `${b64({ alg: "ES256", kid, typ: "JWT" })}.${token.split(".").slice(1).join(".")}`,
    "an unknown kid": (token) => `${b64({ alg: "ES256", kid: "nope", typ: "at+jwt" })}.${token.split(".").slice(1).join(".")}`,
    "a changed payload": (token) => {
      const [header, payload, signature] = token.split(".");
      const changed = { ...JSON.parse(Buffer.from(payload!, "base64url").toString()), scope: "read write admin" };
      return `${header}.${b64(changed)}.${signature}`;
    },
    "a changed signature": (token) => `${token.slice(0, -2)}${token.endsWith("AA") ? "BB" : "AA"}`,
    "a short signature": (token) => token.slice(0, token.lastIndexOf(".") + 10),
    "four parts": (token) => `${token}.${token.split(".")[2]}`,
    "a header that is not an object": (token) => `${b64("[1]")}.${token.split(".").slice(1).join(".")}`,
  };

  test.each(Object.keys(forgeries))("refuses %s", async (name) => {
    const t = await ready();
    const token = await t.services.tokens.sign("access_token", claims());
    const forged = forgeries[name]!(token, t.services.keys.signingKey().kid);
    await expect(t.services.tokens.verify(forged)).rejects.toBeInstanceOf(TokenFormatError);
  });

  test("refuses a correctly signed token with a crit header (RFC 7515 §4.1.11)", async () => {
    const t = await ready();
    const { kid, key } = t.services.keys.signingKey();
    const token = await new CompactSign(new TextEncoder().encode(JSON.stringify({ iss: "http://localhost", ...claims() })))
      .setProtectedHeader({ alg: "ES256", kid, typ: "at+jwt", crit: ["x-ext"], "x-ext": 1 })
      .sign(key, { crit: { "x-ext": true } });
    // jose's compactVerify refuses an extension it was not told it understands.
    await expect(t.services.tokens.verify(token)).rejects.toBeInstanceOf(TokenFormatError);
  });

  test("refuses a correctly signed token of another issuer", async () => {
    const t = await ready();
    const { kid, key } = t.services.keys.signingKey();
    const token = await new CompactSign(new TextEncoder().encode(JSON.stringify({ ...claims(), iss: "https://evil.example" })))
      .setProtectedHeader({ alg: "ES256", kid, typ: "at+jwt" })
      .sign(key);
    await expect(t.services.tokens.verify(token)).rejects.toThrow("issuer mismatch");
  });
});
