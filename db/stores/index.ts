// The storage ports, one per concern, built over one database handle: every SQL statement of the
// server lives in these modules (and in db/ itself).
import type { Database } from "../client.ts";
import { BrowserSessionStore } from "./browser-sessions.ts";
import { ClientStore } from "./clients.ts";
import { ConsentStore } from "./consents.ts";
import { DpopProofStore } from "./dpop.ts";
import { LifecycleStore } from "./lifecycle.ts";
import { LogoutDeliveryStore } from "./logout-deliveries.ts";
import { ResourceStore } from "./resources.ts";
import { RevocationEventStore } from "./revocation-events.ts";
import type { SessionReplica } from "./sessions.ts";
import { SESSION_BATCHING, SessionStore } from "./sessions.ts";
import { SigningKeyStore } from "./signing-keys.ts";
import { SsfStore } from "./ssf.ts";
import { UserStore } from "./users.ts";

export interface Stores {
  sessions: SessionStore;
  clients: ClientStore;
  users: UserStore;
  consents: ConsentStore;
  signingKeys: SigningKeyStore;
  revocationEvents: RevocationEventStore;
  browserSessions: BrowserSessionStore;
  lifecycle: LifecycleStore;
  resources: ResourceStore;
  ssf: SsfStore;
  dpopProofs: DpopProofStore;
  logoutDeliveries: LogoutDeliveryStore;
}

export function createStores(database: Database, options: { clientCacheTtl: number; eventRetention: number; replica?: SessionReplica }): Stores {
  return {
    sessions: new SessionStore(database, SESSION_BATCHING, options.replica),
    clients: new ClientStore(database, options.clientCacheTtl),
    users: new UserStore(database),
    consents: new ConsentStore(database),
    signingKeys: new SigningKeyStore(database),
    revocationEvents: new RevocationEventStore(database),
    browserSessions: new BrowserSessionStore(database),
    lifecycle: new LifecycleStore(database, options.eventRetention),
    resources: new ResourceStore(database),
    logoutDeliveries: new LogoutDeliveryStore(database),
    ssf: new SsfStore(database),
    dpopProofs: new DpopProofStore(database, SESSION_BATCHING),
  };
}
