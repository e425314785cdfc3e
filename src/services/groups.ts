import { and, asc, count, eq, gt, inArray, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { directories, groupMembers, groupSubgroups, groups, users } from "../db/schema.ts";
import { type Actor, recordAudit } from "./audit.ts";
import { attempt, ensureManagersRemain, isUniqueViolation, type Outcome, Refusal } from "./guards.ts";
import { nameKey, normalizeName, searchTextOf } from "./names.ts";
import { changesBetween } from "./roles.ts";

export type Group = typeof groups.$inferSelect;

export interface GroupDetails extends Group {
  directoryName: string | null;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const CONTROL = /[\u0000-\u001f\u007f-\u009f\p{Cf}]/u;

/** Why a group name can't be used, or null. Spaces and most punctuation are fine in group names. */
export function groupNameProblem(name: string): string | null {
  const normalized = normalizeName(name);
  if (normalized === "") return "Enter a name.";
  if (normalized.length > 100) return "Use at most 100 characters.";
  if (CONTROL.test(normalized)) return "Group names can't contain control characters.";
  return null;
}

export async function getGroup(db: Db, id: number): Promise<GroupDetails | null> {
  const [row] = await db
    .select({ group: groups, directoryName: directories.name })
    .from(groups)
    .leftJoin(directories, eq(directories.id, groups.directoryId))
    .where(eq(groups.id, id));
  return row ? { ...row.group, directoryName: row.directoryName } : null;
}

export interface GroupInput {
  name: string;
  description: string;
}

const NAME_TAKEN = "Another group already has this name.";

export async function createInternalGroup(db: Db, actor: Actor, input: GroupInput): Promise<Outcome<Group>> {
  const name = normalizeName(input.name);
  const description = input.description.trim();
  return attempt(db, async (tx) => {
    await refuseTakenName(tx, name, null);
    const [group] = await tx
      .insert(groups)
      .values({
        kind: "internal",
        name,
        nameKey: nameKey(name),
        description,
        searchText: searchTextOf(name, description),
      })
      .returning();
    if (!group) throw new Error("insert returned no row");
    await recordAudit(tx, actor, {
      action: "group.create",
      targetType: "group",
      targetId: group.id,
      targetName: name,
    });
    return group;
  }).catch(nameTakenOnRace<Group>);
}

export async function updateGroup(
  db: Db,
  actor: Actor,
  id: number,
  input: GroupInput,
): Promise<Outcome<Group>> {
  const name = normalizeName(input.name);
  const description = input.description.trim();
  return attempt(db, async (tx) => {
    const before = await lockGroup(tx, id);
    if (before.kind !== "internal")
      throw new Refusal("An external group's name and description come from the directory.");
    await refuseTakenName(tx, name, id);
    const [group] = await tx
      .update(groups)
      .set({
        name,
        nameKey: nameKey(name),
        description,
        searchText: searchTextOf(name, description),
        updatedAt: new Date(),
      })
      .where(eq(groups.id, id))
      .returning();
    if (!group) throw new Error("update returned no row");
    const changes = changesBetween(before, group, ["name", "description"]);
    if (Object.keys(changes).length > 0) {
      await recordAudit(tx, actor, {
        action: "group.update",
        targetType: "group",
        targetId: id,
        targetName: group.name,
        details: { changes },
      });
    }
    return group;
  }).catch(nameTakenOnRace<Group>);
}

async function refuseTakenName(tx: Db, name: string, exceptId: number | null): Promise<void> {
  const [taken] = await tx
    .select({ id: groups.id })
    .from(groups)
    .where(eq(groups.nameKey, nameKey(name)));
  if (taken && taken.id !== exceptId) throw new Refusal(NAME_TAKEN, "name");
}

function nameTakenOnRace<T>(err: unknown): Outcome<T> {
  if (isUniqueViolation(err)) return { ok: false, field: "name", message: NAME_TAKEN };
  throw err;
}

async function lockGroup(tx: Db, id: number): Promise<Group> {
  const [group] = await tx.select().from(groups).where(eq(groups.id, id)).for("update");
  if (!group) throw new Refusal("This group no longer exists.");
  return group;
}

function refuseExternalMembership(group: Group): void {
  if (group.kind === "external") {
    throw new Refusal(`The members of ${group.name} come from its directory: synchronize the group instead.`);
  }
}

export interface Member {
  id: number;
  username: string;
  usernameKey: string;
  fullName: string;
  kind: "internal" | "external";
  enabled: boolean;
}

export const MEMBERS_PAGE_SIZE = 50;

/** One page of a group's direct members in username order, after the given username key. */
export async function membersOf(
  db: Db,
  groupId: number,
  options: { after?: string | null; limit?: number } = {},
): Promise<{ members: Member[]; next: string | null; total: number }> {
  const limit = options.limit ?? MEMBERS_PAGE_SIZE;
  const rows = await db
    .select({
      id: users.id,
      username: users.username,
      usernameKey: users.usernameKey,
      fullName: users.fullName,
      kind: users.kind,
      enabled: users.enabled,
    })
    .from(groupMembers)
    .innerJoin(users, eq(users.id, groupMembers.userId))
    .where(
      and(
        eq(groupMembers.groupId, groupId),
        options.after ? gt(users.usernameKey, options.after) : undefined,
      ),
    )
    .orderBy(asc(users.usernameKey))
    .limit(limit + 1);
  const [total] = await db.select({ n: count() }).from(groupMembers).where(eq(groupMembers.groupId, groupId));
  const members = rows.slice(0, limit);
  return {
    members,
    next: rows.length > limit ? (members[members.length - 1]?.usernameKey ?? null) : null,
    total: Number(total?.n ?? 0),
  };
}

export interface GroupRef {
  id: number;
  name: string;
  kind: "internal" | "external";
}

export async function subgroupsOf(db: Db, groupId: number): Promise<GroupRef[]> {
  return db
    .select({ id: groups.id, name: groups.name, kind: groups.kind })
    .from(groupSubgroups)
    .innerJoin(groups, eq(groups.id, groupSubgroups.childId))
    .where(eq(groupSubgroups.parentId, groupId))
    .orderBy(asc(groups.nameKey));
}

export async function parentsOf(db: Db, groupId: number): Promise<GroupRef[]> {
  return db
    .select({ id: groups.id, name: groups.name, kind: groups.kind })
    .from(groupSubgroups)
    .innerJoin(groups, eq(groups.id, groupSubgroups.parentId))
    .where(eq(groupSubgroups.childId, groupId))
    .orderBy(asc(groups.nameKey));
}

export async function groupsByIds(db: Db, ids: number[]): Promise<GroupRef[]> {
  const unique = [...new Set(ids)].filter((id) => Number.isSafeInteger(id));
  if (unique.length === 0) return [];
  return db
    .select({ id: groups.id, name: groups.name, kind: groups.kind })
    .from(groups)
    .where(inArray(groups.id, unique))
    .orderBy(asc(groups.nameKey));
}

/** Adds users to an internal group; those already in it are reported, not added twice. */
export async function addMembers(
  db: Db,
  actor: Actor,
  groupId: number,
  userIds: number[],
): Promise<Outcome<{ group: Group; added: string[]; already: string[] }>> {
  const unique = [...new Set(userIds)];
  return attempt(db, async (tx) => {
    const group = await lockGroup(tx, groupId);
    refuseExternalMembership(group);
    if (unique.length === 0) throw new Refusal("Choose at least one user.", "user");
    const found = await tx
      .select({ id: users.id, username: users.username })
      .from(users)
      .where(inArray(users.id, unique))
      .orderBy(asc(users.usernameKey));
    if (found.length !== unique.length)
      throw new Refusal("One of the chosen users no longer exists.", "user");
    const inserted = await tx
      .insert(groupMembers)
      .values(found.map((u) => ({ groupId, userId: u.id })))
      .onConflictDoNothing()
      .returning({ userId: groupMembers.userId });
    const addedIds = new Set(inserted.map((r) => r.userId));
    const added = found.filter((u) => addedIds.has(u.id));
    for (const user of added) {
      await recordAudit(tx, actor, {
        action: "group.member_add",
        targetType: "group",
        targetId: group.id,
        targetName: group.name,
        details: { user: user.username, userId: user.id },
      });
    }
    return {
      group,
      added: added.map((u) => u.username),
      already: found.filter((u) => !addedIds.has(u.id)).map((u) => u.username),
    };
  });
}

export async function removeMember(
  db: Db,
  actor: Actor,
  groupId: number,
  userId: number,
): Promise<Outcome<{ group: Group; username: string }>> {
  return attempt(db, async (tx) => {
    const group = await lockGroup(tx, groupId);
    refuseExternalMembership(group);
    const [removed] = await tx
      .delete(groupMembers)
      .where(and(eq(groupMembers.groupId, groupId), eq(groupMembers.userId, userId)))
      .returning();
    if (!removed) throw new Refusal("That user is no longer a member of this group.");
    const [user] = await tx.select({ username: users.username }).from(users).where(eq(users.id, userId));
    const username = user?.username ?? `user ${userId}`;
    await ensureManagersRemain(tx, `Removing ${username} from ${group.name}`);
    await recordAudit(tx, actor, {
      action: "group.member_remove",
      targetType: "group",
      targetId: group.id,
      targetName: group.name,
      details: { user: username, userId },
    });
    return { group, username };
  });
}

/**
 * Makes `childId` a subgroup of an internal group: its members then hold the parent's roles.
 * Refuses a group that contains the parent already (directly or further down), which would make a
 * cycle.
 */
export async function addSubgroup(
  db: Db,
  actor: Actor,
  parentId: number,
  childId: number,
): Promise<Outcome<{ group: Group; subgroup: string; created: boolean }>> {
  return attempt(db, async (tx) => {
    const group = await lockGroup(tx, parentId);
    refuseExternalMembership(group);
    const [child] = await tx.select().from(groups).where(eq(groups.id, childId));
    if (!child) throw new Refusal("Choose a group.", "subgroup");
    if (child.id === group.id) throw new Refusal("A group can't be a subgroup of itself.", "subgroup");
    const [cycle] = await queryRows<{ found: boolean }>(
      tx,
      sql`with recursive below(id) as (
            select child_id from group_subgroups where parent_id = ${child.id}
            union
            select s.child_id from group_subgroups s join below b on s.parent_id = b.id
          )
          select exists (select 1 from below where id = ${group.id}) as found`,
    );
    if (cycle?.found) {
      throw new Refusal(
        `${child.name} already contains ${group.name}, so it can't also be inside it.`,
        "subgroup",
      );
    }
    const inserted = await tx
      .insert(groupSubgroups)
      .values({ parentId: group.id, childId: child.id })
      .onConflictDoNothing()
      .returning();
    if (inserted.length > 0) {
      await recordAudit(tx, actor, {
        action: "group.subgroup_add",
        targetType: "group",
        targetId: group.id,
        targetName: group.name,
        details: { subgroup: child.name, subgroupId: child.id },
      });
    }
    return { group, subgroup: child.name, created: inserted.length > 0 };
  });
}

export async function removeSubgroup(
  db: Db,
  actor: Actor,
  parentId: number,
  childId: number,
): Promise<Outcome<{ group: Group; subgroup: string }>> {
  return attempt(db, async (tx) => {
    const group = await lockGroup(tx, parentId);
    refuseExternalMembership(group);
    const [removed] = await tx
      .delete(groupSubgroups)
      .where(and(eq(groupSubgroups.parentId, parentId), eq(groupSubgroups.childId, childId)))
      .returning();
    if (!removed) throw new Refusal("That group is no longer a subgroup of this one.");
    const [child] = await tx.select({ name: groups.name }).from(groups).where(eq(groups.id, childId));
    const subgroup = child?.name ?? `group ${childId}`;
    await ensureManagersRemain(tx, `Removing ${subgroup} from ${group.name}`);
    await recordAudit(tx, actor, {
      action: "group.subgroup_remove",
      targetType: "group",
      targetId: group.id,
      targetName: group.name,
      details: { subgroup, subgroupId: childId },
    });
    return { group, subgroup };
  });
}
