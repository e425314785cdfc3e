/**
 * Cursor paging: every list answers `{ items, next }`, `next` being the address of the following
 * page (also sent as a `Link: <…>; rel="next"` header) or null on the last one. Cursors are opaque:
 * the users list and the audit log page by keyset (the services' own cursors); runs, report entries
 * and directory search results by position, wrapped the same way.
 */
import type { Request, Response } from "express";
import { z } from "zod";

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;

export const limitField = z.coerce
  .number()
  .int()
  .min(1, "Use a limit of at least 1.")
  .max(MAX_LIMIT, `Use a limit of at most ${MAX_LIMIT}.`)
  .default(DEFAULT_LIMIT)
  .describe(`How many items a page holds (at most ${MAX_LIMIT}).`);

export const cursorField = z
  .string()
  .max(2000)
  .optional()
  .describe("Where the page starts: the `cursor` of the previous answer's `next` link.");

export function pageSchema<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    next: z.string().nullable().describe("The next page's address, or null on the last page."),
  });
}

export function encodeOffset(offset: number): string {
  return Buffer.from(JSON.stringify({ o: offset }), "utf8").toString("base64url");
}

/** A position cursor; null when there is none or it is not one of ours (the caller answers 422). */
export function decodeOffset(cursor: string | undefined): number | null {
  if (cursor === undefined || cursor === "") return 0;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    const offset = (value as { o?: unknown })?.o;
    return typeof offset === "number" && Number.isSafeInteger(offset) && offset >= 0 ? offset : null;
  } catch {
    return null;
  }
}

/** The address of the next page: this request's, with the cursor replaced. */
export function nextLink(req: Request, cursor: string): string {
  const url = new URL(req.originalUrl, "http://roster.invalid");
  url.searchParams.set("cursor", cursor);
  return `${url.pathname}${url.search}`;
}

export function sendPage<T>(req: Request, res: Response, items: T[], nextCursor: string | null) {
  const next = nextCursor === null ? null : nextLink(req, nextCursor);
  if (next) res.set("Link", `<${next}>; rel="next"`);
  return { items, next };
}
