// Resource-server library: verify TokenAuthority access tokens in any Bun or Node service,
// honouring revocation through the revocation feed, Shared Signals (SSF poll) or introspection, and publish the resource's
// RFC 9728 metadata. Depends on jose only (the Elysia plugin lives in ./elysia.ts).
export type { AccessTokenClaims, AccessTokenVerifier, RevocationMode, VerifierOptions } from "./verifier.ts";
export { createAccessTokenVerifier } from "./verifier.ts";
export { BearerError } from "./errors.ts";
export type { BearerErrorCode } from "./errors.ts";
export type { ProtectedResourceMetadata, ResourceMetadataOptions } from "./metadata.ts";
export { protectedResourceMetadata, protectedResourceMetadataUrl, resourceMetadataResponse } from "./metadata.ts";
export type { ProtectedHandler, ProtectOptions } from "./protect.ts";
export { protect } from "./protect.ts";
export { DenyList } from "./deny-list.ts";
export { RevocationFeedClient } from "./feed-client.ts";
export { IntrospectionClient } from "./introspection-client.ts";
export type { RevocableClaims, SsfClientOptions } from "./ssf-client.ts";
export { SharedSignalsClient } from "./ssf-client.ts";
export type { DpopOptions } from "./dpop.ts";
export { DPOP_ALGORITHMS } from "./dpop.ts";
export type { RequestFacts } from "./verifier.ts";
