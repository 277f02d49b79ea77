// Resource-server library: verify TokenAuthority access tokens in any Bun or Node service,
// honouring revocation through the revocation feed or introspection. Depends on jose only
// (the Elysia plugin lives in ./elysia.ts).
export type { AccessTokenClaims, AccessTokenVerifier, RevocationMode, VerifierOptions } from "./verifier.ts";
export { createAccessTokenVerifier } from "./verifier.ts";
export { BearerError } from "./errors.ts";
export type { BearerErrorCode } from "./errors.ts";
export { DenyList } from "./deny-list.ts";
export { RevocationFeedClient } from "./feed-client.ts";
export { IntrospectionClient } from "./introspection-client.ts";
