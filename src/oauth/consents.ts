// Consent remembered per user and client: a repeat authorization for covered scopes skips the
// consent page; withdrawing it ("Revoke access" on the account page) forgets it, ends the codes
// not yet redeemed and revokes every live session of that user for that client.
import type { ConsentStore } from "../../db/stores/consents.ts";
import type { SessionStore } from "../../db/stores/sessions.ts";
import type { SessionService } from "./sessions.ts";

export interface AuthorizedClient {
  clientId: string;
  name: string;
  clientUri: string | undefined;
  scopes: string[];
  /** When consent was last given; null for a client with live sessions but no consent. */
  authorizedAt: Date | null;
  liveSessions: number;
}

export class Consents {
  constructor(
    private readonly store: ConsentStore,
    private readonly grants: Pick<SessionStore, "expireUnredeemedCodes">,
    private readonly sessions: Pick<SessionService, "revoke">,
  ) {}

  async covers(userId: string, clientId: string, scopes: readonly string[]): Promise<boolean> {
    const scope = await this.store.scopeOf(userId, clientId);
    if (scope === undefined) return false;
    const granted = new Set(scope.split(" "));
    return scopes.every((s) => granted.has(s));
  }

  /** Adds the scopes to what the user has granted the client. */
  remember(userId: string, clientId: string, scopes: readonly string[]): Promise<void> {
    return this.store.remember(userId, clientId, scopes.join(" "));
  }

  /** The clients a user has authorized (consent given, or sessions still live). */
  async list(userId: string): Promise<AuthorizedClient[]> {
    const rows = await this.store.authorizedClients(userId);
    return rows.map(({ scope, ...row }) => ({ ...row, scopes: scope.split(" ").filter((s) => s !== "") }));
  }

  /**
   * Withdraws a user's authorization of a client: forgets the consent, kills the codes not yet
   * redeemed, and revokes every live session of the user for that client (race-safe, through
   * the sessions service). Returns the number of sessions revoked.
   */
  async withdraw(userId: string, clientId: string): Promise<number> {
    await this.store.forget(userId, clientId);
    await this.grants.expireUnredeemedCodes(userId, clientId);
    return this.sessions.revoke({ clientId, userId }, "consent_withdrawn");
  }
}
