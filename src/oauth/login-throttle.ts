// Throttling of failed sign-ins, per username and per client IP: after LIMIT consecutive
// failures a key is locked (429 with Retry-After); each further lock of the same key lasts
// twice as long, up to MAX_LOCK. A success clears the key. In process, so per instance.

export const LOGIN_FAILURE_LIMIT = 10;
const BASE_LOCK_SECONDS = 60;
const MAX_LOCK_SECONDS = 3600;
/** Bound on remembered keys, so a flood of random usernames cannot exhaust memory. */
const MAX_ENTRIES = 100_000;

interface Entry {
  failures: number;
  /** Locks so far; the next lasts BASE_LOCK * 2^locks. */
  locks: number;
  lockedUntil: number;
  lastFailure: number;
}

export class LoginThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Seconds until every given key may try again, or 0 when none is locked. */
  retryAfter(keys: readonly string[]): number {
    const now = this.now();
    let until = 0;
    for (const key of keys) until = Math.max(until, this.entries.get(key)?.lockedUntil ?? 0);
    return until > now ? Math.ceil((until - now) / 1000) : 0;
  }

  fail(keys: readonly string[]): void {
    const now = this.now();
    for (const key of keys) {
      const entry = this.entries.get(key) ?? { failures: 0, locks: 0, lockedUntil: 0, lastFailure: 0 };
      // A key quiet for longer than the longest lock starts afresh.
      if (now - entry.lastFailure > MAX_LOCK_SECONDS * 1000) Object.assign(entry, { failures: 0, locks: 0 });
      entry.failures += 1;
      entry.lastFailure = now;
      if (entry.failures >= LOGIN_FAILURE_LIMIT) {
        entry.lockedUntil = now + Math.min(BASE_LOCK_SECONDS * 2 ** entry.locks, MAX_LOCK_SECONDS) * 1000;
        entry.locks += 1;
        entry.failures = 0;
      }
      this.entries.delete(key);
      this.entries.set(key, entry);
    }
    while (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
  }

  succeed(keys: readonly string[]): void {
    for (const key of keys) this.entries.delete(key);
  }
}
