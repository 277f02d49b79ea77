// Keeps this instance's caches true to the database: LISTENs on the channel revocations use
// (src/oauth/revocation-notifier.ts) and acts on `invalidate:` payloads — a client changed or
// deleted at another instance (or by the CLI on PostgreSQL) is dropped from the client cache, a
// signing key rotated or revoked reloads the keys. The introspection cache empties on any such
// payload by itself (src/oauth/introspection-cache.ts).
import type { Database, Unlisten } from "../../db/client.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";
import { INVALIDATE_PREFIX, REVOCATION_CHANNEL } from "./revocation-notifier.ts";

export interface InvalidationTargets {
  forgetClient(clientId: string): void;
  reloadKeys(): Promise<void>;
}

export class InvalidationListener {
  private unlisten: Unlisten | undefined;

  constructor(
    private readonly database: Pick<Database, "listen">,
    private readonly targets: InvalidationTargets,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.unlisten ??= await this.database.listen(REVOCATION_CHANNEL, (payload) => this.receive(payload));
  }

  receive(payload: string): void {
    if (!payload.startsWith(INVALIDATE_PREFIX)) return;
    const what = payload.slice(INVALIDATE_PREFIX.length);
    if (what === "keys") {
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
