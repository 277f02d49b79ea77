// The in-memory deny-list of revoked access tokens (by jti) a resource server keeps from the
// revocation feed. An entry is kept until its token could no longer pass the expiry check.

export class DenyList {
  /** jti → the time (ms) after which the entry may be dropped. */
  private readonly entries = new Map<string, number>();
  private added = 0;

  /** @param retainSeconds kept past `exp`: the clock skew the verifier tolerates. */
  constructor(private readonly retainSeconds = 0) {}

  add(jti: string, exp: number): void {
    this.entries.set(jti, (exp + this.retainSeconds) * 1000);
    if (++this.added % 1000 === 0) this.prune();
  }

  has(jti: string): boolean {
    return this.entries.has(jti);
  }

  /** Drops the entries whose tokens have expired. */
  prune(now = Date.now()): void {
    for (const [jti, until] of this.entries) if (until <= now) this.entries.delete(jti);
  }

  get size(): number {
    return this.entries.size;
  }
}
