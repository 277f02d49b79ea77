// A host of client ID metadata documents for the tests: a Bun server on loopback answering each
// path with what the test says (a document, a status, a redirect, a slow or huge body), counting
// the requests per path; over https with a certificate made for it when asked.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type Answer = (url: URL) => Response | Promise<Response>;

export interface DocumentHost {
  /** scheme://127.0.0.1:port */
  origin: string;
  /** host:port, for TA_OUTBOUND_ALLOW_HOSTS. */
  host: string;
  url(path: string): string;
  /** Requests seen for a path so far. */
  hits(path: string): number;
  /** What a path answers from now on. */
  set(path: string, answer: Answer): void;
  /** The certificate to trust (NODE_EXTRA_CA_CERTS), for an https host. */
  caFile?: string;
  stop(): void;
}

/** A metadata document whose client_id is its own URL, with what `extra` adds or overrides. */
export function documentFor(url: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    client_id: url,
    client_name: "Document Client",
    redirect_uris: ["http://127.0.0.1:8765/callback"],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
    ...extra,
  };
}

export const json = (body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { headers: { "content-type": "application/json", ...headers } });

/** A self-signed certificate for 127.0.0.1 and localhost (openssl), valid for a day. */
function certificate(): { cert: string; key: string; caFile: string } {
  const dir = mkdtempSync(join(tmpdir(), "ta-tls-"));
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  const made = Bun.spawnSync([
    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ]);
  if (made.exitCode !== 0) throw new Error(`openssl failed: ${made.stderr.toString()}`);
  return { cert, key, caFile: cert };
}

export function serveDocuments(options: { https?: boolean } = {}): DocumentHost {
  const answers = new Map<string, Answer>();
  const counts = new Map<string, number>();
  const tls = options.https ? certificate() : undefined;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    ...(tls ? { tls: { cert: Bun.file(tls.cert), key: Bun.file(tls.key) } } : {}),
    async fetch(request) {
      const url = new URL(request.url);
      counts.set(url.pathname, (counts.get(url.pathname) ?? 0) + 1);
      const answer = answers.get(url.pathname);
      return answer ? answer(url) : new Response("not found", { status: 404 });
    },
  });
  const origin = `${tls ? "https" : "http"}://127.0.0.1:${server.port}`;
  return {
    origin,
    host: `127.0.0.1:${server.port}`,
    url: (path) => `${origin}${path}`,
    hits: (path) => counts.get(path) ?? 0,
    set: (path, answer) => void answers.set(path, answer),
    caFile: tls?.caFile,
    stop: () => void server.stop(true),
  };
}
