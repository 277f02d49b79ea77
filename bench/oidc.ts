// The OpenID Connect phases of `bun run bench`: code exchange at c=32 of codes the authorization
// endpoint issued (GET /oauth/authorize by a signed-in user whose consent is remembered, so each
// answers 302 with a sealed code), scope "read" against "openid read", whose exchange also signs
// an ID token (src/oauth/sessions.ts redeemCode: while the redemption's statement runs).
// Interleaved, in rounds; each run's codes are minted just before it (a code lives 60 s), so the
// run measures the exchange only. Every ID token must carry the nonce of its request.
import { createHash, randomBytes } from "node:crypto";
import type { CpuShare, LoadResult, Reply } from "./lib.ts";
import { closedLoop } from "./lib.ts";

export interface OidcBenchInput {
  /** A confidential client allowed "openid read", for the authorization code and refresh token grants. */
  clientId: string;
  redirectUri: string;
  perRun: number;
  rounds: number;
  /** Approves the authorization request at `path` once as the signed-in user, so that consent is remembered. */
  consent(path: string): Promise<void>;
  /** GET `path` with the signed-in user's cookie. */
  authorize(path: string): Promise<Reply>;
  /** POST /oauth/token as the client. */
  token(fields: Record<string, string>): Promise<Reply>;
  meter: () => Promise<() => Promise<CpuShare>>;
}

export interface OidcBenchResult {
  runs: Record<"plain" | "openid", LoadResult[]>;
  /** Answers not 200, or whose ID token is missing, unasked for, or without its request's nonce. */
  wrong: number;
}

const SCOPES = { plain: "read", openid: "openid read" } as const;

const nonceOf = (idToken: string) => (JSON.parse(Buffer.from(idToken.split(".")[1]!, "base64url").toString()) as { nonce?: string }).nonce;

export async function oidcCodeExchangeRuns(input: OidcBenchInput): Promise<OidcBenchResult> {
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const pathFor = (scope: string, nonce: string | undefined) =>
    `/oauth/authorize?${new URLSearchParams({
      response_type: "code", client_id: input.clientId, redirect_uri: input.redirectUri, scope, state: "bench",
      code_challenge: challenge, code_challenge_method: "S256", ...(nonce !== undefined ? { nonce } : {}),
    })}`;
  // Consent to both scopes at once: it covers the plain requests too.
  await input.consent(pathFor(SCOPES.openid, "consent"));

  const indexes = Array.from({ length: input.perRun }, (_, i) => i);
  const runs: OidcBenchResult["runs"] = { plain: [], openid: [] };
  let wrong = 0;
  for (let round = 0; round < input.rounds; round++) {
    // Alternating which kind goes first, so neither always follows the other.
    const order = round % 2 === 0 ? (["plain", "openid"] as const) : (["openid", "plain"] as const);
    for (const kind of order) {
      const nonces = indexes.map(() => (kind === "openid" ? randomBytes(16).toString("base64url") : undefined));
      const codes: string[] = new Array(input.perRun);
      await closedLoop(indexes, 32, (i) => input.authorize(pathFor(SCOPES[kind], nonces[i])), {
        meter: input.meter,
        check: (i, reply) => {
          const code = reply.status === 302 && reply.location ? new URL(reply.location).searchParams.get("code") : null;
          if (!code) throw new Error(`the authorization endpoint answered ${reply.status} ${reply.location ?? reply.body.slice(0, 200)}`);
          codes[i] = code;
        },
      });
      const bodies: string[] = new Array(input.perRun);
      runs[kind].push(
        await closedLoop(
          indexes,
          32,
          (i) => input.token({ grant_type: "authorization_code", code: codes[i]!, code_verifier: verifier, redirect_uri: input.redirectUri }),
          {
            meter: input.meter,
            check: (i, reply) => {
              bodies[i] = reply.status === 200 ? reply.body : "";
            },
          },
        ),
      );
      // Checked after the run, so that the load generator's share of the cores stays the same.
      for (const i of indexes) {
        const idToken = bodies[i] ? (JSON.parse(bodies[i]!) as { id_token?: string }).id_token : undefined;
        if (!bodies[i] || (kind === "openid" ? !idToken || nonceOf(idToken) !== nonces[i] : idToken !== undefined)) wrong++;
      }
    }
  }
  return { runs, wrong };
}
