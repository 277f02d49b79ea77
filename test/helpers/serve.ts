// Serves a test app over real HTTP on a free loopback port (the resource-server library and
// the benchmarks talk to it with fetch). Also serves the JWKS from the key store, so this
// works whether or not the app has its discovery endpoints.
import type { TestApp } from "./app.ts";

export interface ServedApp {
  url: string;
  stop(): Promise<void>;
}

export function serve(t: Pick<TestApp, "app" | "services">): ServedApp {
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0, // SSE streams stay open
    fetch(request) {
      if (new URL(request.url).pathname === "/.well-known/jwks.json") return Response.json(t.services.keys.jwks());
      return t.app.handle(request);
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}
