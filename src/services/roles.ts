import { and, asc, count, desc, eq, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { groups, roleAssignments, roles, users } from "../db/schema.ts";
import { type Actor, recordAudit } from "./audit.ts";
import { attempt, ensureManagersRemain, isUniqueViolation, type Outcome, Refusal } from "./guards.ts";
import { ALL_PERMISSIONS, PERMISSIONS, type Permission } from "./permissions.ts";

export type Role = typeof roles.$inferSelect;

export const PERMISSION_LABELS: Record<Permission, { label: string; description: string }> = {
  [PERMISSIONS.manageUsers]: {
    label: "Manage users",
    description: "Users, groups, roles, directories, imports and the audit log.",
  },
  [PERMISSIONS.manageResources]: {
    label: "Manage resources",
    description: "Create, edit and delete resources.",
  },
  [PERMISSIONS.contributeResources]: { label: "Contribute to resources", description: "Edit resources." },
  [PERMISSIONS.viewResources]: { label: "View resources", description: "Read resources." },
};

/** Who a role assignment is given to. */
export type Subject = { type: "user"; id: number } | { type: "group"; id: number };

export function subjectLabel(subject: Subject): string {
  return `${subject.type}:${subject.id}`;
}

/** `user:12` / `group:3` as sent by pickers; null when malformed. */
export function parseSubject(text: unknown): Subject | null {
  if (typeof text !== "string") return null;
  const match = /^(user|group):(\d{1,9})$/.exec(text);
  if (!match) return null;
  return { type: match[1] as Subject["type"], id: Number(match[2]) };
}

// A scope names one resource: `project:42`, `dataset:sales-2024`. Empty means global.
const SCOPE = /^[a-z][a-z0-9_-]{0,49}:[A-Za-z0-9._~@-]{1,150}$/;

/** Why a scope can't be used, or null. */
export function scopeProblem(scope: string): string | null {
  if (scope === "" || SCOPE.test(scope)) return null;
  return "Write the scope as type:id, like project:42, or leave it empty for a global assignment.";
}

export interface RoleSummary extends Role {
  assignmentCount: number;
}

export async function listRoles(db: Db): Promise<RoleSummary[]> {
  const rows = await db
    .select({ role: roles, assignmentCount: count(roleAssignments.id) })
    .from(roles)
    .leftJoin(roleAssignments, eq(roleAssignments.roleId, roles.id))
    .groupBy(roles.id)
    .orderBy(desc(roles.predefined), asc(roles.name));
  return rows.map((r) => ({ ...r.role, assignmentCount: Number(r.assignmentCount) }));
}

export async function getRole(db: Db, id: number): Promise<Role | null> {
  const [role] = await db.select().from(roles).where(eq(roles.id, id));
  return role ?? null;
}

export interface RoleInput {
  name: string;
  description: string;
  permissions: Permission[];
}

export async function createRole(db: Db, actor: Actor, input: RoleInput): Promise<Outcome<Role>> {
  return attempt(db, async (tx) => {
    await refuseTakenName(tx, input.name, null);
    const [role] = await tx
      .insert(roles)
      .values({ ...input, permissions: sortPermissions(input.permissions), predefined: false })
      .returning();
    if (!role) throw new Error("insert returned no row");
    await recordAudit(tx, actor, {
      action: "role.create",
      targetType: "role",
      targetId: role.id,
      targetName: role.name,
      details: { permissions: role.permissions },
    });
    return role;
  }).catch(nameTakenOnRace<Role>);
}

export async function updateRole(db: Db, actor: Actor, id: number, input: RoleInput): Promise<Outcome<Role>> {
  return attempt(db, async (tx) => {
    const [before] = await tx.select().from(roles).where(eq(roles.id, id)).for("update");
    if (!before) throw new Refusal("This role no longer exists.");
    if (before.predefined) throw new Refusal("Predefined roles can't be changed.");
    await refuseTakenName(tx, input.name, id);
    const permissions = sortPermissions(input.permissions);
    const [role] = await tx
      .update(roles)
      .set({ name: input.name, description: input.description, permissions, updatedAt: new Date() })
      .where(eq(roles.id, id))
      .returning();
    if (!role) throw new Error("update returned no row");
    const changes = changesBetween(before, role, ["name", "description", "permissions"]);
    if (changes.permissions) await ensureManagersRemain(tx, `Taking “Manage users” away from ${role.name}`);
    await recordAudit(tx, actor, {
      action: "role.update",
      targetType: "role",
      targetId: role.id,
      targetName: role.name,
      details: { changes },
    });
    return role;
  }).catch(nameTakenOnRace<Role>);
}

export async function deleteRole(db: Db, actor: Actor, id: number): Promise<Outcome<Role>> {
  return attempt(db, async (tx) => {
    const [role] = await tx.select().from(roles).where(eq(roles.id, id)).for("update");
    if (!role) throw new Refusal("This role no longer exists.");
    if (role.predefined) throw new Refusal("Predefined roles can't be deleted.");
    const [held] = await tx
      .select({ n: count() })
      .from(roleAssignments)
      .where(eq(roleAssignments.roleId, id));
    await tx.delete(roles).where(eq(roles.id, id));
    await ensureManagersRemain(tx, `Deleting ${role.name}`);
    await recordAudit(tx, actor, {
      action: "role.delete",
      targetType: "role",
      targetId: role.id,
      targetName: role.name,
      details: { assignmentsRemoved: Number(held?.n ?? 0) },
    });
    return role;
  });
}

async function refuseTakenName(tx: Db, name: string, exceptId: number | null): Promise<void> {
  const [taken] = await tx
    .select({ id: roles.id })
    .from(roles)
    .where(sql`lower(${roles.name}) = lower(${name})`);
  if (taken && taken.id !== exceptId) throw new Refusal("Another role already has this name.", "name");
}

function nameTakenOnRace<T>(err: unknown): Outcome<T> {
  if (isUniqueViolation(err))
    return { ok: false, field: "name", message: "Another role already has this name." };
  throw err;
}

function sortPermissions(permissions: Permission[]): Permission[] {
  return ALL_PERMISSIONS.filter((p) => permissions.includes(p));
}

/** `{field: [before, after]}` for the fields that differ. */
export function changesBetween<T extends Record<string, unknown>>(
  before: T,
  after: T,
  fields: (keyof T & string)[],
): Record<string, [unknown, unknown]> {
  const changes: Record<string, [unknown, unknown]> = {};
  for (const field of fields) {
    if (JSON.stringify(before[field]) !== JSON.stringify(after[field]))
      changes[field] = [before[field], after[field]];
  }
  return changes;
}

export interface AssignmentView {
  id: number;
  roleId: number;
  roleName: string;
  predefined: boolean;
  scope: string;
  /** Set when the assignment reaches a user through a group (directly or via subgroups). */
  viaGroup: { id: number; name: string } | null;
}

/**
 * A subject's role assignments: its own, then (for a user) those it holds through the groups it
 * belongs to, and (for a group) those of the groups it is a subgroup of.
 */
export async function assignmentsOf(db: Db, subject: Subject): Promise<AssignmentView[]> {
  const start =
    subject.type === "user"
      ? sql`select group_id as id from group_members where user_id = ${subject.id}`
      : sql`select parent_id as id from group_subgroups where child_id = ${subject.id}`;
  const own = subject.type === "user" ? sql`a.user_id = ${subject.id}` : sql`a.group_id = ${subject.id}`;
  const via =
    subject.type === "user" ? sql`g.id = a.group_id` : sql`g.id = a.group_id and a.group_id <> ${subject.id}`;
  const rows = await queryRows<{
    id: number;
    role_id: number;
    role_name: string;
    predefined: boolean;
    scope: string;
    via_id: number | null;
    via_name: string | null;
  }>(
    db,
    sql`with recursive member_of(id) as (
          ${start}
          union
          select s.parent_id from group_subgroups s join member_of m on s.child_id = m.id
        )
        select a.id, a.role_id, r.name as role_name, r.predefined, a.scope, g.id as via_id, g.name as via_name
        from role_assignments a
        join roles r on r.id = a.role_id
        left join groups g on ${via}
        where ${own} or a.group_id in (select id from member_of)
        order by (g.id is not null), r.name, a.scope, g.name`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    roleId: Number(r.role_id),
    roleName: r.role_name,
    predefined: r.predefined,
    scope: r.scope,
    viaGroup: r.via_id === null ? null : { id: Number(r.via_id), name: r.via_name ?? "" },
  }));
}

interface SubjectRow {
  name: string;
}

async function loadSubject(tx: Db, subject: Subject): Promise<SubjectRow> {
  const [row] =
    subject.type === "user"
      ? await tx.select({ name: users.username }).from(users).where(eq(users.id, subject.id))
      : await tx.select({ name: groups.name }).from(groups).where(eq(groups.id, subject.id));
  if (!row) throw new Refusal(`This ${subject.type} no longer exists.`);
  return row;
}

function subjectColumns(subject: Subject) {
  return subject.type === "user"
    ? { userId: subject.id, groupId: null }
    : { userId: null, groupId: subject.id };
}

/** Gives a role; giving one the subject already has changes nothing and says so. */
export async function addAssignment(
  db: Db,
  actor: Actor,
  subject: Subject,
  input: { roleId: number; scope: string },
): Promise<Outcome<{ created: boolean; roleName: string }>> {
  return attempt(db, async (tx) => {
    const target = await loadSubject(tx, subject);
    const [role] = await tx.select().from(roles).where(eq(roles.id, input.roleId));
    if (!role) throw new Refusal("Choose a role.", "roleId");
    const inserted = await tx
      .insert(roleAssignments)
      .values({ roleId: role.id, scope: input.scope, ...subjectColumns(subject) })
      .onConflictDoNothing()
      .returning({ id: roleAssignments.id });
    if (inserted.length > 0) {
      await recordAudit(tx, actor, {
        action: "role_assignment.add",
        targetType: subject.type,
        targetId: subject.id,
        targetName: target.name,
        details: { role: role.name, scope: input.scope },
      });
    }
    return { created: inserted.length > 0, roleName: role.name };
  });
}

export async function removeAssignment(
  db: Db,
  actor: Actor,
  subject: Subject,
  assignmentId: number,
): Promise<Outcome<{ roleName: string; scope: string }>> {
  return attempt(db, async (tx) => {
    const target = await loadSubject(tx, subject);
    const owner =
      subject.type === "user"
        ? eq(roleAssignments.userId, subject.id)
        : eq(roleAssignments.groupId, subject.id);
    const [removed] = await tx
      .delete(roleAssignments)
      .where(and(eq(roleAssignments.id, assignmentId), owner))
      .returning();
    if (!removed) throw new Refusal("That role assignment no longer exists.");
    const [role] = await tx.select({ name: roles.name }).from(roles).where(eq(roles.id, removed.roleId));
    const roleName = role?.name ?? "the role";
    if (removed.scope === "") await ensureManagersRemain(tx, `Removing ${roleName} from ${target.name}`);
    await recordAudit(tx, actor, {
      action: "role_assignment.remove",
      targetType: subject.type,
      targetId: subject.id,
      targetName: target.name,
      details: { role: roleName, scope: removed.scope },
    });
    return { roleName, scope: removed.scope };
  });
}

export interface CopyResult {
  source: string;
  /** Assignments the source has directly. */
  copied: number;
  /** New assignments made, over all targets. */
  added: number;
  /** Assignments a target already had. */
  alreadyPresent: number;
  targets: number;
}

/**
 * Copies the role assignments a user or group has directly (not those it holds through groups)
 * onto users: adds the missing ones, never duplicates, never removes.
 */
export async function copyAssignments(
  db: Db,
  actor: Actor,
  source: Subject,
  targetUserIds: number[],
): Promise<Outcome<CopyResult>> {
  const targets = [...new Set(targetUserIds)].filter((id) => !(source.type === "user" && source.id === id));
  return attempt(db, async (tx) => {
    const from = await loadSubject(tx, source);
    if (targets.length === 0) throw new Refusal("Choose at least one user to copy to.", "to");
    const owner =
      source.type === "user" ? eq(roleAssignments.userId, source.id) : eq(roleAssignments.groupId, source.id);
    const assignments = await tx
      .select({ roleId: roleAssignments.roleId, scope: roleAssignments.scope, roleName: roles.name })
      .from(roleAssignments)
      .innerJoin(roles, eq(roles.id, roleAssignments.roleId))
      .where(owner);
    const found = await tx
      .select({ id: users.id, username: users.username })
      .from(users)
      .where(
        sql`${users.id} in (${sql.join(
          targets.map((id) => sql`${id}`),
          sql`, `,
        )})`,
      );
    if (found.length !== targets.length) throw new Refusal("One of the chosen users no longer exists.", "to");
    let added = 0;
    for (const target of found) {
      if (assignments.length === 0) break;
      const inserted = await tx
        .insert(roleAssignments)
        .values(
          assignments.map((a) => ({ roleId: a.roleId, scope: a.scope, userId: target.id, groupId: null })),
        )
        .onConflictDoNothing()
        .returning({ roleId: roleAssignments.roleId, scope: roleAssignments.scope });
      added += inserted.length;
      if (inserted.length > 0) {
        const names = new Map(assignments.map((a) => [`${a.roleId}:${a.scope}`, a.roleName]));
        await recordAudit(tx, actor, {
          action: "role_assignment.copy",
          targetType: "user",
          targetId: target.id,
          targetName: target.username,
          details: {
            from: `${source.type} ${from.name}`,
            added: inserted.map((i) => ({ role: names.get(`${i.roleId}:${i.scope}`), scope: i.scope })),
          },
        });
      }
    }
    return {
      source: from.name,
      copied: assignments.length,
      added,
      alreadyPresent: assignments.length * found.length - added,
      targets: found.length,
    };
  });
}

export interface RoleHolder {
  assignmentId: number;
  subject: Subject;
  name: string;
  scope: string;
}

/** The first `limit` users and groups a role is given to, and how many there are in all. */
export async function holdersOf(
  db: Db,
  roleId: number,
  limit = 100,
): Promise<{ holders: RoleHolder[]; total: number }> {
  const rows = await queryRows<{
    id: number;
    user_id: number | null;
    group_id: number | null;
    name: string;
    scope: string;
  }>(
    db,
    sql`select a.id, a.user_id, a.group_id, coalesce(u.username, g.name) as name, a.scope
        from role_assignments a
        left join users u on u.id = a.user_id
        left join groups g on g.id = a.group_id
        where a.role_id = ${roleId}
        order by coalesce(u.username_key, g.name_key), a.scope
        limit ${limit}`,
  );
  const [total] = await db
    .select({ n: count() })
    .from(roleAssignments)
    .where(eq(roleAssignments.roleId, roleId));
  return {
    holders: rows.map((r) => ({
      assignmentId: Number(r.id),
      subject:
        r.user_id !== null
          ? { type: "user", id: Number(r.user_id) }
          : { type: "group", id: Number(r.group_id) },
      name: r.name,
      scope: r.scope,
    })),
    total: Number(total?.n ?? 0),
  };
}

/** How many role assignments each user and group holds directly, keyed `user:12` / `group:3`. */
export async function assignmentCounts(db: Db, subjects: Subject[]): Promise<Map<string, number>> {
  const ids = (type: Subject["type"]) => subjects.filter((s) => s.type === type).map((s) => s.id);
  const list = (values: number[]) =>
    values.length > 0
      ? sql.join(
          values.map((v) => sql`${v}`),
          sql`, `,
        )
      : sql`null`;
  const rows = await queryRows<{ type: string; id: number; n: number }>(
    db,
    sql`select 'user' as type, user_id as id, count(*)::int as n from role_assignments
          where user_id in (${list(ids("user"))}) group by user_id
        union all
        select 'group', group_id, count(*)::int from role_assignments
          where group_id in (${list(ids("group"))}) group by group_id`,
  );
  return new Map(rows.map((r) => [`${r.type}:${Number(r.id)}`, Number(r.n)]));
}
