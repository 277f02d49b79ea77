// What a grant type is (node-oidc-provider style): its `grant_type` name, the TypeBox schema
// of its own parameters, and a handler that issues tokens for an authenticated client.
import type { Static, TSchema } from "@sinclair/typebox";
import type { GrantType } from "../clients.ts";
import type { Client } from "../clients.ts";
import type { IssuedTokens } from "../sessions.ts";
import type { Services } from "../../services.ts";

export interface GrantContext {
  services: Services;
  /** The client authenticated by the token endpoint. */
  client: Client;
}

export interface Grant<S extends TSchema = TSchema> {
  readonly name: GrantType;
  /** The grant's own form parameters (client credentials are handled by the endpoint). */
  readonly params: S;
  handle(params: Static<S>, context: GrantContext): Promise<IssuedTokens>;
}

/** Declares a grant; the identity function exists so `handle` gets its params typed. */
export function defineGrant<S extends TSchema>(grant: Grant<S>): Grant<S> {
  return grant;
}
