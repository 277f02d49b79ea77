// 405 for any other method on an endpoint's path (RFC 9110 §15.5.6, with the Allow header).
import { Elysia } from "elysia";
import { OAuthError } from "../errors.ts";

export function onlyMethods(path: string, allowed: readonly string[]) {
  const allow = allowed.join(", ");
  return new Elysia().all(
    path,
    () => {
      throw new OAuthError("method_not_allowed", `use ${allow}`, { Allow: allow });
    },
    { detail: { hide: true } },
  );
}
