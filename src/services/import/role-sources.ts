/** The users and groups whose roles an import can copy onto every imported user. */
import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { likePattern } from "../names.ts";
import { searchReachesEmails, userSearchCondition } from "../user-search.ts";
import type { RoleSource } from "./types.ts";

export interface RoleSourceOption extends RoleSource {
  detail: string;
  /** Role assignments the source holds (what would be copied). */
  assignments: number;
}

const PICKER_LIMIT = 10;

/** Users and groups whose name, full name or email contains the text (case- and accent-insensitive). */
export async function findRoleSources(db: Db, text: string): Promise<RoleSourceOption[]> {
  const needle = text.trim();
  if (needle === "") return [];
  const pattern = likePattern(needle);
  const userMatch = userSearchCondition(needle, await searchReachesEmails(db, needle));
  const rows = await queryRows<{
    type: "user" | "group";
    id: number;
    name: string;
    detail: string;
    assignments: number;
  }>(
    db,
    sql`(select 'user' as type, u.id, u.username as name, u.full_name as detail,
          (select count(*)::int from role_assignments a where a.user_id = u.id) as assignments
        from users u where ${userMatch} order by u.username_key limit ${PICKER_LIMIT})
        union all
        (select 'group' as type, g.id, g.name, g.description as detail,
          (select count(*)::int from role_assignments a where a.group_id = g.id) as assignments
        from groups g where g.search_text like ${pattern} order by g.name_key limit ${PICKER_LIMIT})`,
  );
  return rows.map((row) => ({ ...row, id: Number(row.id), assignments: Number(row.assignments) }));
}

/** `user:12` / `group:3` → the source, or null when it does not exist (any more). */
export async function resolveRoleSource(db: Db, value: string): Promise<RoleSourceOption | null> {
  const match = /^(user|group):(\d{1,9})$/.exec(value);
  if (!match) return null;
  const type = match[1] as "user" | "group";
  const id = Number(match[2]);
  const rows =
    type === "user"
      ? await queryRows<{ name: string; detail: string; assignments: number }>(
          db,
          sql`select username as name, full_name as detail,
                (select count(*)::int from role_assignments a where a.user_id = u.id) as assignments
              from users u where u.id = ${id}`,
        )
      : await queryRows<{ name: string; detail: string; assignments: number }>(
          db,
          sql`select name, description as detail,
                (select count(*)::int from role_assignments a where a.group_id = g.id) as assignments
              from groups g where g.id = ${id}`,
        );
  const row = rows[0];
  return row ? { type, id, name: row.name, detail: row.detail, assignments: Number(row.assignments) } : null;
}
