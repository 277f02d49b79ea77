// The DPoP phases of `bun run bench` (issue 18): client_credentials with a DPoP proof against the
// same grant without one, interleaved (each proof made before its run by the load generator, as
// a client would make it, so the run measures the server: the proof check, the replay INSERT,
// cnf in the token); and the resource-server library's proof check, in microseconds per request.
import { base64url, exportJWK, generateKeyPair, SignJWT } from "jose";
import { DpopProofChecker } from "../packages/resource-server/src/dpop.ts";
import type { CpuShare, LoadResult, Reply } from "./lib.ts";
import { closedLoop } from "./lib.ts";

export interface DpopBenchInput {
  /** The token endpoint's URL as the server names it (the proofs' htu). */
  tokenEndpoint: string;
  perRun: number;
  rounds: number;
  mint(headers: Record<string, string>): Promise<Reply>;
  meter: () => Promise<() => Promise<CpuShare>>;
}

async function proofMaker() {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const jwk = await exportJWK(publicKey);
  return (claims: Record<string, unknown>) =>
    new SignJWT({ jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims }).setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk }).sign(privateKey);
}

/** Bearer and DPoP client_credentials runs, interleaved; every DPoP answer must be token_type DPoP. */
export async function dpopMintRuns(input: DpopBenchInput): Promise<{ bearer: LoadResult[]; dpop: LoadResult[]; notDpop: number }> {
  const proof = await proofMaker();
  const bearer: LoadResult[] = [];
  const dpop: LoadResult[] = [];
  let notDpop = 0;
  const indexes = Array.from({ length: input.perRun }, (_, i) => i);
  for (let round = 0; round < input.rounds; round++) {
    bearer.push(await closedLoop(indexes, 32, () => input.mint({}), { meter: input.meter }));
    const proofs = await Promise.all(indexes.map(() => proof({ htm: "POST", htu: input.tokenEndpoint })));
    dpop.push(
      await closedLoop(indexes, 32, (i) => input.mint({ DPoP: proofs[i]! }), {
        meter: input.meter,
        check: (_, reply) => {
          if (reply.status !== 200 || !reply.body.includes('"token_type":"DPoP"')) notDpop++;
        },
      }),
    );
  }
  return { bearer, dpop, notDpop };
}

/** The library's check of one proof (signature, claims, ath, thumbprint, replay), µs per request. */
export async function proofCheckMicros(count: number): Promise<{ count: number; us_per_check: number }> {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const jwk = await exportJWK(publicKey);
  const { calculateJwkThumbprint } = await import("jose");
  const jkt = await calculateJwkThumbprint(jwk, "sha256");
  const token = "header.payload.signature-of-a-bound-access-token";
  const ath = base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))));
  const url = "https://api.example/me";
  const proofs = await Promise.all(
    Array.from({ length: count }, () =>
      new SignJWT({ jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), htm: "GET", htu: url, ath }).setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk }).sign(privateKey),
    ),
  );
  const checker = new DpopProofChecker();
  // Warm up on a tenth, then time the rest one after another.
  const warm = Math.floor(count / 10);
  for (const p of proofs.slice(0, warm)) await checker.check({ proofs: [p], method: "GET", url }, token, jkt);
  const started = performance.now();
  for (const p of proofs.slice(warm)) await checker.check({ proofs: [p], method: "GET", url }, token, jkt);
  return { count: count - warm, us_per_check: Math.round(((performance.now() - started) * 1000) / (count - warm)) };
}
