// Errors of a protected resource (RFC 6750 §3, RFC 9728 §5.1): each carries its status, its
// WWW-Authenticate challenge and a JSON body, and renders itself with toResponse() (which
// Elysia, and any fetch-style server, can return as is).

export type BearerErrorCode = "invalid_request" | "invalid_token" | "invalid_dpop_proof" | "insufficient_scope" | "temporarily_unavailable";

const STATUS: Record<BearerErrorCode, number> = {
  invalid_request: 400,
  invalid_token: 401,
  // RFC 9449 §7.1.
  invalid_dpop_proof: 401,
  insufficient_scope: 403,
  temporarily_unavailable: 503,
};

/** RFC 6750 §3: error_description uses %x20-21 / %x23-5B / %x5D-7E only (no `"` or `\`). */
const quoted = (value: string) => `"${value.replace(/[^\x20\x21\x23-\x5B\x5D-\x7E]/g, "")}"`;

/**
 * The scopes a challenge or a metadata document may name. MCP authorization: "MCP Servers
 * SHOULD NOT include offline_access in WWW-Authenticate scope or Protected Resource Metadata
 * scopes_supported" (asking for a refresh token is the client's decision).
 */
export const advertisedScopes = (scopes: readonly string[]): string[] => scopes.filter((scope) => scope !== "offline_access");

/** A JSON error body `{error, error_description}` that no cache keeps. */
export function jsonError(status: number, error: string, description: string | undefined, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error, error_description: description }), {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store", ...headers },
  });
}

export class BearerError extends Error {
  override name = "BearerError";
  readonly status: number;
  /** The protection space named in the challenge; the verifier sets its own. */
  realm = "api";
  /** RFC 9728 §5.1: where the resource's metadata is; the verifier sets its own. */
  resourceMetadata: string | undefined;
  /** The scheme of the challenge: DPoP for a request that presented a DPoP-bound token (RFC 9449 §7.1). */
  scheme: "Bearer" | "DPoP" = "Bearer";
  /** RFC 9449 §7.1: the proof algorithms a DPoP challenge names; the verifier sets its own. */
  algs: readonly string[] | undefined;

  constructor(
    /** Absent when the request carried no token at all (RFC 6750 §3.1: then no error code). */
    readonly code: BearerErrorCode | undefined,
    readonly description?: string,
    /**
     * The scopes the challenge asks for: on insufficient_scope those the request needs united
     * with the token's own; on the others the verifier sets those the request needs.
     */
    public scope?: readonly string[],
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

  /**
   * The WWW-Authenticate challenge (RFC 6750 §3), or undefined for a 503. The Bearer challenge
   * is the only one and every value is quoted: MCP clients take the first word as the scheme
   * and read each parameter as `name="value"`.
   */
  challenge(): string | undefined {
    if (this.code === "temporarily_unavailable") return undefined;
    const params = [`realm=${quoted(this.realm)}`];
    if (this.code) params.push(`error=${quoted(this.code)}`);
    if (this.code && this.description) params.push(`error_description=${quoted(this.description)}`);
    const scope = advertisedScopes(this.scope ?? []);
    if (scope.length > 0) params.push(`scope=${quoted(scope.join(" "))}`);
    if (this.resourceMetadata) params.push(`resource_metadata=${quoted(this.resourceMetadata)}`);
    if (this.scheme === "DPoP" && this.algs && this.algs.length > 0) params.push(`algs=${quoted(this.algs.join(" "))}`);
    return `${this.scheme} ${params.join(", ")}`;
  }

  toResponse(): Response {
    const headers: Record<string, string> = {};
    const challenge = this.challenge();
    if (challenge) headers["WWW-Authenticate"] = challenge;
    if (this.code === "temporarily_unavailable") headers["Retry-After"] = "1";
    return jsonError(this.status, this.code ?? "invalid_token", this.description, headers);
  }
}
