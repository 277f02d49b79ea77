// Makes DPoP proofs (RFC 9449 §4.2) from the command line, for trying DPoP with curl: the key
// pair is made once and kept in ./dpop-key.json (a private key: keep it out of version control).
//   bun examples/dpop-proof.ts --jkt                                  the key's thumbprint (dpop_jkt)
//   bun examples/dpop-proof.ts POST http://localhost:3000/oauth/token [--nonce N] [--token ACCESS_TOKEN]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { JWK } from "jose";
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT } from "jose";

const KEY_FILE = "dpop-key.json";
const { values, positionals } = parseArgs({ allowPositionals: true, options: { jkt: { type: "boolean" }, nonce: { type: "string" }, token: { type: "string" } } });

if (!existsSync(KEY_FILE)) {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  writeFileSync(KEY_FILE, JSON.stringify(await exportJWK(privateKey)), { mode: 0o600 });
}
const privateJwk = JSON.parse(readFileSync(KEY_FILE, "utf8")) as JWK;
const { d: _d, ...publicJwk } = privateJwk;

if (values.jkt) {
  console.log(await calculateJwkThumbprint(publicJwk, "sha256"));
} else {
  const [htm, htu] = positionals;
  if (!htm || !htu) throw new Error("usage: bun examples/dpop-proof.ts METHOD URL [--nonce N] [--token ACCESS_TOKEN] | --jkt");
  const ath = values.token ? base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(values.token)))) : undefined;
  const proof = await new SignJWT({ jti: crypto.randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ...(ath ? { ath } : {}), ...(values.nonce ? { nonce: values.nonce } : {}) })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: publicJwk })
    .sign(await importJWK(privateJwk, "ES256"));
  console.log(proof);
}
