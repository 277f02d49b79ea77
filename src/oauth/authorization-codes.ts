// Authorization codes (RFC 6749 §4.1, OAuth 2.1 §4.1): issued by the authorization endpoint as
// a grant row holding only the SHA-256 of the code, redeemed once at the token endpoint.
//
// A code is 256 random bits followed by what it grants (subject, scope, resources), sealed with
// AES-256-GCM under a key derived from a signing key (src/oauth/keys.ts), so the browser that
// carries it learns nothing. The token endpoint opens it to sign the session's tokens BEFORE the
// one statement that redeems the code: their digests go into the session's INSERT. What a code
// says is never trusted on its own — the statement finds the grant by the hash of the whole code
// and stores the digests only if the grant says the same (db/functions/ta_redeem_code.sql). A
// code that cannot be opened (a plain code of an earlier version, a key since withdrawn) still
// redeems: its tokens are then signed from what the statement answers.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { base64url } from "jose";
import type { Client } from "../../db/schema.ts";
import type { NewGrant, RedeemItem, SessionStore } from "../../db/stores/sessions.ts";
import { OAuthError } from "../errors.ts";
import type { Authentication } from "./id-tokens.ts";
import type { KeyStore } from "./keys.ts";
import { parseScope } from "./scopes.ts";

export type NewAuthorizationCode = Omit<NewGrant, "id" | "codeHash" | "codeChallengeMethod"> & {
  codeChallengeMethod: "S256";
  /** RFC 9449 §10: the code redeems only with a DPoP proof by this key (sealed into the code). */
  dpopJkt?: string;
  /** An OpenID Connect request (scope openid): what its ID tokens will say (sealed into the code). */
  oidc?: OidcGrant;
};

/** What the ID tokens of an OpenID Connect grant say of the sign-in, and the request's nonce. */
export interface OidcGrant {
  authentication: Authentication;
  nonce?: string;
}

export interface IssuedAuthorizationCode {
  /** The code in clear: returned once, never stored. */
  code: string;
  grantId: string;
  expiresAt: Date;
}

/** A token request of grant_type=authorization_code, its parameters checked on their own. */
export interface CodeRedemption {
  code: string;
  client: Client;
  /** The redirect_uri parameter, if sent. */
  redirectUri: string | undefined;
  codeVerifier: string | undefined;
  /** The requested scope, known to the server and normalised; undefined = the granted scope. */
  scope: string | undefined;
  /** The requested resource (an absolute URI); undefined = every granted resource. */
  resource: string | undefined;
}

/** What the tokens of a redemption will hold if the grant says what its code says. */
export interface PredictedSession {
  subject: string;
  scope: string;
  audience: string[];
  /** The grant (the family's `sid`), when the code says (codes sealed since it did). */
  family: string | undefined;
}

export interface OpenedCode {
  item: Pick<
    RedeemItem,
    "code_hash" | "client_id" | "public_client" | "redirect_uri" | "implied_redirect_uri" | "verifier_s256" | "scope" | "resource" | "default_audience"
  >;
  predicted: PredictedSession | undefined;
  /** The DPoP key the code is bound to (RFC 9449 §10), as its sealed part says. */
  dpopJkt: string | undefined;
  /** The sign-in and nonce of an OpenID Connect request, as its sealed part says. */
  oidc: OidcGrant | undefined;
}

/** What a sealed code carries. */
interface CodeClaims {
  sub: string;
  scope: string;
  aud: string[];
  /** The grant's id. */
  sid?: string;
  /** RFC 9449 §10: dpop_jkt of the authorization request. */
  jkt?: string;
  /** OpenID Connect: the sign-in (auth_time, sid, amr) and the request's nonce. */
  oidc?: { auth_time?: number; sid?: string; amr?: string[]; nonce?: string };
}

/** A code longer than this is issued plain (it still redeems, without digests stored at once). */
const MAX_SEALED_CODE_LENGTH = 1024;
const NONCE_BYTES = 12;

/** Codes are 256-bit random, so a fast hash is enough to keep them out of the database. */
export function hashAuthorizationCode(code: string): string {
  return createHash("sha256").update(code).digest("hex");
}

/** RFC 7636 §4.6 with S256: BASE64URL(SHA256(ASCII(code_verifier))). */
export function s256(codeVerifier: string): string {
  return createHash("sha256").update(codeVerifier, "ascii").digest("base64url");
}

/** Without redirect_uri in the token request, the client's only registered URI is implied. */
function impliedRedirectUri(client: Client): string | undefined {
  return client.redirectUris.length === 1 ? client.redirectUris[0] : undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Seals what a code grants into the code itself (see the top of this file). */
export async function sealAuthorizationCode(key: CryptoKey, claims: CodeClaims): Promise<string> {
  const random = randomBytes(32);
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: random.subarray(0, NONCE_BYTES) }, key, encoder.encode(JSON.stringify(claims))),
  );
  const code = `${base64url.encode(random)}.${base64url.encode(sealed)}`;
  return code.length <= MAX_SEALED_CODE_LENGTH ? code : base64url.encode(random);
}

/** What a sealed code says, if one of `keys` opens it; undefined for anything else. */
async function openCode(code: string, keys: readonly CryptoKey[]): Promise<CodeClaims | undefined> {
  const dot = code.indexOf(".");
  if (dot < 0 || code.length > MAX_SEALED_CODE_LENGTH) return undefined;
  let random: Uint8Array<ArrayBuffer>;
  let sealed: Uint8Array<ArrayBuffer>;
  try {
    random = base64url.decode(code.slice(0, dot)) as Uint8Array<ArrayBuffer>;
    sealed = base64url.decode(code.slice(dot + 1)) as Uint8Array<ArrayBuffer>;
  } catch {
    return undefined;
  }
  if (random.length !== 32) return undefined;
  for (const key of keys) {
    let plain: ArrayBuffer;
    try {
      plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: random.subarray(0, NONCE_BYTES) }, key, sealed);
    } catch {
      continue;
    }
    const claims = JSON.parse(decoder.decode(plain)) as Partial<CodeClaims>;
    const valid = typeof claims.sub === "string" && typeof claims.scope === "string" && Array.isArray(claims.aud) && claims.aud.every((a) => typeof a === "string") &&
      (claims.sid === undefined || typeof claims.sid === "string") && (claims.jkt === undefined || typeof claims.jkt === "string") &&
      (claims.oidc === undefined || (typeof claims.oidc === "object" && claims.oidc !== null));
    return valid ? (claims as CodeClaims) : undefined;
  }
  return undefined;
}

export class AuthorizationCodes {
  constructor(
    private readonly store: SessionStore,
    private readonly keys: KeyStore,
    private readonly defaultAudience: string,
  ) {}

  /** Creates an authorization grant and its one-time code. */
  async issue(input: NewAuthorizationCode): Promise<IssuedAuthorizationCode> {
    const id = randomUUID();
    const { dpopJkt, oidc, ...grant } = input;
    const code = await sealAuthorizationCode(this.keys.codeKeys().sealing, {
      sub: input.userId,
      scope: input.scope,
      aud: [...input.resources],
      sid: id,
      ...(dpopJkt ? { jkt: dpopJkt } : {}),
      ...(oidc ? { oidc: sealedOidc(oidc) } : {}),
    });
    // A bound code must carry its binding, an OpenID one its nonce: one too long to seal is refused rather than issued plain.
    if (dpopJkt && !code.includes(".")) throw OAuthError.invalidRequest("the authorization request is too large to bind to a DPoP key");
    if (oidc && !code.includes(".")) throw OAuthError.invalidRequest("the authorization request is too large (nonce)");
    const row = await this.store.insertGrant({ ...grant, id, codeHash: hashAuthorizationCode(code) });
    return { code, grantId: row.id, expiresAt: row.expiresAt };
  }

  /** The redemption's statement item, and what its tokens will hold if the grant agrees with its code. */
  async open(request: CodeRedemption): Promise<OpenedCode> {
    const { client, code } = request;
    const implied = impliedRedirectUri(client);
    const item: OpenedCode["item"] = {
      code_hash: hashAuthorizationCode(code),
      client_id: client.clientId,
      public_client: client.type === "public",
      redirect_uri: request.redirectUri ?? implied ?? null,
      implied_redirect_uri: implied ?? null,
      verifier_s256: request.codeVerifier === undefined ? null : s256(request.codeVerifier),
      scope: request.scope ?? null,
      resource: request.resource ?? null,
      default_audience: this.defaultAudience,
    };
    const claims = await openCode(code, this.keys.codeKeys().opening);
    return { item, predicted: claims && this.predict(claims, request), dpopJkt: claims?.jkt, oidc: claims?.oidc && openedOidc(claims.oidc) };
  }

  /** The scope and audience the statement will settle on, if the code tells the truth. */
  private predict(claims: CodeClaims, request: CodeRedemption): PredictedSession | undefined {
    const granted = parseScope(claims.scope);
    const scope = request.scope ?? granted.join(" ");
    if (!parseScope(scope).every((s) => granted.includes(s))) return undefined; // invalid_scope: the statement says so
    const allowed = claims.aud.length > 0 ? claims.aud : [this.defaultAudience];
    if (request.resource !== undefined && !allowed.includes(request.resource)) return undefined; // invalid_target
    return { subject: claims.sub, scope, audience: request.resource === undefined ? allowed : [request.resource], family: claims.sid };
  }
}

function sealedOidc({ authentication, nonce }: OidcGrant): NonNullable<CodeClaims["oidc"]> {
  return {
    ...(authentication.authTime !== undefined ? { auth_time: authentication.authTime } : {}),
    ...(authentication.sid !== undefined ? { sid: authentication.sid } : {}),
    ...(authentication.amr ? { amr: authentication.amr } : {}),
    ...(nonce !== undefined ? { nonce } : {}),
  };
}

function openedOidc(sealed: NonNullable<CodeClaims["oidc"]>): OidcGrant {
  const authentication: Authentication = {
    ...(typeof sealed.auth_time === "number" ? { authTime: sealed.auth_time } : {}),
    ...(typeof sealed.sid === "string" ? { sid: sealed.sid } : {}),
    ...(Array.isArray(sealed.amr) ? { amr: sealed.amr.filter((m) => typeof m === "string") } : {}),
  };
  return { authentication, ...(typeof sealed.nonce === "string" ? { nonce: sealed.nonce } : {}) };
}
