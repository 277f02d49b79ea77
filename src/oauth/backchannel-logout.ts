// OpenID Connect Back-Channel Logout 1.0: when a browser sign-in ends, each client that had an
// openid grant in it and registered a backchannel_logout_uri receives a logout token (§2.4) by
// POST (§2.5). The work comes from the committed event log only — the `browser-session-ended`
// entries the ending transaction itself wrote (db/functions/ta_browser_session_ended.sql) — so a
// change that rolled back tells nobody, and one that committed is told even if this instance dies
// right after: every started instance looks every second, claims due deliveries (SKIP LOCKED,
// with a lease) and retries a receiver that is down or answers 5xx with exponential backoff,
// within the hour the entry is kept. A 4xx is the receiver's refusal (§2.8: 400 "if the logout
// request failed"): retrying would not change it, so it is logged and given up.
import { createHash } from "node:crypto";
import { CompactSign } from "jose";
import type { ClaimedLogout, LogoutDeliveryStore, LogoutOutcome } from "../../db/stores/logout-deliveries.ts";
import type { Logger } from "../log.ts";
import { errorForLog } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Outbound } from "../outbound.ts";
import { backoffSeconds } from "../ssf/push.ts";
import type { KeyStore } from "./keys.ts";

/** §2.4: the member of the events claim that makes a JWT a logout token. */
export const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";
/** A logout token is good for this long (it is made afresh for each attempt). */
const LOGOUT_TOKEN_TTL = 120;
const TIMEOUT_MS = 5000;
/** Attempts before a receiver that keeps failing is given up on (about four minutes of backoff). */
export const MAX_LOGOUT_ATTEMPTS = 8;
/** How long a claimed delivery is this instance's: past the attempt's timeout; after a crash, another instance (or a restart) takes it then. */
const LEASE_SECONDS = 10;
const BATCH = 20;

export interface BackchannelLogoutDeps {
  store: LogoutDeliveryStore;
  keys: Pick<KeyStore, "signingKey">;
  outbound: Outbound;
  issuer: string;
  log: Logger;
  metrics: Pick<Metrics, "backchannelLogouts">;
  intervalMs?: number;
  now?: () => number;
}

export class BackchannelLogout {
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: BackchannelLogoutDeps) {}

  /** Starts looking for work (a started server only; a CLI command never delivers). */
  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => void this.look(), this.deps.intervalMs ?? 1000);
    this.timer.unref?.();
    void this.look();
  }

  /** Stops looking and waits for the deliveries under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** One look: new entries become deliveries, due ones are made (never two looks at once here). */
  look(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.deliverDue()
      .catch((error) => this.deps.log.warn("oidc.backchannel_logout.look_failed", { error: errorForLog(error) }))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async deliverDue(): Promise<void> {
    await this.deps.store.expand();
    for (;;) {
      const claimed = await this.deps.store.claim(BATCH, LEASE_SECONDS);
      await Promise.all(claimed.map((delivery) => this.deliver(delivery).then((outcome) => this.deps.store.settle(delivery, outcome))));
      if (claimed.length < BATCH || this.stopped) return;
    }
  }

  /** §2.4 logout token: iss, aud, iat, exp, jti, events, sub and sid; never a nonce; typ logout+jwt. */
  async logoutToken(delivery: Pick<ClaimedLogout, "cursor" | "clientId" | "subject" | "sid">): Promise<string> {
    const { kid, alg, key } = this.deps.keys.signingKey();
    const iat = Math.floor((this.deps.now ?? Date.now)() / 1000);
    const claims = {
      iss: this.deps.issuer,
      aud: delivery.clientId,
      iat,
      exp: iat + LOGOUT_TOKEN_TTL,
      // The same for every attempt of one delivery: a receiver that saw it already can tell.
      jti: createHash("sha256").update(`${delivery.cursor}:${delivery.clientId}`).digest("base64url"),
      sub: delivery.subject,
      sid: delivery.sid,
      events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
    };
    return new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg, kid, typ: "logout+jwt" }).sign(key);
  }

  private async deliver(delivery: ClaimedLogout): Promise<LogoutOutcome> {
    const { log, metrics } = this.deps;
    const context = { client_id: delivery.clientId, browser_session_id: delivery.sid, attempt: delivery.attempts };
    if (!delivery.uri) {
      // The client dropped its backchannel_logout_uri since: nobody to tell.
      metrics.backchannelLogouts.inc({ result: "failed" });
      return { status: "failed", httpStatus: null };
    }
    let httpStatus: number | null = null;
    try {
      const response = await this.deps.outbound.fetch("backchannel_logout", delivery.uri, {
        method: "POST",
        // §2.5: "The OP sends an HTTP POST request ... using the application/x-www-form-urlencoded encoding".
        headers: { "content-type": "application/x-www-form-urlencoded", "cache-control": "no-store" },
        body: new URLSearchParams({ logout_token: await this.logoutToken(delivery) }).toString(),
        timeoutMs: TIMEOUT_MS,
        maxBytes: 4096,
        truncate: true,
        maxRedirects: 0,
      });
      httpStatus = response.status;
      // §2.8: 200 OK, or 204 as some frameworks answer.
      if (response.status >= 200 && response.status < 300) {
        metrics.backchannelLogouts.inc({ result: "delivered" });
        log.info("oidc.backchannel_logout.delivered", context);
        return { status: "delivered", httpStatus };
      }
      if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
        metrics.backchannelLogouts.inc({ result: "failed" });
        log.warn("oidc.backchannel_logout.refused", { ...context, status: response.status });
        return { status: "failed", httpStatus };
      }
      log.warn("oidc.backchannel_logout.failed", { ...context, status: response.status });
    } catch (error) {
      log.warn("oidc.backchannel_logout.failed", { ...context, error: errorForLog(error) });
    }
    if (delivery.attempts >= MAX_LOGOUT_ATTEMPTS) {
      metrics.backchannelLogouts.inc({ result: "failed" });
      log.warn("oidc.backchannel_logout.given_up", context);
      return { status: "failed", httpStatus };
    }
    metrics.backchannelLogouts.inc({ result: "retried" });
    return { status: "retry", httpStatus, afterSeconds: backoffSeconds(delivery.attempts) };
  }
}
