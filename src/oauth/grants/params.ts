// Form parameters several grants share.
import { t } from "elysia";

export const scopeParam = t.Optional(t.String({ maxLength: 1024 }));
/** RFC 8707 resource; one per token request (the form parser refuses repeated parameters). */
export const resourceParam = t.Optional(t.String({ minLength: 1, maxLength: 2048 }));
