// In-process throttling of repeated failures (client authentication, logins): after `limit`
// failures for a key within `windowSeconds` of the first, the key is refused until the window
// ends. State is per process — several instances each count on their own.

export interface ThrottleOptions {
  limit: number;
  windowSeconds: number;
  /** Keys remembered at most; the oldest are forgotten first (bounded memory under attack). */
  maxKeys?: number;
  now?: () => number;
}

interface Entry {
  failures: number;
  windowEnds: number;
}

export class FailureThrottle {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly maxKeys: number;

  constructor(private readonly options: ThrottleOptions) {
    this.now = options.now ?? Date.now;
    this.maxKeys = options.maxKeys ?? 100_000;
  }

  /** True while no key has failed (so no key can be refused). */
  get empty(): boolean {
    return this.entries.size === 0;
  }

  /** Seconds until `key` may try again, or 0 when it may try now. */
  retryAfter(key: string): number {
    const entry = this.entries.get(key);
    if (!entry) return 0;
    const now = this.now();
    if (entry.windowEnds <= now) {
      this.entries.delete(key);
      return 0;
    }
    return entry.failures >= this.options.limit ? Math.ceil((entry.windowEnds - now) / 1000) : 0;
  }

  fail(key: string): void {
    const now = this.now();
    const entry = this.entries.get(key);
    if (entry && entry.windowEnds > now) {
      entry.failures++;
      return;
    }
    this.entries.delete(key);
    if (this.entries.size >= this.maxKeys) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { failures: 1, windowEnds: now + this.options.windowSeconds * 1000 });
  }

  /** Forgets the failures of `key` (after a success). */
  reset(key: string): void {
    this.entries.delete(key);
  }
}
