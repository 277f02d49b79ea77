// The OpenAPI 3.1 description of every endpoint, generated from the routes and the TypeBox
// schemas they really validate with (@elysiajs/openapi's generator), served as JSON at
// GET /openapi, and a plain HTML rendering at GET /openapi/ui (the pages' layout: no script,
// no CDN, the pages' security headers).
import { toOpenAPISchema } from "@elysiajs/openapi";
import { Elysia } from "elysia";
import { VERSION } from "../version.ts";
import { FORM_CONTENT_TYPE, parseForm } from "./form.ts";
import { pageResponse } from "./browser.ts";
import type { Html } from "./pages/html.ts";
import { html } from "./pages/html.ts";
import { layout } from "./pages/views.ts";

type JsonSchema = {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  $ref?: string;
  [key: string]: unknown;
};

interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  requestBody?: { content: Record<string, { schema: JsonSchema }>; required?: boolean };
  responses?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description?: string };
  servers?: Array<{ url: string }>;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, JsonSchema> };
}

interface RouteInfo {
  method: string;
  path: string;
  hooks?: {
    body?: unknown;
    /** Schemas of enclosing guards (`.guard({ body })`), which the route validates too. */
    standaloneValidator?: Array<{ body?: unknown }>;
    parse?: Array<{ fn: unknown }>;
  };
}

/** The body schema a route validates with: its own and its guards'. */
function bodySchema(route: RouteInfo): JsonSchema | undefined {
  const schemas = [route.hooks?.body, ...(route.hooks?.standaloneValidator ?? []).map((v) => v.body)].filter((s) => s !== undefined);
  if (schemas.length === 0) return undefined;
  return schemas.length === 1 ? plainSchema(schemas[0]) : { allOf: schemas.map(plainSchema) };
}

const ERROR_SCHEMA: JsonSchema = {
  type: "object",
  required: ["error"],
  properties: {
    error: { type: "string", description: "RFC 6749 §5.2 error code (or 7009, 7591, 8707, 6750)" },
    error_description: { type: "string" },
  },
};

/** A TypeBox schema as plain JSON Schema (TypeBox's symbol-keyed metadata dropped). */
const plainSchema = (schema: unknown): JsonSchema => JSON.parse(JSON.stringify(schema)) as JsonSchema;

export function buildOpenApiDocument(routes: RouteInfo[], generated: { paths?: unknown; components?: unknown }, issuer: string): OpenApiDocument {
  const paths = structuredClone((generated.paths ?? {}) as OpenApiDocument["paths"]);
  // The generator cannot see through a function parser: a form endpoint's body is documented
  // here from the same TypeBox schema the route validates with.
  for (const route of routes) {
    const operation = paths[route.path]?.[route.method.toLowerCase()];
    const schema = bodySchema(route);
    if (!operation || !schema || !route.hooks?.parse?.some((p) => p.fn === parseForm)) continue;
    operation.requestBody = { required: true, content: { [FORM_CONTENT_TYPE]: { schema } } };
  }
  for (const operations of Object.values(paths)) {
    for (const operation of Object.values(operations)) {
      operation.responses ??= {};
      operation.responses["default"] ??= {
        description: "Error: JSON with Cache-Control: no-store",
        content: { "application/json": { schema: { $ref: "#/components/schemas/OAuthError" } } },
      };
    }
  }
  const components = (generated.components ?? {}) as { schemas?: Record<string, JsonSchema> };
  return {
    openapi: "3.1.0",
    info: {
      title: "TokenAuthority",
      version: VERSION,
      description: "OAuth 2.1 authorization server. Form endpoints take application/x-www-form-urlencoded bodies without repeated parameters.",
    },
    servers: [{ url: issuer }],
    paths,
    components: { schemas: { ...components.schemas, OAuthError: ERROR_SCHEMA } },
  };
}

function describeSchema(schema: JsonSchema): string {
  const parts = [schema.type ?? (schema.anyOf ? "one of several" : "any")];
  for (const key of ["minLength", "maxLength", "pattern", "format", "enum", "const"]) {
    if (schema[key] !== undefined) parts.push(`${key} ${JSON.stringify(schema[key])}`);
  }
  if (typeof schema.description === "string") parts.push(`— ${schema.description}`);
  return parts.join(", ");
}

/** Renders the document as a plain page: one section per operation, its body fields in a table. */
export function renderOpenApiPage(document: OpenApiDocument): Html {
  const sections = Object.entries(document.paths).flatMap(([path, operations]) =>
    Object.entries(operations).map(([method, operation]) => {
      const bodies = Object.entries(operation.requestBody?.content ?? {}).map(
        ([type, { schema }]) => html`<p>Body: <code>${type}</code></p>
<table><tr><th>field</th><th></th><th>schema</th></tr>${Object.entries(schema.properties ?? {}).map(
          ([name, field]) =>
            html`<tr><td><code>${name}</code></td><td>${schema.required?.includes(name) ? "required" : "optional"}</td><td>${describeSchema(field)}</td></tr>`,
        )}</table>`,
      );
      return html`<section><h2><code>${method.toUpperCase()} ${path}</code></h2>${operation.summary ? html`<p>${operation.summary}</p>` : ""}${operation.description ? html`<p>${operation.description}</p>` : ""}${bodies}</section>`;
    }),
  );
  return layout(
    `${document.info.title} API`,
    html`<h1>${document.info.title} ${document.info.version}</h1>
<p>${document.info.description ?? ""} The machine-readable description is at <a href="/openapi"><code>/openapi</code></a>.</p>
${sections}`,
    { wide: true },
  );
}

export function openapiEndpoints({ config }: { config: { issuer: string } }) {
  const plugin = new Elysia({ name: "openapi" });
  let cached: { routes: number; document: OpenApiDocument } | undefined;
  function document(): OpenApiDocument {
    // getGlobalRoutes is protected; @elysiajs/openapi's own plugin reads it the same way.
    const routes = (plugin as unknown as { getGlobalRoutes(): RouteInfo[] }).getGlobalRoutes();
    if (cached?.routes !== routes.length) {
      const generated = toOpenAPISchema(plugin as never, { staticFile: false }, undefined, undefined, "3.1.0");
      cached = { routes: routes.length, document: buildOpenApiDocument(routes, generated, config.issuer) };
    }
    return cached.document;
  }
  return plugin
    .get("/openapi", () => Response.json(document()), { detail: { hide: true } })
    .get("/openapi/ui", () => pageResponse(renderOpenApiPage(document())), { detail: { hide: true } });
}
