// Serves a test app over real HTTP on a free loopback port (the resource-server library and
// the benchmarks talk to it with fetch).
import type { TestApp } from "./app.ts";

export interface ServedApp {
  url: string;
  stop(): Promise<void>;
}

export function serve(t: Pick<TestApp, "app">): ServedApp {
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: (request) => t.app.handle(request) });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}
