// Signing keys (ES256, jose): generated on first start, shared by every instance on the
// database, rotated by `keys rotate`. A retired key stays published and accepted until every
// token it signed has expired. Each instance re-reads the keys periodically (so it signs with,
// and publishes, the key another process made active) and at once on an unknown kid.
import type { CryptoKey, JWK } from "jose";
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from "jose";
import type { NewSigningKey, SigningKeyStore } from "../../db/stores/signing-keys.ts";

export const SIGNING_ALG = "ES256";
/** Algorithms a token of this server may carry; anything else (including "none") is refused. */
export const ALLOWED_ALGS: readonly string[] = [SIGNING_ALG];

export interface PublicJwk extends JWK {
  kid: string;
  alg: string;
  use: "sig";
}

interface LoadedKey {
  kid: string;
  alg: string;
  status: "active" | "retired" | "revoked";
  publicJwk: PublicJwk;
  verifyKey: CryptoKey;
  signKey: CryptoKey | undefined;
  /** Seals authorization codes (src/oauth/authorization-codes.ts). */
  codeKey: CryptoKey;
  /** Seals DPoP nonces (src/oauth/dpop.ts). */
  nonceKey: CryptoKey;
  verifyUntil: Date | null;
}

/** What a sealing key is for: each purpose has its own HKDF `info`, so its own key. */
const SEALING_INFO = {
  code: new TextEncoder().encode("token-authority/authorization-code/v1"),
  "dpop-nonce": new TextEncoder().encode("token-authority/dpop-nonce/v1"),
} as const;
export type SealingPurpose = keyof typeof SEALING_INFO;

/**
 * An AES-256-GCM key that seals what the server gives out and reads back (authorization codes,
 * DPoP nonces), derived from a signing key's private scalar with HKDF-SHA256 (RFC 5869) under
 * the purpose's own `info`: every instance sharing the signing keys derives the same key, and
 * no key of one purpose serves another.
 */
export async function deriveSealingKey(privateJwk: JWK, purpose: SealingPurpose): Promise<CryptoKey> {
  const material = await crypto.subtle.importKey("raw", base64url.decode(privateJwk.d!) as Uint8Array<ArrayBuffer>, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: SEALING_INFO[purpose] },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

export interface KeyStoreOptions {
  /** Longest lifetime of any token (seconds): how long a retired key must stay valid. */
  maxTokenLifetime: () => Promise<number>;
  /** Minimum seconds between two reloads triggered by an unknown kid. */
  reloadInterval?: number;
  /**
   * Seconds an instance may go on signing with a key after another process retired it (the
   * periodic reload interval): added to how long a retired key keeps verifying.
   */
  signingLag?: number;
}

async function newKeyRow(): Promise<NewSigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  return {
    kid,
    alg: SIGNING_ALG,
    publicJwk: { ...publicJwk, kid, alg: SIGNING_ALG, use: "sig" } as JsonWebKey,
    privateJwk: (await exportJWK(privateKey)) as JsonWebKey,
  };
}

export class KeyStore {
  private keys = new Map<string, LoadedKey>();
  private active: LoadedKey | undefined;
  /** When an unknown kid last caused a reload (periodic reloads do not count). */
  private lastKidReload = 0;
  private reloading: Promise<void> | undefined;

  private constructor(
    private readonly store: SigningKeyStore,
    private readonly options: KeyStoreOptions,
  ) {}

  /** Loads the keys, generating the first active key if the database has none. */
  static async open(store: SigningKeyStore, options: KeyStoreOptions): Promise<KeyStore> {
    const keys = new KeyStore(store, options);
    // Several instances may start at once: the store keeps one active key.
    if (!(await store.hasActive())) await store.insertActiveIfNone(await newKeyRow());
    await keys.reload();
    return keys;
  }

  /** Re-reads the keys from the database (another instance may have rotated). */
  async reload(): Promise<void> {
    const rows = await this.store.valid();
    const keys = new Map<string, LoadedKey>();
    let active: LoadedKey | undefined;
    for (const row of rows) {
      const known = this.keys.get(row.kid);
      const loaded: LoadedKey = {
        kid: row.kid,
        alg: row.alg,
        status: row.status,
        publicJwk: row.publicJwk as PublicJwk,
        verifyKey: known?.verifyKey ?? ((await importJWK(row.publicJwk as JWK, row.alg)) as CryptoKey),
        signKey:
          row.status === "active"
            ? (known?.signKey ?? ((await importJWK(row.privateJwk as JWK, row.alg)) as CryptoKey))
            : undefined,
        codeKey: known?.codeKey ?? (await deriveSealingKey(row.privateJwk as JWK, "code")),
        nonceKey: known?.nonceKey ?? (await deriveSealingKey(row.privateJwk as JWK, "dpop-nonce")),
        verifyUntil: row.verifyUntil,
      };
      keys.set(row.kid, loaded);
      if (row.status === "active") active = loaded;
    }
    if (!active) throw new Error("no active signing key in the database");
    this.keys = keys;
    this.active = active;
  }

  /** reload(), shared by concurrent callers. */
  private reloadOnce(): Promise<void> {
    this.reloading ??= this.reload().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  /**
   * Reloads every `intervalSeconds` (TA_KEY_RELOAD_INTERVAL): after `keys rotate` (run by
   * another process) this instance signs with the new key and lists it in its JWKS within
   * one interval. A failed reload keeps the keys in memory and is retried at the next tick.
   */
  startReloading(intervalSeconds: number, onError: (error: unknown) => void): { stop(): Promise<void> } {
    const timer = setInterval(() => void this.reloadOnce().catch(onError), intervalSeconds * 1000);
    timer.unref?.();
    return {
      stop: async () => {
        clearInterval(timer);
        await this.reloading?.catch(() => {});
      },
    };
  }

  signingKey(): { kid: string; alg: string; key: CryptoKey } {
    const active = this.active!;
    return { kid: active.kid, alg: active.alg, key: active.signKey! };
  }

  /** The key for a kid, reloading (at most every few seconds) when the kid is unknown. */
  async verificationKey(kid: string | undefined): Promise<{ alg: string; key: CryptoKey } | undefined> {
    if (!kid) return undefined;
    let key = this.keys.get(kid);
    const interval = (this.options.reloadInterval ?? 5) * 1000;
    if (!key && Date.now() - this.lastKidReload >= interval) {
      this.lastKidReload = Date.now();
      await this.reloadOnce();
      key = this.keys.get(kid);
    }
    if (!key) return undefined;
    if (key.verifyUntil && key.verifyUntil.getTime() <= Date.now()) return undefined;
    return { alg: key.alg, key: key.verifyKey };
  }

  /** The keys of a sealing purpose: the active key's seals, every loaded key's open. */
  sealingKeys(purpose: SealingPurpose): { sealing: CryptoKey; opening: CryptoKey[] } {
    const keyOf = (key: LoadedKey) => (purpose === "code" ? key.codeKey : key.nonceKey);
    const active = this.active!;
    return { sealing: keyOf(active), opening: [keyOf(active), ...[...this.keys.values()].filter((k) => k !== active).map(keyOf)] };
  }

  /** The keys of authorization codes (sealingKeys("code")). */
  codeKeys(): { sealing: CryptoKey; opening: CryptoKey[] } {
    return this.sealingKeys("code");
  }

  /** Public keys for /.well-known/jwks.json: the active one and retired ones still valid. */
  jwks(): { keys: PublicJwk[] } {
    const now = Date.now();
    return {
      keys: [...this.keys.values()]
        .filter((k) => !k.verifyUntil || k.verifyUntil.getTime() > now)
        .map((k) => k.publicJwk),
    };
  }

  /** Adds a new active key and retires the current one; returns both kids. */
  async rotate(): Promise<{ retired: string | undefined; active: string }> {
    const lifetime = (await this.options.maxTokenLifetime()) + (this.options.signingLag ?? 0);
    const row = await newKeyRow();
    const retired = await this.store.rotate(row, lifetime);
    await this.reload();
    return { retired, active: row.kid };
  }
}

