// Asks the authorization server's introspection endpoint (RFC 7662) whether an access token
// is still active, remembering the answer briefly: a revocation is seen within the cache TTL.
import type { ClientCredentials } from "./client-credentials.ts";
import { basicAuthorization } from "./client-credentials.ts";
import { BearerError } from "./errors.ts";

export interface IntrospectionClientOptions extends ClientCredentials {
  /** The introspection endpoint, e.g. https://auth.example/oauth/introspect. */
  url: string;
  /** How long an `active: true` answer is trusted. Default 5 s. */
  cacheTtlMs?: number;
  /** Most answers remembered. Default 10 000. */
  maxEntries?: number;
  fetch?: typeof fetch;
}

interface Cached {
  active: boolean;
  until: number;
}

export class IntrospectionClient {
  private readonly cache = new Map<string, Cached>();
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private readonly cacheTtlMs: number;
  private readonly maxEntries: number;

  constructor(private readonly options: IntrospectionClientOptions) {
    this.cacheTtlMs = options.cacheTtlMs ?? 5000;
    this.maxEntries = options.maxEntries ?? 10_000;
  }

  /** Whether the token (already verified locally, with this jti and exp) is still active. */
  async isActive(token: string, jti: string, exp: number): Promise<boolean> {
    const cached = this.cache.get(jti);
    if (cached && cached.until > Date.now()) return cached.active;
    let pending = this.inFlight.get(jti);
    if (!pending) {
      pending = this.ask(token, jti, exp).finally(() => this.inFlight.delete(jti));
      this.inFlight.set(jti, pending);
    }
    return pending;
  }

  private async ask(token: string, jti: string, exp: number): Promise<boolean> {
    let answer: { active?: unknown; jti?: unknown; token_type?: unknown };
    try {
      const response = await (this.options.fetch ?? fetch)(this.options.url, {
        method: "POST",
        headers: {
          authorization: basicAuthorization(this.options),
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
        },
        body: new URLSearchParams({ token, token_type_hint: "access_token" }),
      });
      if (!response.ok) throw new Error(`introspection answered ${response.status}`);
      answer = (await response.json()) as typeof answer;
    } catch {
      throw BearerError.unavailable("the authorization server cannot be asked about this token");
    }
    // An access token: Bearer, or DPoP for one bound to a key (RFC 9449 §6.2; the verifier checks the proof).
    const active = answer.active === true && answer.jti === jti && (answer.token_type === "Bearer" || answer.token_type === "DPoP");
    // A token that is not active never becomes active again: remember that until it expires.
    const until = active ? Math.min(Date.now() + this.cacheTtlMs, exp * 1000) : exp * 1000;
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(jti, { active, until });
    return active;
  }
}
