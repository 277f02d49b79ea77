// An example protected API: a tiny notes service whose routes require TokenAuthority access
// tokens, verified with the resource-server library (revocation via the feed or introspection).
//
//   TA_ISSUER=http://localhost:3000 API_CLIENT_ID=... API_CLIENT_SECRET=... bun run example:api
//
// API_CLIENT_ID/SECRET are a confidential client created with
// `token-authority clients create --resource-server $API_AUDIENCE`.
import { Elysia, t } from "elysia";
import { bearerAuth } from "@token-authority/resource-server/elysia";
import type { AccessTokenVerifier, RevocationMode } from "@token-authority/resource-server";
import { createAccessTokenVerifier } from "@token-authority/resource-server";

export function createProtectedApi(verifier: AccessTokenVerifier) {
  const notes: Array<{ id: number; owner: string; text: string }> = [];
  return new Elysia()
    .use(bearerAuth(verifier))
    .get("/healthz", () => ({ status: "ok" }))
    .get("/me", ({ accessToken }) => ({ sub: accessToken.sub, client_id: accessToken.client_id, scope: accessToken.scope ?? "" }), {
      bearer: true,
    })
    .get("/notes", ({ accessToken }) => notes.filter((note) => note.owner === accessToken.sub), { bearer: ["read"] })
    .post(
      "/notes",
      ({ accessToken, body, set }) => {
        const note = { id: notes.length + 1, owner: accessToken.sub, text: body.text };
        notes.push(note);
        set.status = 201;
        return note;
      },
      { bearer: ["write"], body: t.Object({ text: t.String({ minLength: 1, maxLength: 1000 }) }) },
    );
}

/** The verifier the example runs with, from the environment. */
export function verifierFromEnv(env: Record<string, string | undefined>): AccessTokenVerifier {
  const issuer = env.TA_ISSUER;
  const clientId = env.API_CLIENT_ID;
  const clientSecret = env.API_CLIENT_SECRET;
  if (!issuer || !clientId || !clientSecret) throw new Error("set TA_ISSUER, API_CLIENT_ID and API_CLIENT_SECRET");
  // Where the authorization server is reached, if not at its issuer URL.
  const base = (env.TA_URL || issuer).replace(/\/$/, "");
  const mode = env.API_REVOCATION_MODE || "feed";
  if (mode !== "feed" && mode !== "introspection") throw new Error("API_REVOCATION_MODE is feed or introspection");
  const revocation: RevocationMode =
    mode === "feed"
      ? { mode, url: `${base}/oauth/revocations`, clientId, clientSecret, onError: (error) => console.error(`revocation feed: ${error}`) }
      : { mode, url: `${base}/oauth/introspect`, clientId, clientSecret };
  return createAccessTokenVerifier({
    issuer,
    audience: env.API_AUDIENCE || `${issuer.replace(/\/$/, "")}/api`,
    jwksUri: `${base}/.well-known/jwks.json`,
    revocation,
  });
}

if (import.meta.main) {
  const verifier = verifierFromEnv(process.env);
  await verifier.ready();
  const port = Number(process.env.API_PORT || 4000);
  createProtectedApi(verifier).listen({ port, hostname: process.env.API_HOST || "127.0.0.1" });
  console.log(`protected API on http://${process.env.API_HOST || "127.0.0.1"}:${port}`);
}
