// Finds log lines that leak a credential: a JWT, an Authorization header value, a field named
// like a secret, or any client secret issued during the test run.

/** Field names whose presence with a value in a log line is a leak by itself. */
const SECRET_FIELDS = /^(authorization|password|passwd|client_secret|secret|token|access_token|refresh_token|id_token|code_verifier|cookie|set-cookie|private_jwk)$/i;
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;
const AUTH_HEADER = /\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}/i;

export function findLeaks(lines: readonly string[], secrets: Iterable<string>): string[] {
  const known = [...secrets].filter((s) => s.length >= 8);
  const leaks: string[] = [];
  const check = (line: string, value: unknown, path: string) => {
    if (typeof value === "string") {
      if (JWT.test(value)) leaks.push(`JWT in ${path}: ${line.slice(0, 200)}`);
      if (AUTH_HEADER.test(value)) leaks.push(`Authorization value in ${path}: ${line.slice(0, 200)}`);
      if (known.some((secret) => value.includes(secret))) leaks.push(`issued secret in ${path}: ${line.slice(0, 80)}…`);
    } else if (value && typeof value === "object") {
      for (const [key, inner] of Object.entries(value)) {
        if (SECRET_FIELDS.test(key) && inner !== null && inner !== "" && inner !== undefined) {
          leaks.push(`field "${key}" in ${path}: ${line.slice(0, 200)}`);
        }
        check(line, inner, `${path}.${key}`);
      }
    }
  };
  for (const line of lines) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = line; // not JSON: scan it as text
    }
    check(line, parsed, "$");
  }
  return leaks;
}
