import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { roles } from "../db/schema.ts";

export const PERMISSIONS = {
  /** Everything under Users and Settings: users, groups, roles, directories, imports, audit log. */
  manageUsers: "users.manage",
  manageResources: "resources.manage",
  contributeResources: "resources.contribute",
  viewResources: "resources.view",
} as const;

export type Permission = (typeof PERMISSIONS)[keyof typeof PERMISSIONS];

export const ALL_PERMISSIONS: readonly Permission[] = Object.values(PERMISSIONS);

export const PREDEFINED_ROLES = [
  {
    key: "server_admin",
    name: "Server Administrator",
    description: "Full control of users, groups, roles, directories and resources.",
    permissions: [...ALL_PERMISSIONS],
  },
  {
    key: "user_manager",
    name: "User Manager",
    description: "Creates, imports, converts and edits users and groups; manages directories.",
    permissions: [PERMISSIONS.manageUsers, PERMISSIONS.viewResources],
  },
  {
    key: "resource_manager",
    name: "Resource Manager",
    description: "Creates, edits and deletes resources.",
    permissions: [PERMISSIONS.manageResources, PERMISSIONS.contributeResources, PERMISSIONS.viewResources],
  },
  {
    key: "resource_contributor",
    name: "Resource Contributor",
    description: "Edits the resources it is given.",
    permissions: [PERMISSIONS.contributeResources, PERMISSIONS.viewResources],
  },
  {
    key: "viewer",
    name: "Viewer",
    description: "Reads resources.",
    permissions: [PERMISSIONS.viewResources],
  },
] as const;

export type PredefinedRoleKey = (typeof PREDEFINED_ROLES)[number]["key"];

/** Predefined roles are data the code relies on: written at start-up, kept in step with this file. */
export async function ensurePredefinedRoles(db: Db): Promise<void> {
  for (const role of PREDEFINED_ROLES) {
    await db
      .insert(roles)
      .values({ ...role, permissions: [...role.permissions], predefined: true })
      .onConflictDoUpdate({
        target: roles.key,
        set: {
          name: role.name,
          description: role.description,
          permissions: [...role.permissions],
          predefined: true,
        },
      });
  }
}

/**
 * The permissions a user holds globally: from its own assignments and from every group it belongs to,
 * directly or through subgroups (UNION, not UNION ALL, so a cycle of subgroups ends).
 */
export async function globalPermissionsOf(db: Db, userId: number): Promise<Set<string>> {
  const rows = await queryRows<{ permission: string }>(
    db,
    sql`with recursive member_of(id) as (
          select group_id from group_members where user_id = ${userId}
          union
          select s.parent_id from group_subgroups s join member_of m on s.child_id = m.id
        )
        select distinct unnest(r.permissions) as permission
        from role_assignments a join roles r on r.id = a.role_id
        where a.scope = '' and (a.user_id = ${userId} or a.group_id in (select id from member_of))`,
  );
  return new Set(rows.map((r) => r.permission));
}
