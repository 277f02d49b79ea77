// The signed-in state of a browser, kept on the server: the cookie holds 256 random bits, the
// database the SHA-256 of them (db/stores/browser-sessions.ts). Logout ends the row, and with it
// every copy of the cookie; so do "Sign out everywhere", a disabled or deleted user and a new
// password. Every instance on the database knows every sign-in, and it survives a restart.
import { createHash, randomBytes } from "node:crypto";
import type { BrowserSessionRow, BrowserSessionStore } from "../../db/stores/browser-sessions.ts";
import type { User } from "../../db/stores/users.ts";

export type { BrowserSessionRow };

/** How long a sign-in lasts (seconds). */
export const BROWSER_SESSION_TTL = 12 * 3600;
const MAX_USER_AGENT = 200;
/** A cookie value this server sets: 43 base64url characters. */
const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/;

export interface SignedInBrowser {
  session: BrowserSessionRow;
  user: User;
}

const hash = (value: string) => createHash("sha256").update(value).digest("base64url");

export class BrowserSessions {
  constructor(private readonly store: BrowserSessionStore) {}

  /** Starts a sign-in; answers the cookie's value (shown once, stored as a hash). */
  async start(userId: string, userAgent: string | null): Promise<{ cookieValue: string; session: BrowserSessionRow }> {
    const cookieValue = randomBytes(32).toString("base64url");
    const session = await this.store.insert({
      tokenHash: hash(cookieValue),
      userId,
      userAgent: userAgent ? userAgent.slice(0, MAX_USER_AGENT) : null,
      ttlSeconds: BROWSER_SESSION_TTL,
    });
    return { cookieValue, session };
  }

  /** The live sign-in a cookie names, or undefined for anything else (ended, expired, a disabled user, junk). */
  async find(cookieValue: string | undefined): Promise<SignedInBrowser | undefined> {
    if (!cookieValue || !COOKIE_VALUE.test(cookieValue)) return undefined;
    return this.store.findLive(hash(cookieValue));
  }

  /** A new password sign-in in a live sign-in of the same user: its auth_time moves on, its sid stays. */
  reauthenticated(sessionId: string, userId: string): Promise<boolean> {
    return this.store.reauthenticated(sessionId, userId);
  }

  /** Ends a sign-in (logout); `userId` restricts it to that user's. */
  end(sessionId: string, reason: string, userId?: string): Promise<boolean> {
    return this.store.end(sessionId, reason, userId);
  }

  /** A user's live sign-ins, the newest first. */
  list(userId: string): Promise<BrowserSessionRow[]> {
    return this.store.live(userId);
  }
}
