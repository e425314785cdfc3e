/**
 * The JSON API under /api/v1. Two doors lead in (see app.ts): a request with
 * `Authorization: Bearer` is let in before any session is read (no cookie, no CSRF token needed);
 * any other comes through the console's session and CSRF protection like a page.
 */
import express, {
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
  Router,
} from "express";
import { rateLimit } from "express-rate-limit";
import { z } from "zod";
import { recordAudit } from "../services/audit.ts";
import { getUser } from "../services/users.ts";
import { bearerTokenOf, loadBearerUser } from "../web/auth-middleware.ts";
import { DatabaseRateLimitStore } from "../web/rate-limit-store.ts";
import type { ApiDeps } from "./deps.ts";
import { directoryRoutes } from "./directories.ts";
import { openApiDocument } from "./openapi.ts";
import { peopleRoutes, userJson, userSchema } from "./people.ts";
import { ApiProblem, apiErrorHandler, apiNotFound, problemSchema, sendProblem } from "./problem.ts";
import { type ApiRoute, mount, route } from "./registry.ts";
import { runRoutes } from "./runs.ts";

export const API_VERSION = "1.0.0";
const DEFAULT_RATE_LIMIT = { limit: 600, windowMs: 60_000 };

/** Every route of the API, in the order the document lists them. */
export function apiRoutes(deps: ApiDeps): ApiRoute[] {
  return [meRoute(deps), ...directoryRoutes(deps), ...runRoutes(deps), ...peopleRoutes(deps)];
}

export interface Api {
  /** Lets bearer requests in (mounted before sessions); others go on to `next`. */
  bearer: RequestHandler;
  /** The API for requests signed in with the console's session (mounted after CSRF protection). */
  session: RequestHandler[];
  routes: ApiRoute[];
  /** The router every route was mounted on (its stack lists what answers). */
  router: Router;
  document: Record<string, unknown>;
}

export function createApi(deps: ApiDeps): Api {
  const routes = apiRoutes(deps);
  const document = openApiDocument(routes, API_VERSION);
  const inner = Router();
  inner.use(express.json({ limit: "256kb" }));
  inner.use(refuseNul);
  inner.get("/openapi.json", (_req, res) => {
    res.json(document);
  });
  inner.use(rateLimiter(deps));
  inner.use(auditTokenWrites(deps));
  mount(inner, routes);
  inner.use(apiNotFound);
  inner.use(apiErrorHandler);

  const authenticate = loadBearerUser(deps.db);
  const answer = (req: Request, res: Response, next: NextFunction) =>
    inner(req, res, (err?: unknown) =>
      apiErrorHandler(err ?? new ApiProblem(404, "Not found"), req, res, next),
    );
  const bearer: RequestHandler = (req, res, next) => {
    if (bearerTokenOf(req) === null) {
      // Neither a token nor a session: answered as anonymous (401, or the public document), without
      // making a session or asking for a CSRF token a script could never have.
      if (!hasCookie(req, deps.sessionCookie)) return answer(req, res, next);
      return next();
    }
    // Called outside Express's own promise handling: a failure (the database unreachable) must be
    // answered here, or the request would hang and the rejection go unhandled.
    authenticate(req, res, (err?: unknown) => {
      if (err) return apiErrorHandler(err, req, res, next);
      answer(req, res, next);
    }).catch((err: unknown) => apiErrorHandler(err, req, res, next));
  };
  return {
    bearer,
    session: [inner, apiErrorHandler as unknown as RequestHandler],
    routes,
    router: inner,
    document,
  };
}

function meRoute(deps: ApiDeps): ApiRoute {
  return route({
    method: "get",
    path: "/me",
    operationId: "getCurrentUser",
    summary: "The account the token (or session) acts as, with its permissions",
    tag: "Account",
    permission: null,
    responses: {
      200: {
        description: "The current user.",
        schema: userSchema.extend({
          permissions: z.array(z.string()),
          token: z.object({ id: z.number().int(), name: z.string() }).nullable(),
        }),
      },
      401: { description: "No valid API token or session.", schema: problemSchema },
    },
    handler: async ({ res, user }) => {
      const details = await getUser(deps.db, user.id);
      if (!details) throw new ApiProblem(401, "This account no longer exists.");
      return {
        body: {
          ...(await userJson(deps, details)),
          permissions: [...user.permissions].sort(),
          token: res.locals.apiToken ?? null,
        },
      };
    },
  });
}

/**
 * Requests per client and window: per token, or per signed-in user. Counted in the database, so
 * every instance sees the same count. Anonymous requests are answered 401 before they cost anything.
 */
function rateLimiter(deps: ApiDeps): RequestHandler {
  const { limit, windowMs } = deps.rateLimit ?? DEFAULT_RATE_LIMIT;
  return rateLimit({
    windowMs,
    limit,
    standardHeaders: "draft-8",
    legacyHeaders: false,
    skip: (_req, res) => res.locals.currentUser === undefined,
    keyGenerator: (_req, res) =>
      res.locals.apiToken ? `token:${res.locals.apiToken.id}` : `user:${res.locals.currentUser?.id ?? 0}`,
    store: new DatabaseRateLimitStore(deps.db, "api:"),
    handler: (req: Request, res: Response) => {
      const resetTime = (req as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
      const seconds = Math.max(
        1,
        Math.ceil(((resetTime?.getTime() ?? Date.now() + windowMs) - Date.now()) / 1000),
      );
      res.set("Retry-After", String(seconds));
      sendProblem(res, {
        type: "about:blank",
        title: "Too many requests",
        status: 429,
        detail: `This client sent more than ${limit} requests in ${Math.round(windowMs / 1000)} seconds. Try again in ${seconds} seconds.`,
      });
    },
  });
}

/** A write made with an API token is audited as such, besides the change itself (which its service audits). */
function auditTokenWrites(deps: ApiDeps): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const token = res.locals.apiToken;
    const user = res.locals.currentUser;
    if (token && user && req.method !== "GET" && req.method !== "HEAD") {
      await recordAudit(
        deps.db,
        { id: user.id, name: user.username },
        {
          action: "api_token.use",
          targetType: "user",
          targetId: user.id,
          targetName: user.username,
          details: {
            token: token.name,
            tokenId: token.id,
            request: `${req.method} ${req.baseUrl}${req.path}`,
          },
        },
      );
    }
    next();
  };
}

function hasCookie(req: Request, name: string): boolean {
  const header = req.get("Cookie") ?? "";
  return header.split(";").some((pair) => pair.trim().startsWith(`${name}=`));
}

function holdsNul(value: unknown, depth = 0): boolean {
  if (typeof value === "string") return value.includes("\u0000");
  if (depth > 8 || value === null || typeof value !== "object") return false;
  return Object.entries(value).some(([key, v]) => key.includes("\u0000") || holdsNul(v, depth + 1));
}

/** JSON bodies are parsed here, after the app's own NUL check: the same refusal for them. */
const refuseNul: RequestHandler = (req, _res, next) => {
  if (holdsNul(req.body))
    return next(Object.assign(new Error("request with a NUL character"), { status: 400, code: "ENULCHAR" }));
  next();
};
