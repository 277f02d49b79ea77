// Who is calling with a bearer token of this server (RFC 6750 §2.1, the Authorization header
// only): the client of a live access token that holds `scope`. Errors carry the RFC 6750 §3
// challenge. The admin API (with TA_ADMIN_REMOTE) and the Shared Signals API use it.
import { OAuthError } from "../errors.ts";
import type { TokenPipeline } from "../oauth/token-pipeline.ts";

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

export async function bearerClient(pipeline: TokenPipeline, request: Request, scope: string, realm: string): Promise<string> {
  const challenge = `Bearer realm="${realm}"`;
  const match = BEARER.exec(request.headers.get("authorization") ?? "");
  if (!match) throw new OAuthError("invalid_token", `a bearer token with the ${scope} scope is required`, { "WWW-Authenticate": challenge });
  const recognized = await pipeline.verify(match[1]!, "access_token");
  if (!recognized.ok) throw new OAuthError("invalid_token", "the token is not valid", { "WWW-Authenticate": `${challenge}, error="invalid_token"` });
  if (!recognized.claims.scope.split(" ").includes(scope)) {
    throw new OAuthError("insufficient_scope", `the token lacks the ${scope} scope`, {
      "WWW-Authenticate": `${challenge}, error="insufficient_scope", scope="${scope}"`,
    });
  }
  return recognized.claims.client_id;
}
