// DPoP proofs (RFC 9449 §4.2) as a client makes them, with jose alone — and every way of
// getting one wrong, for the refusals.
import type { CryptoKey, JWK } from "jose";
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from "jose";

export interface ProofOptions {
  htm?: string;
  htu: string;
  /** An access token the proof goes with (sets ath). */
  accessToken?: string;
  nonce?: string;
  iat?: number;
  jti?: string;
  /** Changes to the header or the claims after they are made. */
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
}

export interface DpopKey {
  jwk: JWK;
  jkt: string;
  privateKey: CryptoKey;
  proof(options: ProofOptions): Promise<string>;
}

export async function dpopKey(alg = "ES256"): Promise<DpopKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const jkt = await calculateJwkThumbprint(jwk, "sha256");
  return {
    jwk,
    jkt,
    privateKey,
    async proof(options) {
      const ath = options.accessToken
        ? base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(options.accessToken))))
        : undefined;
      const claims = {
        jti: options.jti ?? crypto.randomUUID(),
        htm: options.htm ?? "POST",
        htu: options.htu,
        iat: options.iat ?? Math.floor(Date.now() / 1000),
        ...(ath ? { ath } : {}),
        ...(options.nonce ? { nonce: options.nonce } : {}),
        ...options.claims,
      };
      return new SignJWT(claims).setProtectedHeader({ alg, typ: "dpop+jwt", jwk, ...options.header } as never).sign(privateKey);
    },
  };
}

/** A JWS with a header and payload of one's choosing and no valid signature (alg none, HS256 …). */
export function unsignedJws(header: Record<string, unknown>, claims: Record<string, unknown>, signature = ""): string {
  const encode = (value: unknown) => base64url.encode(new TextEncoder().encode(JSON.stringify(value)));
  return `${encode(header)}.${encode(claims)}.${signature}`;
}
