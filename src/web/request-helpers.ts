import type { NextFunction, Request, Response } from "express";
import { formatDn, parseDn } from "../ldap/dn.ts";
import type { Actor } from "../services/audit.ts";
import type { Outcome } from "../services/guards.ts";
import { flash, redirectWhenSaved } from "./flash.ts";
import type { FieldErrors } from "./forms/form.ts";

/** Who is acting, for the audit log. Only called behind requirePermission, so someone is signed in. */
export function actorOf(res: Response): Actor {
  const user = res.locals.currentUser;
  if (!user) throw new Error("actorOf called without a signed-in user");
  return { id: user.id, name: user.username };
}

/** A positive integer route parameter, or null (the caller answers 404 by passing the request on). */
export function idParam(req: Request, name: string): number | null {
  return positiveId(req.params[name]);
}

/** A database id (a positive 32-bit integer) written in decimal, or null. */
export function positiveId(raw: unknown): number | null {
  if (typeof raw !== "string" || !/^[1-9]\d{0,9}$/.test(raw)) return null;
  const id = Number(raw);
  return id <= 2_147_483_647 ? id : null;
}

/** A query or body value that may be given once or many times (`?user=1&user=2`). */
export function manyValues(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  return typeof value === "string" ? [value] : [];
}

/** Ids from repeated fields; anything that isn't an id is dropped. */
export function manyIds(value: unknown, max = 500): number[] {
  return [
    ...new Set(
      manyValues(value)
        .filter((v) => /^[1-9]\d{0,9}$/.test(v))
        .map(Number),
    ),
  ].slice(0, max);
}

export function queryText(value: unknown, max = 200): string {
  return typeof value === "string" ? value.trim().slice(0, max) : "";
}

/** A refused change becomes the error beside its field (or the form's summary). */
export function errorsOf(outcome: Extract<Outcome<unknown>, { ok: false }>): FieldErrors {
  return { [outcome.field]: outcome.message };
}

/** After a POST that changed nothing because it was refused: say why on the page it came from. */
export function redirectWithError(req: Request, res: Response, location: string, message: string): void {
  flash(req, "error", message);
  redirectWhenSaved(req, res, location);
}

export type AsyncHandler = (req: Request, res: Response, next: NextFunction) => Promise<void> | void;

/** Dates as the console shows them: unambiguous, UTC, to the minute. */
export function formatDateTime(value: Date | string | null | undefined): string {
  if (!value) return "";
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/**
 * A DN as people read it: RFC 4514's minimal escaping, `cn=Lee\, Ann` rather than the
 * `cn=Lee\2C Ann` a server may send; case and spacing as written. Anything unparsable as it is.
 * (Only for showing: DNs are compared normalized.)
 */
export function readableDn(dn: string | null | undefined): string {
  if (!dn) return "";
  try {
    return formatDn(parseDn(dn));
  } catch {
    return dn;
  }
}

const KIND_LABELS: Record<string, string> = {
  user: "User",
  group: "Group",
  computer: "Computer",
  contact: "Contact",
  member: "Member",
};

/** How a report line's or a search result's kind reads ("Computer" for a computer account). */
export function kindLabel(kind: string): string {
  return KIND_LABELS[kind] ?? "Entry";
}

/** Helpers every view of this application may use (render() passes them to each). */
export const viewHelpers = { formatDateTime, readableDn, kindLabel };

/** A return address inside the Users list (bulk actions come back to the page they were sent from). */
export function safeListHref(value: unknown): string {
  if (typeof value !== "string" || !/^\/users(\?[^\\]*)?$/.test(value) || value.length > 2000)
    return "/users";
  return value;
}

/**
 * Whether the link that asked for this region (htmx sends it as HX-Source, `a#page-next`) is gone
 * from the new region — the last page has no "Next page" — so focus, which the morph would have
 * kept on it, must go somewhere: the caller renders an autofocus target instead.
 */
export function linkIsGone(req: Request, links: Record<string, boolean>): boolean {
  if (req.get("HX-Request") !== "true") return false;
  const source = /^a#([\w-]+)$/.exec(req.get("HX-Source") ?? "")?.[1];
  return source !== undefined && links[source] === false;
}
