// Signing keys (ES256, jose): generated on first start, shared by every instance on the
// database, rotated by `keys rotate`. A retired key stays published and accepted until every
// token it signed has expired.
import type { KeyObject } from "node:crypto";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { eq, gt, isNull, or, sql } from "drizzle-orm";
import type { CryptoKey, JWK } from "jose";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from "jose";
import type { Database } from "../../db/client.ts";
import { signingKeys } from "../../db/schema.ts";

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
  status: "active" | "retired";
  publicJwk: PublicJwk;
  verifyKey: CryptoKey;
  signKey: CryptoKey | undefined;
  /** The same keys for node:crypto (src/oauth/tokens.ts signs and verifies with them). */
  verifyKeyObject: KeyObject;
  signKeyObject: KeyObject | undefined;
  verifyUntil: Date | null;
}

export interface KeyStoreOptions {
  /** Longest lifetime of any token (seconds): how long a retired key must stay valid. */
  maxTokenLifetime: () => Promise<number>;
  /** Minimum seconds between two reloads triggered by an unknown kid. */
  reloadInterval?: number;
}

async function newKeyRow() {
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
  private lastReload = 0;
  private reloading: Promise<void> | undefined;

  private constructor(
    private readonly database: Database,
    private readonly options: KeyStoreOptions,
  ) {}

  /** Loads the keys, generating the first active key if the database has none. */
  static async open(database: Database, options: KeyStoreOptions): Promise<KeyStore> {
    const store = new KeyStore(database, options);
    await store.ensureActiveKey();
    await store.reload();
    return store;
  }

  private async ensureActiveKey(): Promise<void> {
    const existing = await this.database.db
      .select({ kid: signingKeys.kid })
      .from(signingKeys)
      .where(eq(signingKeys.status, "active"))
      .limit(1);
    if (existing.length > 0) return;
    // Several instances may start at once: the partial unique index keeps one active key.
    await this.database.db
      .insert(signingKeys)
      .values({ ...(await newKeyRow()), status: "active" })
      .onConflictDoNothing();
  }

  /** Re-reads the keys from the database (another instance may have rotated). */
  async reload(): Promise<void> {
    const rows = await this.database.db
      .select()
      .from(signingKeys)
      .where(or(eq(signingKeys.status, "active"), isNull(signingKeys.verifyUntil), gt(signingKeys.verifyUntil, sql`now()`)));
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
        verifyKeyObject: known?.verifyKeyObject ?? createPublicKey({ key: row.publicJwk as JsonWebKey, format: "jwk" }),
        signKeyObject:
          row.status === "active"
            ? (known?.signKeyObject ?? createPrivateKey({ key: row.privateJwk as JsonWebKey, format: "jwk" }))
            : undefined,
        verifyUntil: row.verifyUntil,
      };
      keys.set(row.kid, loaded);
      if (row.status === "active") active = loaded;
    }
    if (!active) throw new Error("no active signing key in the database");
    this.keys = keys;
    this.active = active;
    this.lastReload = Date.now();
  }

  signingKey(): { kid: string; alg: string; key: CryptoKey; keyObject: KeyObject } {
    const active = this.active!;
    return { kid: active.kid, alg: active.alg, key: active.signKey!, keyObject: active.signKeyObject! };
  }

  /** The key for a kid, reloading (at most every few seconds) when the kid is unknown. */
  async verificationKey(kid: string | undefined): Promise<{ alg: string; key: CryptoKey; keyObject: KeyObject } | undefined> {
    if (!kid) return undefined;
    let key = this.keys.get(kid);
    const interval = (this.options.reloadInterval ?? 5) * 1000;
    if (!key && Date.now() - this.lastReload >= interval) {
      this.reloading ??= this.reload().finally(() => (this.reloading = undefined));
      await this.reloading;
      key = this.keys.get(kid);
    }
    if (!key) return undefined;
    if (key.verifyUntil && key.verifyUntil.getTime() <= Date.now()) return undefined;
    return { alg: key.alg, key: key.verifyKey, keyObject: key.verifyKeyObject };
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
    const lifetime = await this.options.maxTokenLifetime();
    const row = await newKeyRow();
    const retired = await this.database.db.transaction(async (tx) => {
      const old = await tx
        .update(signingKeys)
        .set({
          status: "retired",
          retiredAt: sql`now()`,
          verifyUntil: sql`now() + make_interval(secs => ${lifetime})`,
        })
        .where(eq(signingKeys.status, "active"))
        .returning({ kid: signingKeys.kid });
      await tx.insert(signingKeys).values({ ...row, status: "active" });
      return old[0]?.kid;
    });
    await this.reload();
    return { retired, active: row.kid };
  }
}

