import type { Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import {
  AUDIT_ACTIONS,
  type AuditCursor,
  type AuditFilter,
  type AuditPage,
  auditActionGroups,
  decodeAuditCursor,
  describeDetails,
  encodeAuditCursor,
  exportAuditEntries,
  listAuditEntries,
} from "../../services/audit-log.ts";
import { csvFilename, streamCsv } from "../csv.ts";
import { auditDatesSchema } from "../forms/audit-log.ts";
import { type FieldErrors, parseForm } from "../forms/form.ts";
import { render } from "../render.ts";
import { linkIsGone, queryText, viewHelpers } from "../request-helpers.ts";

export const AUDIT_LOG_SECTION = {
  href: "/settings/audit-log",
  label: "Audit log",
  description: "Who changed which user, group, role or directory, and when.",
};

const PATH = "/settings/audit-log";

export function auditLogHandlers({ db }: { db: Db }) {
  return {
    async index(req: Request, res: Response) {
      const { filter, errors, values } = filterOf(req);
      const position = positionOf(req);
      const page = await listAuditEntries(db, filter, position);
      const pagination = paginationOf(filter, page, position);
      render(
        req,
        res,
        "audit/index",
        {
          title: "Audit log",
          filter,
          values,
          errors,
          entries: page.entries.map((e) => ({
            ...e,
            summary: describeDetails(e.details),
            targetHref: targetHref(e),
          })),
          actionGroups: auditActionGroups(),
          focusEntries: linkIsGone(req, {
            "audit-first": pagination.firstHref !== null,
            "audit-previous": pagination.previousHref !== null,
            "audit-next": pagination.nextHref !== null,
            "audit-last": pagination.lastHref !== null,
          }),
          pagination,
          exportHref: hrefOf(filter, {}, `${PATH}.csv`),
          ...viewHelpers,
        },
        { status: Object.keys(errors).length > 0 ? 422 : 200, partial: "audit/_audit-log" },
      );
    },

    /** The entries the filter matches, newest first, as CSV: all of them, streamed. */
    async exportCsv(req: Request, res: Response) {
      const { filter } = filterOf(req);
      await streamCsv(res, csvFilename("audit-log", new Date()), CSV_COLUMNS, csvBatches(db, filter));
    },
  };
}

/** The filter as asked; a date that isn't one is left out of it and said beside its field. */
function filterOf(req: Request): {
  filter: AuditFilter;
  errors: FieldErrors;
  values: Record<string, string>;
} {
  const action = queryText(req.query.action, 100);
  const values = { from: queryText(req.query.from, 20), to: queryText(req.query.to, 20) };
  const dates = parseForm(auditDatesSchema, values);
  return {
    filter: {
      actor: queryText(req.query.actor),
      target: queryText(req.query.target),
      action: Object.hasOwn(AUDIT_ACTIONS, action) ? action : "",
      from: dates.ok ? dates.data.from : "",
      to: dates.ok ? dates.data.to : "",
    },
    errors: dates.ok ? {} : dates.errors,
    values,
  };
}

interface Position {
  before: AuditCursor | null;
  after: AuditCursor | null;
  end: boolean;
  number: number | null;
}

function positionOf(req: Request): Position {
  const before = decodeAuditCursor(req.query.before);
  const after = before ? null : decodeAuditCursor(req.query.after);
  const end = !before && !after && req.query.at === "end";
  const raw =
    typeof req.query.page === "string" && /^[1-9]\d{0,6}$/.test(req.query.page) ? req.query.page : "";
  const number = before || after ? (raw ? Number(raw) : null) : end ? null : 1;
  return { before, after, end, number };
}

function paginationOf(filter: AuditFilter, page: AuditPage, position: Position) {
  const pages = page.atLeast ? null : Math.max(1, Math.ceil(page.total / 50));
  const number = position.end ? pages : position.number;
  const near = (offset: number) => (number === null ? null : number + offset);
  const onlyPage = !page.previous && !page.next;
  return {
    firstHref: page.previous ? hrefOf(filter) : null,
    firstText: "Newest",
    previousHref: page.previous
      ? hrefOf(filter, { after: encodeAuditCursor(page.previous), page: near(-1) })
      : null,
    previousText: "Newer",
    nextHref: page.next ? hrefOf(filter, { before: encodeAuditCursor(page.next), page: near(1) }) : null,
    nextText: "Older",
    lastHref: page.next ? hrefOf(filter, { end: true }) : null,
    lastText: "Oldest",
    pageText: onlyPage
      ? ""
      : number !== null
        ? `Page ${number.toLocaleString("en")} of ${pages === null ? "many" : pages.toLocaleString("en")}`
        : "",
  };
}

function hrefOf(
  filter: AuditFilter,
  link: { before?: string; after?: string; end?: boolean; page?: number | null } = {},
  path = PATH,
): string {
  const params = new URLSearchParams();
  if (filter.actor) params.set("actor", filter.actor);
  if (filter.target) params.set("target", filter.target);
  if (filter.action) params.set("action", filter.action);
  if (filter.from) params.set("from", filter.from);
  if (filter.to) params.set("to", filter.to);
  if (link.before) params.set("before", link.before);
  if (link.after) params.set("after", link.after);
  if (link.end) params.set("at", "end");
  if (link.page && (link.before || link.after)) params.set("page", String(link.page));
  const query = params.toString();
  return query ? `${path}?${query}` : path;
}

function targetHref(entry: { targetType: string; targetId: string }): string | null {
  if (!/^\d+$/.test(entry.targetId)) return null;
  if (entry.targetType === "user") return `/users/${entry.targetId}`;
  if (entry.targetType === "group") return `/groups/${entry.targetId}`;
  if (entry.targetType === "role") return `/roles/${entry.targetId}`;
  if (entry.targetType === "directory") return `/settings/directories/${entry.targetId}`;
  if (entry.targetType === "import") return `/imports/${entry.targetId}`;
  return null;
}

const CSV_COLUMNS = ["When (UTC)", "Who", "What", "Action", "Target type", "Target id", "Target", "Details"];

async function* csvBatches(db: Db, filter: AuditFilter): AsyncGenerator<string[][]> {
  for await (const batch of exportAuditEntries(db, filter)) {
    yield batch.map((e) => [
      e.at.toISOString(),
      e.actorName,
      e.actionLabel,
      e.action,
      e.targetType,
      e.targetId,
      e.targetName,
      describeDetails(e.details),
    ]);
  }
}
