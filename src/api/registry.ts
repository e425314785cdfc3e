/**
 * One list of API routes, each with its zod schemas: the Express router and the OpenAPI document
 * are both made from it, so the description can't drift from what answers.
 */
import type { Request, Response, Router } from "express";
import { z } from "zod";
import type { Actor } from "../services/audit.ts";
import type { Permission } from "../services/permissions.ts";
import { type CurrentUser, currentUserOf } from "../web/auth-middleware.ts";
import { ApiProblem, fieldErrorsOf, invalid } from "./problem.ts";

export type Method = "get" | "post" | "delete";

export interface ApiResponseSpec {
  description: string;
  schema?: z.ZodType;
}

export interface ApiContext<P, Q, B> {
  req: Request;
  res: Response;
  params: P;
  query: Q;
  body: B;
  user: CurrentUser;
  actor: Actor;
}

export interface ApiResult {
  status?: number;
  body?: unknown;
  /** Sets Location (a resource created, or a run started). */
  location?: string;
}

export interface ApiRoute<
  P extends z.ZodType = z.ZodType,
  Q extends z.ZodType = z.ZodType,
  B extends z.ZodType = z.ZodType,
> {
  method: Method;
  /** OpenAPI style: `/directories/{directoryId}`. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** The permission the route needs; null: any signed-in user (their own account). */
  permission: Permission | null;
  params?: P;
  query?: Q;
  body?: B;
  responses: Record<number, ApiResponseSpec>;
  handler: (ctx: ApiContext<z.infer<P>, z.infer<Q>, z.infer<B>>) => Promise<ApiResult>;
}

/** Keeps each route's handler typed by its own schemas. */
export function route<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
  spec: ApiRoute<P, Q, B>,
): ApiRoute {
  return spec as unknown as ApiRoute;
}

/** The largest id PostgreSQL's integer columns hold: a larger one can't name anything. */
export const MAX_ID = 2_147_483_647;

/** An id in a path: anything else answers 404 (there is no such thing), as the pages do. */
export const idParam = z.coerce.number().int().positive().max(MAX_ID);

export function expressPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, ":$1");
}

/** Adds every route to the router: authentication, permission, validation, then the handler. */
export function mount(router: Router, routes: readonly ApiRoute[]): void {
  for (const spec of routes) {
    router[spec.method](expressPath(spec.path), async (req, res) => {
      const user = currentUserOf(res);
      if (!user) throw unauthenticated();
      if (spec.permission && !user.permissions.has(spec.permission)) {
        throw new ApiProblem(
          403,
          "Your account has no role that allows this. Ask an administrator if you need it.",
        );
      }
      const params = spec.params ? spec.params.safeParse(req.params) : { success: true as const, data: {} };
      if (!params.success) throw new ApiProblem(404, "There is nothing at this address.");
      const query = spec.query ? spec.query.safeParse(req.query) : { success: true as const, data: {} };
      if (!query.success) throw invalid(fieldErrorsOf(query.error), "Some query parameters are not valid.");
      const body = spec.body ? spec.body.safeParse(req.body ?? {}) : { success: true as const, data: {} };
      if (!body.success) throw invalid(fieldErrorsOf(body.error));
      const result = await spec.handler({
        req,
        res,
        params: params.data,
        query: query.data,
        body: body.data,
        user,
        actor: { id: user.id, name: user.username },
      });
      if (result.location) res.location(result.location);
      const status = result.status ?? 200;
      if (result.body === undefined) res.status(status).end();
      else res.status(status).json(result.body);
    });
  }
}

export function unauthenticated(): ApiProblem {
  return new ApiProblem(
    401,
    "Send an API token as `Authorization: Bearer <token>` (create one on My account), or sign in.",
  );
}
