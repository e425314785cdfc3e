import type { Request, Response } from "express";
import type { z } from "zod";
import { render } from "../render.ts";

export type FieldErrors = Record<string, string>;

export type FormResult<T> = { ok: true; data: T } | { ok: false; errors: FieldErrors };

/** Validates a submitted form; the first message per field, keyed by the field's name. */
export function parseForm<S extends z.ZodType>(schema: S, body: unknown): FormResult<z.infer<S>> {
  const parsed = schema.safeParse(body ?? {});
  if (parsed.success) return { ok: true, data: parsed.data };
  const errors: FieldErrors = {};
  for (const issue of parsed.error.issues) {
    const field = issue.path.join(".") || "form";
    errors[field] ??= issue.message;
  }
  return { ok: false, errors };
}

/**
 * Re-renders a form with 422, the submitted values (secrets removed by the caller) and an error
 * beside each field. htmx 4 swaps 4xx responses, so the form comes back into its place.
 */
export function renderInvalid(
  req: Request,
  res: Response,
  view: string,
  data: Record<string, unknown> & { errors: FieldErrors; values: Record<string, unknown> },
  partial?: string,
): void {
  render(req, res, view, data, { status: 422, partial });
}
