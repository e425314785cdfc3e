/**
 * API errors as RFC 9457 problem details (`application/problem+json`): a title that names the
 * problem, a detail for this occurrence, and for invalid input the message beside each field.
 */
import type { ErrorRequestHandler, Request, Response } from "express";
import { z } from "zod";
import { isConnectionLost } from "../db/client.ts";
import type { FieldErrors } from "../web/forms/form.ts";

export const PROBLEM_TYPE = "application/problem+json";

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  /** Invalid input: the first message per field, keyed by the field's path (`entries.2.dn`). */
  errors?: FieldErrors;
}

export const problemSchema = z
  .object({
    type: z.string().describe("A URI naming the kind of problem; about:blank when the status says it all."),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    errors: z.record(z.string(), z.string()).optional().describe("Invalid input: a message per field."),
  })
  .meta({ id: "Problem" });

const TITLES: Record<number, string> = {
  400: "Bad request",
  401: "Authentication required",
  403: "Forbidden",
  404: "Not found",
  409: "Conflict",
  413: "Payload too large",
  415: "Unsupported media type",
  422: "Invalid input",
  429: "Too many requests",
  500: "Internal server error",
  502: "Bad gateway",
  503: "Service unavailable",
};

/** Thrown by a handler to answer with a problem; anything else thrown is a 500. */
export class ApiProblem extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly extra: { errors?: FieldErrors; title?: string; type?: string } = {},
  ) {
    super(detail);
    this.name = "ApiProblem";
  }

  toProblem(): Problem {
    return {
      type: this.extra.type ?? "about:blank",
      title: this.extra.title ?? TITLES[this.status] ?? "Error",
      status: this.status,
      detail: this.detail,
      ...(this.extra.errors ? { errors: this.extra.errors } : {}),
    };
  }
}

export function invalid(errors: FieldErrors, detail = "Some fields are not valid: see errors."): ApiProblem {
  return new ApiProblem(422, detail, { errors });
}

export function notFound(what: string): ApiProblem {
  return new ApiProblem(404, `There is no ${what} with this id.`);
}

export function sendProblem(res: Response, problem: Problem): void {
  res.status(problem.status).type(PROBLEM_TYPE).send(JSON.stringify(problem));
}

/** Field errors from a zod failure: the first message per field, as the pages show them. */
export function fieldErrorsOf(error: z.ZodError, prefix = ""): FieldErrors {
  const errors: FieldErrors = {};
  for (const issue of error.issues) {
    const field = [prefix, ...issue.path.map(String)].filter(Boolean).join(".") || "body";
    errors[field] ??= issue.message;
  }
  return errors;
}

/**
 * The API's error handler: every failure under /api/v1, including those of the middleware in front
 * of it (an expired CSRF token, a body that isn't JSON), answers as problem+json, never as a page.
 */
export const apiErrorHandler: ErrorRequestHandler = (err, req, res, _next) => {
  if (res.headersSent) return;
  if (err instanceof ApiProblem) {
    if (err.status === 401) res.set("WWW-Authenticate", 'Bearer realm="roster"');
    return sendProblem(res, err.toProblem());
  }
  if (isConnectionLost(err)) {
    req.log?.warn({ code: err?.code ?? err?.cause?.code }, "API request failed: the database is unreachable");
    res.set("Retry-After", "5");
    return sendProblem(
      res,
      new ApiProblem(503, "Roster can't reach its database right now; nothing was changed.").toProblem(),
    );
  }
  const status = Number(err?.status ?? err?.statusCode ?? 500);
  if (err?.code === "EBADCSRFTOKEN") {
    return sendProblem(
      res,
      new ApiProblem(
        403,
        "A request signed in with a session cookie needs the page's CSRF token in the X-CSRF-Token header. Scripts should use an API token (Authorization: Bearer) instead.",
        { title: "CSRF token missing or invalid" },
      ).toProblem(),
    );
  }
  if (status >= 500) {
    req.log?.error({ err }, "API request failed");
    return sendProblem(res, {
      type: "about:blank",
      title: TITLES[500] ?? "Error",
      status: 500,
      detail: `Roster could not finish this request; the details are in the server log (request ${String(req.id)}).`,
    });
  }
  req.log?.info({ status, code: err?.code }, "API request refused");
  if (status === 401) res.set("WWW-Authenticate", 'Bearer realm="roster", error="invalid_token"');
  const detail =
    err?.type === "entity.parse.failed"
      ? "The request body is not valid JSON."
      : err?.code === "ENULCHAR"
        ? "The request contains a NUL character (U+0000), which Roster can't store or search for."
        : err?.expose === true && typeof err.message === "string"
          ? err.message
          : (TITLES[status] ?? "The request could not be handled.");
  sendProblem(res, { type: "about:blank", title: TITLES[status] ?? "Error", status, detail });
};

export function apiNotFound(req: Request, res: Response): void {
  sendProblem(res, {
    type: "about:blank",
    title: TITLES[404] ?? "Not found",
    status: 404,
    detail: `There is no API route ${req.method} ${req.baseUrl}${req.path}. The routes are listed in /api/v1/openapi.json.`,
  });
}
