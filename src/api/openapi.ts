/**
 * The OpenAPI 3.1 document, made from the routes' own zod schemas (zod 4's JSON Schema output is
 * draft 2020-12, which OpenAPI 3.1 uses as is). Named schemas (`.meta({ id })`) become components.
 */
import { z } from "zod";
import { PROBLEM_TYPE } from "./problem.ts";
import type { ApiResponseSpec, ApiRoute } from "./registry.ts";

type Json = Record<string, unknown>;

export function openApiDocument(routes: readonly ApiRoute[], version: string): Json {
  const components: Record<string, Json> = {};
  const schemaOf = (schema: z.ZodType, io: "input" | "output"): Json => {
    const generated = z.toJSONSchema(schema, {
      target: "draft-2020-12",
      io,
      unrepresentable: "any",
      reused: "inline",
    }) as Json;
    return hoist(generated, components);
  };

  const paths: Record<string, Record<string, Json>> = {};
  for (const spec of routes) {
    const parameters: Json[] = [];
    if (spec.params) parameters.push(...parametersOf(schemaOf(spec.params, "input"), "path"));
    if (spec.query) parameters.push(...parametersOf(schemaOf(spec.query, "input"), "query"));
    const operation: Json = {
      operationId: spec.operationId,
      summary: spec.summary,
      ...(spec.description ? { description: spec.description } : {}),
      tags: [spec.tag],
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(spec.body
        ? {
            requestBody: {
              required: true,
              content: { "application/json": { schema: schemaOf(spec.body, "input") } },
            },
          }
        : {}),
      responses: Object.fromEntries(
        Object.entries({
          ...spec.responses,
          429: { description: "Too many requests: wait the seconds Retry-After says." },
        }).map(([status, response]: [string, ApiResponseSpec]) => [
          status,
          {
            description: response.description,
            ...(response.schema
              ? {
                  content: {
                    [Number(status) >= 400 ? PROBLEM_TYPE : "application/json"]: {
                      schema: schemaOf(response.schema, "output"),
                    },
                  },
                }
              : {}),
          },
        ]),
      ),
    };
    paths[spec.path] ??= {};
    (paths[spec.path] as Record<string, Json>)[spec.method] = operation;
  }

  return {
    openapi: "3.1.0",
    info: {
      title: "Roster API",
      version,
      description:
        "Everything an administrator does for imports, synchronizations, users, groups and roles. Authenticate with a personal API token (`Authorization: Bearer roster_…`, created on My account); it acts with its user's permissions. Errors are RFC 9457 problem details. Lists are cursor-paged: follow `next`.",
    },
    servers: [{ url: "/api/v1" }],
    security: [{ bearerAuth: [] }, { cookieAuth: [] }],
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        bearerAuth: { type: "http", scheme: "bearer", description: "A personal API token (roster_…)." },
        cookieAuth: {
          type: "apiKey",
          in: "cookie",
          name: "roster.sid",
          description: "A signed-in browser session; writes then need the X-CSRF-Token header.",
        },
      },
    },
  };
}

/** Moves `$defs` into the components and points their `$ref`s there. */
function hoist(schema: Json, components: Record<string, Json>): Json {
  const defs = (schema.$defs ?? {}) as Record<string, Json>;
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (value === null || typeof value !== "object") return value;
    const out: Json = {};
    for (const [key, v] of Object.entries(value as Json)) {
      if (key === "$schema" || key === "$defs") continue;
      if (key === "$ref" && typeof v === "string" && v.startsWith("#/$defs/")) {
        out[key] = `#/components/schemas/${v.slice("#/$defs/".length)}`;
      } else out[key] = rewrite(v);
    }
    return out;
  };
  for (const [name, def] of Object.entries(defs)) components[name] ??= rewrite(def) as Json;
  const id = schema.id;
  const body = rewrite(schema) as Json;
  // A named schema at the top is itself a component: answered by reference.
  if (typeof id === "string") {
    const { id: _id, ...rest } = body;
    components[id] ??= rest;
    return { $ref: `#/components/schemas/${id}` };
  }
  return body;
}

function parametersOf(schema: Json, place: "path" | "query"): Json[] {
  const properties = (schema.properties ?? {}) as Record<string, Json>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(properties).map(([name, property]) => {
    const { description, ...rest } = property;
    return {
      name,
      in: place,
      required: place === "path" || (required.has(name) && !("default" in rest)),
      ...(typeof description === "string" ? { description } : {}),
      schema: rest,
    };
  });
}
