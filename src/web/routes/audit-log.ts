import type { Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import {
  AUDIT_ACTIONS,
  type AuditFilter,
  decodeAuditCursor,
  describeDetails,
  encodeAuditCursor,
  listAuditEntries,
} from "../../services/audit-log.ts";
import { render } from "../render.ts";
import { linkIsGone, queryText, viewHelpers } from "../request-helpers.ts";

export const AUDIT_LOG_SECTION = {
  href: "/settings/audit-log",
  label: "Audit log",
  description: "Who changed which user, group, role or directory, and when.",
};

export function auditLogHandlers({ db }: { db: Db }) {
  return {
    async index(req: Request, res: Response) {
      const filter = filterOf(req);
      const { entries, next } = await listAuditEntries(db, filter, decodeAuditCursor(req.query.before));
      render(
        req,
        res,
        "audit/index",
        {
          title: "Audit log",
          filter,
          entries: entries.map((e) => ({
            ...e,
            summary: describeDetails(e.details),
            targetHref: targetHref(e),
          })),
          actions: Object.entries(AUDIT_ACTIONS).map(([value, label]) => ({ value, label })),
          focusEntries: linkIsGone(req, {
            "audit-next": next !== null,
            "audit-previous": Boolean(req.query.before),
          }),
          nextHref: next ? hrefOf(filter, encodeAuditCursor(next)) : null,
          firstHref: req.query.before ? hrefOf(filter) : null,
          ...viewHelpers,
        },
        { partial: "audit/_entries" },
      );
    },
  };
}

function filterOf(req: Request): AuditFilter {
  const action = queryText(req.query.action, 100);
  return {
    actor: queryText(req.query.actor),
    target: queryText(req.query.target),
    action: Object.hasOwn(AUDIT_ACTIONS, action) ? action : "",
  };
}

function hrefOf(filter: AuditFilter, before?: string): string {
  const params = new URLSearchParams();
  if (filter.actor) params.set("actor", filter.actor);
  if (filter.target) params.set("target", filter.target);
  if (filter.action) params.set("action", filter.action);
  if (before) params.set("before", before);
  const query = params.toString();
  return query ? `/settings/audit-log?${query}` : "/settings/audit-log";
}

function targetHref(entry: { targetType: string; targetId: string }): string | null {
  if (!/^\d+$/.test(entry.targetId)) return null;
  if (entry.targetType === "user") return `/users/${entry.targetId}`;
  if (entry.targetType === "group") return `/groups/${entry.targetId}`;
  if (entry.targetType === "role") return `/roles/${entry.targetId}`;
  return null;
}
