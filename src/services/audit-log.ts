import { type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { nameKey, normalizeName } from "./names.ts";

/** What each recorded action means, for the filter and the log's wording. */
export const AUDIT_ACTIONS: Record<string, string> = {
  "user.create_first_admin": "First administrator created",
  "user.create": "User created",
  "user.create_at_sign_in": "User created at first sign-in",
  "user.update": "User edited",
  "user.enable": "User enabled",
  "user.disable": "User disabled",
  "user.password_reset": "Password reset",
  "user.sync": "User synchronized",
  "user.missing_in_directory": "User missing in directory",
  "user.convert_to_internal": "Converted to internal",
  "user.convert_to_external": "Converted to external",
  "group.create": "Group created",
  "group.update": "Group edited",
  "group.member_add": "Member added",
  "group.member_remove": "Member removed",
  "group.subgroup_add": "Subgroup added",
  "group.subgroup_remove": "Subgroup removed",
  "group.sync": "Group synchronized",
  "role.create": "Role created",
  "role.update": "Role edited",
  "role.delete": "Role deleted",
  "role_assignment.add": "Role assigned",
  "role_assignment.remove": "Role assignment removed",
  "role_assignment.copy": "Roles copied",
  "directory.create": "Directory added",
  "directory.update": "Directory edited",
  "directory.sign_in_changed": "Who may sign in changed",
  "directory.delete": "Directory deleted",
  "directory.move": "Directory moved",
  "directory.test_connection": "Directory connection tested",
  "directory.schedule_changed": "Synchronization schedule changed",
  "import.succeeded": "Import finished",
  "import.failed": "Import failed",
  "import.cancelled": "Import cancelled",
  "synchronization.succeeded": "Synchronization finished",
  "synchronization.held": "Synchronization held removals",
  "synchronization.failed": "Synchronization failed",
  "synchronization.cancelled": "Synchronization cancelled",
  "synchronization.held_applied": "Held removals applied",
  "synchronization.held_discarded": "Held removals discarded",
};

export interface AuditFilter {
  /** A username, matched case-insensitively against who acted. */
  actor: string;
  /** `user:12`, `group:3`, `role:5`… or a name. */
  target: string;
  action: string;
}

export interface AuditCursor {
  /** The timestamp exactly as PostgreSQL prints it (microseconds survive; a JS Date would drop them). */
  at: string;
  id: number;
}

export interface AuditRow {
  id: number;
  at: Date;
  actorId: number | null;
  actorName: string;
  action: string;
  actionLabel: string;
  targetType: string;
  targetId: string;
  targetName: string;
  details: Record<string, unknown>;
}

export const AUDIT_PAGE_SIZE = 50;

export function encodeAuditCursor(cursor: AuditCursor): string {
  return Buffer.from(JSON.stringify([cursor.at, cursor.id]), "utf8").toString("base64url");
}

export function decodeAuditCursor(text: unknown): AuditCursor | null {
  if (typeof text !== "string" || text === "" || text.length > 200) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
    if (!Array.isArray(value) || typeof value[0] !== "string" || !Number.isSafeInteger(value[1])) return null;
    if (!/^\d{4}-\d\d-\d\d[ T][\d:.]+([+-]\d\d(:?\d\d)?|Z)?$/.test(value[0])) return null;
    return { at: value[0], id: value[1] };
  } catch {
    return null;
  }
}

/** Newest first, keyset-paged on (at, id); each filter uses its own (…, at) index. */
export async function listAuditEntries(
  db: Db,
  filter: AuditFilter,
  before: AuditCursor | null,
  limit = AUDIT_PAGE_SIZE,
): Promise<{ entries: AuditRow[]; next: AuditCursor | null }> {
  const conditions: SQL[] = [];
  if (filter.action) conditions.push(sql`action = ${filter.action}`);
  if (filter.actor) conditions.push(await actorCondition(db, filter.actor));
  if (filter.target) conditions.push(targetCondition(filter.target));
  if (before) conditions.push(sql`(at, id) < (${before.at}::timestamptz, ${before.id})`);
  const where = conditions.length > 0 ? sql`where ${sql.join(conditions, sql` and `)}` : sql``;
  const rows = await queryRows<{
    id: number;
    at: string | Date;
    at_text: string;
    actor_id: number | null;
    actor_name: string;
    action: string;
    target_type: string;
    target_id: string;
    target_name: string;
    details: unknown;
  }>(
    db,
    sql`select id, at, at::text as at_text, actor_id, actor_name, action, target_type, target_id, target_name, details
        from audit_log ${where}
        order by at desc, id desc
        limit ${limit + 1}`,
  );
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    entries: page.map((r) => ({
      id: Number(r.id),
      at: new Date(r.at),
      actorId: r.actor_id === null ? null : Number(r.actor_id),
      actorName: r.actor_name,
      action: r.action,
      actionLabel: AUDIT_ACTIONS[r.action] ?? r.action,
      targetType: r.target_type,
      targetId: r.target_id,
      targetName: r.target_name,
      details: (typeof r.details === "string" ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
    })),
    next: rows.length > limit && last ? { at: last.at_text, id: Number(last.id) } : null,
  };
}

/** The name as typed, and as the user it names spells it now (the log keeps names as they were). */
async function actorCondition(db: Db, actor: string): Promise<SQL> {
  const typed = normalizeName(actor);
  const [user] = await queryRows<{ username: string }>(
    db,
    sql`select username from users where username_key = ${nameKey(typed)}`,
  );
  const names = [...new Set([typed, user?.username ?? typed])];
  return sql`actor_name in (${sql.join(
    names.map((n) => sql`${n}`),
    sql`, `,
  )})`;
}

function targetCondition(target: string): SQL {
  const reference = /^(user|group|role|directory|import):(\d+)$/.exec(target.trim());
  if (reference) return sql`target_type = ${reference[1]} and target_id = ${reference[2]}`;
  return sql`lower(target_name) = ${nameKey(normalizeName(target))}`;
}

/** A short, readable account of an entry's details, for the log's table. */
export function describeDetails(details: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(details)) {
    if (key === "changes" && value && typeof value === "object") {
      for (const [field, pair] of Object.entries(value as Record<string, unknown>)) {
        const [from, to] = Array.isArray(pair) ? pair : [undefined, pair];
        parts.push(`${field}: ${show(from)} → ${show(to)}`);
      }
    } else if (!key.endsWith("Id")) {
      parts.push(`${key}: ${show(value)}`);
    }
  }
  return parts.join("; ");
}

function show(value: unknown): string {
  if (value === null || value === undefined || value === "") return "(none)";
  if (Array.isArray(value)) return value.map(show).join(", ");
  if (typeof value === "object") {
    return Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${k} ${show(v)}`)
      .join(" ");
  }
  return String(value);
}
