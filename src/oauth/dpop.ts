// DPoP (RFC 9449): checks a proof as §4.3 lists (typ, an asymmetric algorithm, a public key only,
// the signature by that key, htm, htu, iat, jti never seen before at any instance, and the
// server's nonce where it applies; `ath` where a token comes with the proof, at UserInfo) and answers the key's thumbprint (RFC 7638), the `jkt` tokens
// are bound to (§6). Server nonces (§8) are sealed time windows: every instance sharing the
// signing keys makes and accepts them (under a key of their own, src/oauth/keys.ts), and they
// change with each window.
import type { JWK } from "jose";
import { base64url, compactVerify, decodeProtectedHeader, importJWK } from "jose";
import type { DpopProofStore } from "../../db/stores/dpop.ts";
import { OAuthError } from "../errors.ts";
import type { KeyStore } from "./keys.ts";

/** §5.1 dpop_signing_alg_values_supported: asymmetric algorithms only (never none, never HMAC). */
export const DPOP_ALGS = ["ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"] as const;
/** A proof's iat may be this many seconds old, or this many ahead of this server's clock. */
export const PROOF_MAX_AGE = 300;
export const PROOF_MAX_AHEAD = 60;
/** A nonce is good for the window it was made in and the next one. */
const NONCE_WINDOW_SECONDS = 300;
const MAX_PROOF_LENGTH = 8192;
const NONCE_AAD = new TextEncoder().encode("token-authority/dpop-nonce/v1");
/** JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

export interface ProofRequest {
  /** The DPoP header values of the request (exactly one is allowed). */
  headers: string[];
  method: string;
  /** The request's URL (query and fragment are ignored, §4.3 check 9). */
  url: string;
  /** Whether the proof must carry a nonce of this server (§8). */
  nonceRequired: boolean;
  /** The access token presented with the proof, where one is (§4.3 check 12: `ath`). */
  accessToken?: string;
}

export interface CheckedProof {
  /** The RFC 7638 thumbprint of the proof's key (base64url SHA-256): the `cnf.jkt` of what it binds. */
  jkt: string;
}

/**
 * A proof that passed every check but the replay one (§11.1): `record` it, or hand `replay` to a
 * statement that records it with what the request writes (a mint's session INSERT), so that a
 * token request makes one commit.
 */
export interface VerifiedProof extends CheckedProof {
  replay: ProofRecord;
}

/** A proof's row in the replay store: the digest of its key and jti, kept while it could pass the iat check. */
export interface ProofRecord {
  id: string;
  /** Seconds. */
  ttl: number;
}

/** The error a proof earns: invalid_dpop_proof, or use_dpop_nonce with a fresh nonce (§8). */
export function dpopError(code: "invalid_dpop_proof" | "use_dpop_nonce", description: string, nonce?: string): OAuthError {
  return new OAuthError(code, description, nonce ? { "DPoP-Nonce": nonce } : {});
}

/** §11.1: the answer to a proof seen before, here or at another instance. */
export function replayedProof(): OAuthError {
  return dpopError("invalid_dpop_proof", "the proof was used before (jti)");
}

/** RFC 3986 §6.2.2–6.2.3 normalisation of an htu, without query and fragment. */
export function normalizeHtu(value: string): string | undefined {
  if (!URL.canParse(value)) return undefined;
  const url = new URL(value);
  url.search = "";
  url.hash = "";
  return url.href;
}

/** RFC 7638 §3.2: the required members of a public key, by key type (their thumbprint input, in order). */
const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = { EC: ["crv", "kty", "x", "y"], RSA: ["e", "kty", "n"], OKP: ["crv", "kty", "x"] };
const KEY_CACHE_SIZE = 10_000;

export class DpopVerifier {
  /** Keys seen lately, by their thumbprint input: a client signs its proofs with one key (import and thumbprint once). */
  private readonly keyCache = new Map<string, { key: CryptoKey | Uint8Array; jkt: string; alg: string }>();

  constructor(
    private readonly keys: Pick<KeyStore, "sealingKeys">,
    private readonly proofs: Pick<DpopProofStore, "firstSeen">,
    private readonly now: () => number = Date.now,
  ) {}

  /** Checks the request's proof (§4.3) and records it (§11.1); throws invalid_dpop_proof or use_dpop_nonce. */
  async check(request: ProofRequest): Promise<CheckedProof> {
    const proof = await this.verify(request);
    await this.record(proof);
    return proof;
  }

  /** §11.1: a proof is used once, at whichever instance sees it first. */
  async record(proof: VerifiedProof): Promise<void> {
    if (!(await this.proofs.firstSeen(proof.replay.id, proof.replay.ttl))) throw replayedProof();
  }

  /** Every check of §4.3 but the replay one, which the caller makes (`record`, or in its own statement). */
  async verify(request: ProofRequest): Promise<VerifiedProof> {
    // §4.3 check 1: "There is not more than one DPoP HTTP request header field."
    if (request.headers.length !== 1) throw dpopError("invalid_dpop_proof", "exactly one DPoP header is allowed");
    const proof = request.headers[0]!;
    if (proof.length > MAX_PROOF_LENGTH || proof.split(".").length !== 3) throw dpopError("invalid_dpop_proof", "the DPoP proof is not a JWT");
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      throw dpopError("invalid_dpop_proof", "the DPoP proof is not a JWT");
    }
    // §4.3 checks 4–7.
    if (header.typ !== "dpop+jwt") throw dpopError("invalid_dpop_proof", 'the proof\'s typ must be "dpop+jwt"');
    if (typeof header.alg !== "string" || !(DPOP_ALGS as readonly string[]).includes(header.alg)) {
      throw dpopError("invalid_dpop_proof", `the proof's alg must be one of ${DPOP_ALGS.join(", ")}`);
    }
    const jwk = header.jwk as JWK | undefined;
    if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk) || typeof jwk.kty !== "string") {
      throw dpopError("invalid_dpop_proof", "the proof's header must carry its public key (jwk)");
    }
    if (PRIVATE_MEMBERS.some((member) => member in jwk)) throw dpopError("invalid_dpop_proof", "the proof's jwk must be a public key");
    let payload: Record<string, unknown>;
    let jkt: string;
    try {
      const known = await this.keyOf(jwk, header.alg);
      jkt = known.jkt;
      const verified = await compactVerify(proof, known.key, { algorithms: [header.alg] });
      payload = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
      if (typeof payload !== "object" || payload === null || Array.isArray(payload)) throw new Error("not an object");
    } catch {
      throw dpopError("invalid_dpop_proof", "the proof's signature does not verify with its jwk");
    }
    const { jti, htm, htu, iat, nonce, ath } = payload;
    // §4.3 check 3: the claims required.
    if (typeof jti !== "string" || jti === "" || jti.length > 256) throw dpopError("invalid_dpop_proof", "the proof needs a jti");
    // §4.3 check 8.
    if (htm !== request.method) throw dpopError("invalid_dpop_proof", "the proof's htm is not this request's method");
    // §4.3 check 9: "the htu claim matches the HTTP URI value for the HTTP request in which the JWT was received, ignoring any query and fragment parts".
    const claimed = typeof htu === "string" ? (htu === request.url ? htu : normalizeHtu(htu)) : undefined;
    if (claimed === undefined || (claimed !== request.url && claimed !== normalizeHtu(request.url))) {
      throw dpopError("invalid_dpop_proof", "the proof's htu is not this request's URL");
    }
    // §4.3 check 11: iat within an acceptable window.
    const nowSeconds = Math.floor(this.now() / 1000);
    if (typeof iat !== "number" || !Number.isFinite(iat)) throw dpopError("invalid_dpop_proof", "the proof needs an iat");
    if (iat < nowSeconds - PROOF_MAX_AGE) throw dpopError("invalid_dpop_proof", "the proof is too old (iat)");
    if (iat > nowSeconds + PROOF_MAX_AHEAD) throw dpopError("invalid_dpop_proof", "the proof is from the future (iat)");
    // §4.3 check 12: "if presented to a protected resource in conjunction with an access token, ensure that the value of the ath claim equals the hash of that access token".
    if (request.accessToken !== undefined && ath !== (Bun.CryptoHasher.hash("sha256", request.accessToken, "base64url") as string)) {
      throw dpopError("invalid_dpop_proof", "the proof's ath is not the hash of the access token");
    }
    // §4.3 check 10, §8: the nonce this server gave.
    if (request.nonceRequired) {
      if (typeof nonce !== "string") throw dpopError("use_dpop_nonce", "a DPoP nonce is required", await this.nonce());
      if (!(await this.nonceHolds(nonce))) throw dpopError("use_dpop_nonce", "the DPoP nonce is stale", await this.nonce());
    }
    // §11.1: what the replay store keeps of it, while it could pass the iat check above.
    const id = Bun.CryptoHasher.hash("sha256", `${jkt}.${jti}`, "base64url") as string;
    return { jkt, replay: { id, ttl: PROOF_MAX_AGE + PROOF_MAX_AHEAD } };
  }

  /** The imported key and RFC 7638 thumbprint of a proof's jwk (cached by the thumbprint's input). */
  private async keyOf(jwk: JWK, alg: string): Promise<{ key: CryptoKey | Uint8Array; jkt: string }> {
    const members = THUMBPRINT_MEMBERS[jwk.kty!];
    if (!members || members.some((member) => typeof (jwk as Record<string, unknown>)[member] !== "string")) throw new Error("unsupported jwk");
    const input = JSON.stringify(Object.fromEntries(members.map((member) => [member, (jwk as Record<string, unknown>)[member]])));
    const cached = this.keyCache.get(`${alg}:${input}`);
    if (cached) return cached;
    const entry = { key: await importJWK(jwk, alg), jkt: Bun.CryptoHasher.hash("sha256", input, "base64url") as string, alg };
    if (this.keyCache.size >= KEY_CACHE_SIZE) this.keyCache.delete(this.keyCache.keys().next().value!);
    this.keyCache.set(`${alg}:${input}`, entry);
    return entry;
  }

  /** A nonce for the current window (§8.1: sent in the DPoP-Nonce header). */
  async nonce(): Promise<string> {
    const window = Math.floor(this.now() / 1000 / NONCE_WINDOW_SECONDS);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const plain = new Uint8Array(new BigUint64Array([BigInt(window)]).buffer);
    const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: NONCE_AAD }, this.keys.sealingKeys("dpop-nonce").sealing, plain));
    const out = new Uint8Array(iv.length + sealed.length);
    out.set(iv);
    out.set(sealed, iv.length);
    return base64url.encode(out);
  }

  /** A nonce this server (any instance) made in this window or the one before. */
  private async nonceHolds(nonce: string): Promise<boolean> {
    let bytes: Uint8Array;
    try {
      bytes = base64url.decode(nonce);
    } catch {
      return false;
    }
    if (bytes.length !== 12 + 8 + 16) return false;
    const current = Math.floor(this.now() / 1000 / NONCE_WINDOW_SECONDS);
    for (const key of this.keys.sealingKeys("dpop-nonce").opening) {
      try {
        const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: bytes.slice(0, 12), additionalData: NONCE_AAD }, key, bytes.slice(12));
        const window = Number(new BigUint64Array(plain.slice(0, 8))[0]);
        return window === current || window === current - 1;
      } catch {
        // another key's
      }
    }
    return false;
  }
}
