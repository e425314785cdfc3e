import { type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { isTimestampText, nameKey, normalizeName } from "./names.ts";

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
  "directory.enable": "Directory enabled",
  "directory.disable": "Directory disabled",
  "api_token.create": "API token created",
  "api_token.revoke": "API token revoked",
  "api_token.use": "API token used",
};

/** The action filter's groups, by the part of an action's name before the dot. */
const ACTION_GROUPS: [string, string[]][] = [
  ["Users", ["user"]],
  ["Groups", ["group"]],
  ["Roles", ["role", "role_assignment"]],
  ["Directories", ["directory"]],
  ["Imports", ["import"]],
  ["Synchronizations", ["synchronization"]],
  ["API tokens", ["api_token"]],
];

export function auditActionGroups(): { label: string; actions: { value: string; label: string }[] }[] {
  return ACTION_GROUPS.map(([label, prefixes]) => ({
    label,
    actions: Object.entries(AUDIT_ACTIONS)
      .filter(([value]) => prefixes.includes(value.slice(0, value.indexOf("."))))
      .map(([value, actionLabel]) => ({ value, label: actionLabel })),
  })).filter((group) => group.actions.length > 0);
}

/** An action's name as people read it: "Import finished", not import.succeeded. */
export function auditActionLabel(action: string): string {
  return AUDIT_ACTIONS[action] ?? action.replace(/[._]/g, " ").replace(/^./, (c) => c.toUpperCase());
}

export interface AuditFilter {
  /** A username, matched case-insensitively against who acted. */
  actor: string;
  /** `user:12`, `group:3`, `role:5`… or a name. */
  target: string;
  action: string;
  /** Days (YYYY-MM-DD, UTC), both included; "" or absent for no bound. */
  from?: string;
  to?: string;
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
    if (!isTimestampText(value[0])) return null;
    return { at: value[0], id: value[1] };
  } catch {
    return null;
  }
}

/** Where a page lies: older than a row (`before`), newer than one (`after`), or the oldest entries. */
export interface AuditPosition {
  before?: AuditCursor | null;
  after?: AuditCursor | null;
  end?: boolean;
}

export interface AuditPage {
  entries: AuditRow[];
  /** The page of older entries starts after this one; null when there is none. */
  next: AuditCursor | null;
  /** The page of newer entries ends before this one; null on the newest page. */
  previous: AuditCursor | null;
  /** How many entries match, counted up to AUDIT_COUNT_LIMIT (then `atLeast`). */
  total: number;
  atLeast: boolean;
}

/** Counting stops here: an exact count of millions of entries would cost more than the page. */
export const AUDIT_COUNT_LIMIT = 10_000;

interface AuditSqlRow {
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
}

async function conditionsOf(db: Db, filter: AuditFilter): Promise<SQL[]> {
  const conditions: SQL[] = [];
  if (filter.action) conditions.push(sql`action = ${filter.action}`);
  if (filter.actor) conditions.push(await actorCondition(db, filter.actor));
  if (filter.target) conditions.push(targetCondition(filter.target));
  if (filter.from) conditions.push(sql`at >= ${filter.from}::date::timestamp at time zone 'UTC'`);
  if (filter.to) conditions.push(sql`at < (${filter.to}::date + 1)::timestamp at time zone 'UTC'`);
  return conditions;
}

function whereOf(conditions: SQL[]): SQL {
  return conditions.length > 0 ? sql`where ${sql.join(conditions, sql` and `)}` : sql``;
}

async function selectEntries(db: Db, conditions: SQL[], newestFirst: boolean, limit: number) {
  const order = newestFirst ? sql`desc` : sql`asc`;
  return queryRows<AuditSqlRow>(
    db,
    sql`select id, at, at::text as at_text, actor_id, actor_name, action, target_type, target_id, target_name, details
        from audit_log ${whereOf(conditions)}
        order by at ${order}, id ${order}
        limit ${limit}`,
  );
}

/** Newest first, keyset-paged on (at, id); each filter uses its own (…, at) index. */
export async function listAuditEntries(
  db: Db,
  filter: AuditFilter,
  where: AuditPosition | AuditCursor | null = {},
  limit = AUDIT_PAGE_SIZE,
): Promise<AuditPage> {
  // A cursor alone is the page older than it (what the API passes).
  const position: AuditPosition = where && "at" in where ? { before: where } : (where ?? {});
  const conditions = await conditionsOf(db, filter);
  const [counted] = await queryRows<{ n: number }>(
    db,
    sql`select count(*)::int as n from (select 1 from audit_log ${whereOf(conditions)} limit ${AUDIT_COUNT_LIMIT + 1}) as matches`,
  );
  const count = Number(counted?.n ?? 0);
  const atLeast = count > AUDIT_COUNT_LIMIT;
  const total = Math.min(count, AUDIT_COUNT_LIMIT);
  const { before, after } = position;
  const fromEnd = Boolean(position.end && !before && !after);
  const keyset = before
    ? [sql`(at, id) < (${before.at}::timestamptz, ${before.id})`]
    : after
      ? [sql`(at, id) > (${after.at}::timestamptz, ${after.id})`]
      : [];
  // The oldest page holds what the full pages before it leave, so page numbers stay right.
  const size = fromEnd && !atLeast && total % limit !== 0 ? total % limit : limit;
  const rows = await selectEntries(db, [...conditions, ...keyset], !(after || fromEnd), size + 1);
  const more = rows.length > size;
  const page = rows.slice(0, size);
  if (after || fromEnd) page.reverse();
  const entries = page.map(toAuditRow);
  const first = page[0] ? cursorOfRow(page[0]) : null;
  const last = page[page.length - 1] ? cursorOfRow(page[page.length - 1] as AuditSqlRow) : null;
  if (fromEnd) return { entries, next: null, previous: more ? first : null, total, atLeast };
  if (after) return { entries, next: last, previous: more ? first : null, total, atLeast };
  return { entries, next: more ? last : null, previous: before ? first : null, total, atLeast };
}

/** Every entry the filter matches, newest first, in batches along the same keyset: for the CSV download. */
export async function* exportAuditEntries(
  db: Db,
  filter: AuditFilter,
  batchSize = 1000,
): AsyncGenerator<AuditRow[]> {
  const conditions = await conditionsOf(db, filter);
  let before: AuditCursor | null = null;
  for (;;) {
    const keyset = before ? [sql`(at, id) < (${before.at}::timestamptz, ${before.id})`] : [];
    const rows = await selectEntries(db, [...conditions, ...keyset], true, batchSize);
    if (rows.length > 0) yield rows.map(toAuditRow);
    const last = rows[rows.length - 1];
    if (rows.length < batchSize || !last) return;
    before = cursorOfRow(last);
  }
}

function cursorOfRow(row: AuditSqlRow): AuditCursor {
  return { at: row.at_text, id: Number(row.id) };
}

function toAuditRow(r: AuditSqlRow): AuditRow {
  return {
    id: Number(r.id),
    at: new Date(r.at),
    actorId: r.actor_id === null ? null : Number(r.actor_id),
    actorName: r.actor_name,
    action: r.action,
    actionLabel: auditActionLabel(r.action),
    targetType: r.target_type,
    targetId: r.target_id,
    targetName: r.target_name,
    details: (typeof r.details === "string" ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
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
