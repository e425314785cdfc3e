import path from "node:path";
import { fileURLToPath } from "node:url";
import { Eta } from "eta";
import type { Request, Response } from "express";
import { viewHelpers } from "./request-helpers.ts";

export const viewsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../views");

export function createViews(cache: boolean): Eta {
  return new Eta({ views: viewsDir, cache, autoEscape: true, autoTrim: false });
}

export interface RenderOptions {
  status?: number;
  /**
   * The region's partial (e.g. `users/_user-rows`). An htmx request that targets a region gets only
   * this; a full navigation, a boosted link or a history restore gets the whole page, which includes
   * the same partial.
   */
  partial?: string;
}

export function wantsPartial(req: Request): boolean {
  return req.get("HX-Request") === "true" && req.get("HX-Request-Type") === "partial";
}

export function render(
  req: Request,
  res: Response,
  view: string,
  data: Record<string, unknown> = {},
  options: RenderOptions = {},
): void {
  const eta = req.app.locals.views as Eta;
  const template = options.partial && wantsPartial(req) ? options.partial : view;
  const html = eta.render(template, { ...viewHelpers, ...res.locals, ...data });
  res.vary("HX-Request").vary("HX-Request-Type");
  res
    .status(options.status ?? 200)
    .type("html")
    .send(html);
}
