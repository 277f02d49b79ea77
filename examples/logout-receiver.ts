// A relying party's back-channel logout endpoint, for trying OpenID Connect logout: it validates
// each logout token as Back-Channel Logout 1.0 §2.6 says (the server's keys, typ logout+jwt, iss,
// aud, iat, exp, jti, the backchannel-logout event, sub or sid, no nonce), answers 200 (400 if
// the token fails) and prints the token's claims as one JSON line.
//   bun examples/logout-receiver.ts PORT ISSUER CLIENT_ID
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

const [port, issuer, clientId] = process.argv.slice(2);
if (!port || !issuer || !clientId) throw new Error("usage: bun examples/logout-receiver.ts PORT ISSUER CLIENT_ID");
const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
const EVENT = "http://schemas.openid.net/event/backchannel-logout";

Bun.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  async fetch(request) {
    const token = new URLSearchParams(await request.text()).get("logout_token") ?? "";
    try {
      if (decodeProtectedHeader(token).typ !== "logout+jwt") throw new Error("typ is not logout+jwt");
      const { payload } = await jwtVerify(token, jwks, { issuer, audience: clientId, requiredClaims: ["iat", "exp", "jti"] });
      if (typeof (payload.events as Record<string, unknown> | undefined)?.[EVENT] !== "object") throw new Error("not a logout token (events)");
      if (payload.sub === undefined && payload.sid === undefined) throw new Error("neither sub nor sid");
      if ("nonce" in payload) throw new Error("a logout token has no nonce");
      console.log(JSON.stringify(payload));
      return new Response(null, { status: 200, headers: { "Cache-Control": "no-store" } });
    } catch (error) {
      console.error(`refused: ${(error as Error).message}`);
      return new Response(null, { status: 400, headers: { "Cache-Control": "no-store" } });
    }
  },
});
