// The people who sign in: built-in accounts (username + Bun.password hash) and users named by
// a trusted upstream header. The answer to a failed sign-in never says which part was wrong.
import type { User, UserStore } from "../../db/stores/users.ts";

export type { User };

export const MAX_USERNAME_LENGTH = 256;
/** Stored for users created from the trusted header: no password ever matches it. */
const NO_PASSWORD = "!";

export function isValidUsername(username: string): boolean {
  // Printable, no surrounding spaces, bounded.
  return username.length > 0 && username.length <= MAX_USERNAME_LENGTH && username === username.trim() &&
    !/[\u0000-\u001f\u007f]/.test(username);
}

export class Accounts {
  private dummyHash: Promise<string> | undefined;

  constructor(private readonly store: UserStore) {}

  findById(id: string): Promise<User | undefined> {
    if (!/^[0-9a-f-]{36}$/i.test(id)) return Promise.resolve(undefined);
    return this.store.findById(id);
  }

  findByUsername(username: string): Promise<User | undefined> {
    if (!isValidUsername(username)) return Promise.resolve(undefined);
    return this.store.findByUsername(username);
  }

  /** The user whose password this is, or undefined; costs one hash check either way. */
  async authenticate(username: string, password: string): Promise<User | undefined> {
    const user = await this.findByUsername(username);
    // An unknown user still costs a hash verification, so timing does not reveal who exists.
    this.dummyHash ??= Bun.password.hash("not a password of anyone");
    const hash = user && user.passwordHash !== NO_PASSWORD ? user.passwordHash : await this.dummyHash;
    let ok = false;
    try {
      ok = await Bun.password.verify(password, hash);
    } catch {
      ok = false; // an unreadable hash matches nothing
    }
    // A disabled user gets the same answer as a wrong password, after the same work.
    return ok && user && user.passwordHash !== NO_PASSWORD && user.disabledAt === null ? user : undefined;
  }

  /** The user a trusted upstream header names, created on first sight (it has no password); never a disabled one. */
  async fromTrustedHeader(username: string): Promise<User | undefined> {
    const existing = await this.findByUsername(username);
    if (existing || !isValidUsername(username)) return existing?.disabledAt === null ? existing : undefined;
    // Two first requests at once: one insert wins, both then read the same row.
    await this.store.insert(username, NO_PASSWORD);
    return this.findByUsername(username);
  }
}
