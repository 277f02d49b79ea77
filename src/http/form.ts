// The only body format of the OAuth endpoints: application/x-www-form-urlencoded
// (RFC 6749 §3.2, RFC 7009 §2.1). Repeated parameters are refused (RFC 6749 §3.1:
// "Request and response parameters MUST NOT be included more than once").
import { t } from "elysia";
import { OAuthError } from "../errors.ts";
import { readBody } from "./limits.ts";

export const FORM_CONTENT_TYPE = "application/x-www-form-urlencoded";
/** No OAuth form needs more; a body of thousands of empty parameters is refused early. */
export const MAX_FORM_PARAMETERS = 64;

/** Elysia `parse` hook for form endpoints. */
export async function parseForm({ request, contentType }: { request: Request; contentType: string }) {
  if (contentType !== FORM_CONTENT_TYPE) {
    throw OAuthError.invalidRequest(`the body must be ${FORM_CONTENT_TYPE}`);
  }
  const bytes = await readBody(request);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw OAuthError.invalidRequest("the body is not valid UTF-8");
  }
  const fields: Record<string, string> = {};
  let count = 0;
  for (const [name, value] of new URLSearchParams(text)) {
    if (++count > MAX_FORM_PARAMETERS) throw OAuthError.invalidRequest(`at most ${MAX_FORM_PARAMETERS} parameters`);
    if (Object.hasOwn(fields, name)) throw OAuthError.invalidRequest(`parameter ${JSON.stringify(name.slice(0, 40))} is repeated`);
    fields[name] = value;
  }
  return fields;
}

/** Bounds for a client_id or secret in a form; the store's own ids are far shorter. */
const CREDENTIAL = { minLength: 1, maxLength: 256 } as const;

/** Credential fields every client-authenticated form accepts (client_secret_post, public clients). */
export const clientCredentialFields = {
  client_id: t.Optional(t.String(CREDENTIAL)),
  client_secret: t.Optional(t.String(CREDENTIAL)),
};
