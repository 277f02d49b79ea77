// DPoP proofs at a resource server (RFC 9449 §4.3, §7): a request that presents a DPoP-bound
// access token with `Authorization: DPoP` carries one proof, signed by the key the token is bound
// to (its cnf.jkt), for this method and URL, fresh, with the token's hash (ath) and a jti this
// process has not seen. jose alone: the proof's own header key verifies it (EmbeddedJWK).
import type { JWK } from "jose";
import { base64url, calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from "jose";
import { BearerError } from "./errors.ts";

/** Asymmetric algorithms only (RFC 9449 §4.3 check 5): never none, never HMAC. */
export const DPOP_ALGORITHMS = ["ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"];
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const MAX_PROOF_LENGTH = 8192;

export interface DpopOptions {
  /** Algorithms accepted for proofs (default DPOP_ALGORITHMS); named in the challenge's algs. */
  algorithms?: string[];
  /** How old a proof's iat may be, in seconds (default 60; a proof is made for each request). */
  maxAgeSeconds?: number;
  /** Most proof jtis remembered against replay (default 100 000; the oldest go first). */
  replayCacheSize?: number;
}

/** What the request says that a proof is checked against. */
export interface ProofContext {
  /** The DPoP header values. */
  proofs: string[];
  method: string;
  /** The URL the client called (query and fragment are ignored). */
  url: string;
}

export const dpopError = (code: "invalid_dpop_proof" | "invalid_token", description: string) => {
  const error = new BearerError(code === "invalid_dpop_proof" ? "invalid_dpop_proof" : "invalid_token", description);
  error.scheme = "DPoP";
  return error;
};

const htuOf = (value: string): string | undefined => {
  if (!URL.canParse(value)) return undefined;
  const url = new URL(value);
  url.search = "";
  url.hash = "";
  return url.href;
};

export class DpopProofChecker {
  readonly algorithms: string[];
  private readonly maxAge: number;
  private readonly seen = new Map<string, number>();
  private readonly capacity: number;

  constructor(options: DpopOptions = {}, private readonly tolerance = 5) {
    this.algorithms = options.algorithms ?? DPOP_ALGORITHMS;
    if (this.algorithms.some((alg) => alg.toLowerCase() === "none" || alg.startsWith("HS"))) throw new Error("DPoP proofs need asymmetric algorithms");
    this.maxAge = options.maxAgeSeconds ?? 60;
    this.capacity = options.replayCacheSize ?? 100_000;
  }

  /** Checks the proof for a token bound to `jkt`; throws a DPoP-scheme BearerError (401). */
  async check(context: ProofContext, token: string, jkt: string): Promise<void> {
    // §4.3 check 1.
    if (context.proofs.length !== 1) throw dpopError("invalid_dpop_proof", "exactly one DPoP header is required");
    const proof = context.proofs[0]!;
    if (proof.length > MAX_PROOF_LENGTH) throw dpopError("invalid_dpop_proof", "the DPoP proof is too long");
    let jwk: JWK;
    let payload: Record<string, unknown>;
    try {
      const header = decodeProtectedHeader(proof);
      jwk = header.jwk as JWK;
      if (typeof jwk !== "object" || jwk === null || PRIVATE_MEMBERS.some((member) => member in jwk)) throw new Error("not a public jwk");
      // §4.3 checks 2, 4–6: a JWT, typ dpop+jwt, an allowed algorithm, signed by its header's key.
      ({ payload } = await jwtVerify(proof, EmbeddedJWK, { typ: "dpop+jwt", algorithms: this.algorithms }));
    } catch {
      throw dpopError("invalid_dpop_proof", "the DPoP proof is not valid");
    }
    const { jti, htm, htu, iat, ath } = payload;
    if (typeof jti !== "string" || jti === "" || jti.length > 256) throw dpopError("invalid_dpop_proof", "the DPoP proof needs a jti");
    // §4.3 checks 8, 9.
    if (htm !== context.method) throw dpopError("invalid_dpop_proof", "the DPoP proof is for another method");
    if (typeof htu !== "string" || htuOf(htu) === undefined || htuOf(htu) !== htuOf(context.url)) {
      throw dpopError("invalid_dpop_proof", "the DPoP proof is for another URL");
    }
    // §4.3 check 11.
    const now = Math.floor(Date.now() / 1000);
    if (typeof iat !== "number" || iat < now - this.maxAge - this.tolerance || iat > now + this.tolerance) {
      throw dpopError("invalid_dpop_proof", "the DPoP proof is not fresh");
    }
    // §4.3 check 12: the token's hash, and the key the token is bound to (§6.1).
    const expected = base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))));
    if (ath !== expected) throw dpopError("invalid_dpop_proof", "the DPoP proof is for another token");
    if ((await this.thumbprint(jwk)) !== jkt) throw dpopError("invalid_token", "the token is bound to another key");
    // §11.1: once per proof (this process; a proof lives maxAge seconds).
    const id = `${jkt}.${jti}`;
    const until = this.seen.get(id);
    if (until !== undefined && until > now) throw dpopError("invalid_dpop_proof", "the DPoP proof was used before");
    this.remember(id, now + this.maxAge + 2 * this.tolerance, now);
  }

  /** RFC 7638 thumbprints of the keys seen lately (a client signs every proof with one key). */
  private readonly thumbprints = new Map<string, string>();

  private async thumbprint(jwk: JWK): Promise<string> {
    const id = JSON.stringify([jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.n, jwk.e]);
    let jkt = this.thumbprints.get(id);
    if (jkt === undefined) {
      jkt = await calculateJwkThumbprint(jwk, "sha256");
      if (this.thumbprints.size >= 10_000) this.thumbprints.delete(this.thumbprints.keys().next().value!);
      this.thumbprints.set(id, jkt);
    }
    return jkt;
  }

  private remember(id: string, until: number, now: number): void {
    this.seen.set(id, until);
    if (this.seen.size <= this.capacity) return;
    for (const [key, expires] of this.seen) {
      if (this.seen.size <= this.capacity && expires > now) break;
      this.seen.delete(key); // insertion order: the oldest first
    }
  }
}
