// Errors of a protected resource (RFC 6750 §3): each carries its status, its
// WWW-Authenticate challenge and a JSON body, and renders itself with toResponse() (which
// Elysia, and any fetch-style server, can return as is).

export type BearerErrorCode = "invalid_request" | "invalid_token" | "insufficient_scope" | "temporarily_unavailable";

const STATUS: Record<BearerErrorCode, number> = {
  invalid_request: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  temporarily_unavailable: 503,
};

/** RFC 6750 §3: error_description uses %x20-21 / %x23-5B / %x5D-7E only (no `"` or `\`). */
const quoted = (value: string) => `"${value.replace(/[^\x20\x21\x23-\x5B\x5D-\x7E]/g, "")}"`;

export class BearerError extends Error {
  override name = "BearerError";
  readonly status: number;
  /** The protection space named in the challenge; the verifier sets its own. */
  realm = "api";

  constructor(
    /** Absent when the request carried no token at all (RFC 6750 §3.1: then no error code). */
    readonly code: BearerErrorCode | undefined,
    readonly description?: string,
    /** The scopes the resource needs (insufficient_scope). */
    readonly scope?: readonly string[],
  ) {
    super(code ? `${code}${description ? `: ${description}` : ""}` : "bearer token required");
    this.status = code ? STATUS[code] : 401;
  }

  static missing = () => new BearerError(undefined, "a bearer token is required");
  static invalidRequest = (description: string) => new BearerError("invalid_request", description);
  static invalidToken = (description: string) => new BearerError("invalid_token", description);
  static insufficientScope = (scope: readonly string[]) =>
    new BearerError("insufficient_scope", "the token lacks a required scope", scope);
  static unavailable = (description: string) => new BearerError("temporarily_unavailable", description);

  /** The WWW-Authenticate challenge (RFC 6750 §3), or undefined for a 503. */
  challenge(): string | undefined {
    if (this.code === "temporarily_unavailable") return undefined;
    const params = [`realm=${quoted(this.realm)}`];
    if (this.code) params.push(`error=${quoted(this.code)}`);
    if (this.code && this.description) params.push(`error_description=${quoted(this.description)}`);
    if (this.scope?.length) params.push(`scope=${quoted(this.scope.join(" "))}`);
    return `Bearer ${params.join(", ")}`;
  }

  toResponse(): Response {
    const headers: Record<string, string> = { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" };
    const challenge = this.challenge();
    if (challenge) headers["WWW-Authenticate"] = challenge;
    if (this.code === "temporarily_unavailable") headers["Retry-After"] = "1";
    const body = { error: this.code ?? "invalid_token", error_description: this.description };
    return new Response(JSON.stringify(body), { status: this.status, headers });
  }
}
