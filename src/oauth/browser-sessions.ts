// The signed-in state of a browser: a compact JWS (typ "ta-session+jwt") signed with the
// server's own signing key, so every instance on the database accepts it and it survives a
// restart. Its distinct `typ` keeps it from ever passing as an access or refresh token.
import { jwtVerify, SignJWT } from "jose";
import type { KeyStore } from "./keys.ts";
import { ALLOWED_ALGS } from "./keys.ts";

export const BROWSER_SESSION_TYP = "ta-session+jwt";
/** How long a sign-in lasts (seconds). */
export const BROWSER_SESSION_TTL = 12 * 3600;

export interface BrowserSession {
  userId: string;
  /** Seconds since the epoch when the user signed in. */
  authTime: number;
}

export class BrowserSessions {
  constructor(
    private readonly keys: KeyStore,
    private readonly issuer: string,
    private readonly now: () => number = Date.now,
  ) {}

  sign(userId: string): Promise<string> {
    const { kid, alg, key } = this.keys.signingKey();
    const iat = Math.floor(this.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg, kid, typ: BROWSER_SESSION_TYP })
      .setIssuer(this.issuer)
      .setAudience(this.issuer)
      .setSubject(userId)
      .setIssuedAt(iat)
      .setExpirationTime(iat + BROWSER_SESSION_TTL)
      .sign(key);
  }

  /** The session a cookie value proves, or undefined for anything invalid or expired. */
  async verify(value: string | undefined): Promise<BrowserSession | undefined> {
    if (!value || value.length > 2048) return undefined;
    try {
      const { payload } = await jwtVerify(
        value,
        async (header) => {
          const found = await this.keys.verificationKey(header.kid);
          if (!found || found.alg !== header.alg) throw new Error("unknown key");
          return found.key;
        },
        {
          algorithms: [...ALLOWED_ALGS],
          typ: BROWSER_SESSION_TYP,
          issuer: this.issuer,
          audience: this.issuer,
          currentDate: new Date(this.now()),
          requiredClaims: ["sub", "exp", "iat"],
        },
      );
      return { userId: payload.sub!, authTime: payload.iat! };
    } catch {
      return undefined;
    }
  }
}
