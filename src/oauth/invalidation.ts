// Keeps this instance's caches true to the database: LISTENs on the invalidation channel
// (src/oauth/revocation-notifier.ts) — a client changed or deleted at another instance (or by the
// CLI on PostgreSQL) is dropped from the client cache, a signing key rotated or revoked reloads
// the keys. (Whatever makes a token dead also revokes its session, which the revocation channel
// announces to the introspection cache, src/oauth/introspection-cache.ts.)
import type { Database, Unlisten } from "../../db/client.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";
import { INVALIDATION_CHANNEL } from "./revocation-notifier.ts";

export interface InvalidationTargets {
  forgetClient(clientId: string): void;
  reloadKeys(): Promise<void>;
  forgetResources(): void;
}

export class InvalidationListener {
  private unlisten: Unlisten | undefined;

  constructor(
    private readonly database: Pick<Database, "listen">,
    private readonly targets: InvalidationTargets,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.unlisten ??= await this.database.listen(INVALIDATION_CHANNEL, (payload) => this.receive(payload));
  }

  receive(what: string): void {
    if (what === "resources") {
      this.targets.forgetResources();
    } else if (what === "keys") {
      this.targets.reloadKeys().catch((error) => this.log.warn("keys.reload_failed", { error: errorForLog(error) }));
    } else if (what.startsWith("client:")) {
      this.targets.forgetClient(what.slice("client:".length));
    }
  }

  async close(): Promise<void> {
    const unlisten = this.unlisten;
    this.unlisten = undefined;
    await unlisten?.().catch(() => {});
  }
}
