import type { NextFunction, Request, Response } from "express";

export interface Flash {
  kind: "success" | "error" | "info";
  message: string;
}

declare module "express-session" {
  interface SessionData {
    userId?: number;
    flash?: Flash;
  }
}

/** Queues a message for the next page the user sees (after a 303 redirect). */
export function flash(req: Request, kind: Flash["kind"], message: string): void {
  req.session.flash = { kind, message };
}

/** Moves a queued message into the page being rendered, so it is shown exactly once. */
export function takeFlash(req: Request, res: Response, next: NextFunction): void {
  if (req.session?.flash && req.method === "GET") {
    res.locals.flash = req.session.flash;
    delete req.session.flash;
  }
  next();
}

/**
 * After a successful POST: 303 to the page that shows the result. htmx follows the redirect and,
 * for a boosted form, swaps in the page it lands on.
 */
export function redirectAfterPost(req: Request, res: Response, location: string, message?: string): void {
  if (message) flash(req, "success", message);
  redirectWhenSaved(req, res, location);
}

/**
 * express-session sends the response headers before its store has saved the session; a browser
 * follows a 303 as soon as it sees them, so the next page could load the session without the flash
 * (and then save over it). Saving first closes that race.
 */
export function redirectWhenSaved(req: Request, res: Response, location: string): void {
  req.session.save((err) => {
    if (err) {
      req.next?.(err);
      return;
    }
    res.redirect(303, location);
  });
}
