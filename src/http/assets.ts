// GET /assets/style.css: the pages' stylesheet, embedded in the executable (no external assets).
import { Elysia } from "elysia";
import { STYLESHEET, STYLESHEET_PATH, STYLESHEET_VERSION } from "./pages/style.ts";

export function assetEndpoints() {
  return new Elysia().get(
    STYLESHEET_PATH,
    () =>
      new Response(STYLESHEET, {
        headers: {
          "Content-Type": "text/css; charset=utf-8",
          "Cache-Control": "public, max-age=86400",
          ETag: `"${STYLESHEET_VERSION}"`,
          "X-Content-Type-Options": "nosniff",
        },
      }),
  );
}
