/**
 * What a synchronization takes away — users whose entries are gone (disabled and marked missing,
 * never deleted), groups gone (marked missing), memberships the directory no longer lists — and
 * the safety guard in front of it. Removals are collected while the run reads and applied at its
 * end in one transaction, only when the evidence is sound: a directory that answered with nothing,
 * or removals beyond the directory's threshold, hold them for an administrator to review.
 */
import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { handledByRun, idsCondition, intArray, textArray } from "./store.ts";

export type RemovalChange = "disable_user" | "group_missing" | "remove_member" | "remove_subgroup";

export interface RemovalCounts {
  disableUser: number;
  groupMissing: number;
  removeMember: number;
  removeSubgroup: number;
}

export function totalRemovals(counts: RemovalCounts): number {
  return counts.disableUser + counts.groupMissing + counts.removeMember + counts.removeSubgroup;
}

/** The members and subgroups a group has in Roster that its directory entry no longer lists. */
export async function collectMembershipRemovals(
  tx: Db,
  runId: number,
  groupId: number,
  keepUserIds: Iterable<number>,
  keepGroupIds: Iterable<number>,
): Promise<void> {
  const keptMembers = await idsCondition(tx, sql`m.user_id`, keepUserIds, "kept_members");
  await tx.execute(
    sql`insert into sync_removals (run_id, change, group_id, user_id)
        select ${runId}, 'remove_member', m.group_id, m.user_id from group_members m
        where m.group_id = ${groupId} and not ${keptMembers}
          and not exists (select 1 from sync_removals r where r.run_id = ${runId}
                          and r.change = 'remove_member' and r.group_id = m.group_id and r.user_id = m.user_id)`,
  );
  await tx.execute(
    sql`insert into sync_removals (run_id, change, group_id, child_id)
        select ${runId}, 'remove_subgroup', s.parent_id, s.child_id from group_subgroups s
        where s.parent_id = ${groupId} and not (s.child_id = any(${intArray(keepGroupIds)}::int[]))
          and not exists (select 1 from sync_removals r where r.run_id = ${runId}
                          and r.change = 'remove_subgroup' and r.group_id = s.parent_id and r.child_id = s.child_id)`,
  );
}

/**
 * Of the members and subgroups a group has in Roster, these (the ones its directory entry no longer
 * lists, found by comparing the two lists): collected for removal. For a large group with a few
 * leaving, this names the few instead of the thousands staying.
 */
export async function collectNamedRemovals(
  tx: Db,
  runId: number,
  groupId: number,
  userIds: readonly number[],
  childIds: readonly number[],
): Promise<void> {
  if (userIds.length > 0) {
    await tx.execute(
      sql`insert into sync_removals (run_id, change, group_id, user_id)
          select ${runId}, 'remove_member', m.group_id, m.user_id from group_members m
          where m.group_id = ${groupId} and m.user_id = any(${intArray(userIds)}::int[])
            and not exists (select 1 from sync_removals r where r.run_id = ${runId}
                            and r.change = 'remove_member' and r.group_id = m.group_id and r.user_id = m.user_id)`,
    );
  }
  if (childIds.length > 0) {
    await tx.execute(
      sql`insert into sync_removals (run_id, change, group_id, child_id)
          select ${runId}, 'remove_subgroup', s.parent_id, s.child_id from group_subgroups s
          where s.parent_id = ${groupId} and s.child_id = any(${intArray(childIds)}::int[])
            and not exists (select 1 from sync_removals r where r.run_id = ${runId}
                            and r.change = 'remove_subgroup' and r.group_id = s.parent_id and r.child_id = s.child_id)`,
    );
  }
}

/** Users an incremental run found gone (looked up by stable id, not found): to be disabled. */
export async function collectGoneUsers(
  tx: Db,
  runId: number,
  directoryId: number,
  externalIds: readonly string[],
): Promise<void> {
  if (externalIds.length === 0) return;
  await tx.execute(
    sql`insert into sync_removals (run_id, change, user_id)
        select ${runId}, 'disable_user', u.id from users u
        where u.directory_id = ${directoryId} and u.external_id = any(${textArray(externalIds)}::text[])
          and u.kind = 'external' and not (u.missing_in_directory and not u.enabled)
          and not exists (select 1 from sync_removals r where r.run_id = ${runId}
                          and r.change = 'disable_user' and r.user_id = u.id)`,
  );
}

/** Groups an incremental run found deleted (Active Directory's tombstones): to be marked missing. */
export async function collectGoneGroups(
  tx: Db,
  runId: number,
  directoryId: number,
  externalIds: readonly string[],
): Promise<void> {
  if (externalIds.length === 0) return;
  await tx.execute(
    sql`insert into sync_removals (run_id, change, group_id)
        select ${runId}, 'group_missing', g.id from groups g
        where g.directory_id = ${directoryId} and g.external_id = any(${textArray(externalIds)}::text[])
          and not g.missing_in_directory
          and not exists (select 1 from sync_removals r where r.run_id = ${runId}
                          and r.change = 'group_missing' and r.group_id = g.id)`,
  );
}

/**
 * The directory's users and groups in Roster that the run did not meet (its checkpoint lists every
 * entry it handled): their entries are gone, or no longer match the directory's filters.
 */
export async function collectMissing(tx: Db, runId: number, directoryId: number): Promise<void> {
  await tx.execute(
    sql`delete from sync_removals where run_id = ${runId} and change in ('disable_user', 'group_missing')`,
  );
  // Both sides are as large as the directory, and the statistics of either may be missing (the
  // checkpoint was just written; the users just imported): a nested loop over them took 19 s at
  // 20,000 users. A hash anti-join takes milliseconds whatever the estimates say.
  await tx.execute(sql`set local enable_nestloop = off`);
  await tx.execute(
    sql`with met as materialized (
          select unnest(keys) as key from import_run_handled where run_id = ${runId} and kind = 'present'
        )
        insert into sync_removals (run_id, change, user_id)
        select ${runId}, 'disable_user', u.id from users u
        where u.directory_id = ${directoryId} and u.kind = 'external'
          and not (u.missing_in_directory and not u.enabled)
          and not ${handledByRun(runId)}
          and not exists (select 1 from met where met.key = u.external_id)`,
  );
  await tx.execute(
    sql`insert into sync_removals (run_id, change, group_id)
        select ${runId}, 'group_missing', g.id from groups g
        where g.directory_id = ${directoryId} and not g.missing_in_directory
          and not exists (select 1 from import_run_groups h
                          where h.run_id = ${runId} and h.external_id = g.external_id)`,
  );
  await tx.execute(sql`set local enable_nestloop = on`);
}

export async function countRemovals(db: Db, runId: number): Promise<RemovalCounts> {
  const rows = await queryRows<{ change: RemovalChange; n: number }>(
    db,
    sql`select change, count(*)::int as n from sync_removals where run_id = ${runId} group by change`,
  );
  const of = (change: RemovalChange) => Number(rows.find((r) => r.change === change)?.n ?? 0);
  return {
    disableUser: of("disable_user"),
    groupMissing: of("group_missing"),
    removeMember: of("remove_member"),
    removeSubgroup: of("remove_subgroup"),
  };
}

export interface GuardInput {
  removals: RemovalCounts;
  /** The directory's users in Roster (not already missing) when the run began. */
  usersHeld: number;
  /** User entries the directory returned (imported or not); null when the run did not read them all. */
  usersRead: number | null;
  percent: number;
  minimum: number;
}

/** Why the removals must wait for a person, or null when they may be applied. */
export function guardVerdict(input: GuardInput): string | null {
  const total = totalRemovals(input.removals);
  if (total === 0) return null;
  if (input.usersRead === 0 && input.usersHeld > 0) {
    return `The directory returned no users at all, while Roster holds ${plural(input.usersHeld, "user")} of it: that looks like a bad answer (a wrong base or filter, a bind account without read access), not everyone leaving.`;
  }
  const threshold = Math.max(input.minimum, Math.ceil((input.usersHeld * input.percent) / 100));
  if (total <= threshold) return null;
  return `This synchronization would ${describeRemovals(input.removals)}: more than the directory's limit of ${threshold.toLocaleString("en-US")} (${input.percent}% of its ${plural(input.usersHeld, "user")} in Roster, at least ${input.minimum.toLocaleString("en-US")}).`;
}

export function describeRemovals(counts: RemovalCounts): string {
  const parts = [
    counts.disableUser > 0 ? `disable ${plural(counts.disableUser, "user")}` : "",
    counts.groupMissing > 0 ? `mark ${plural(counts.groupMissing, "group")} missing` : "",
    counts.removeMember > 0 ? `remove ${plural(counts.removeMember, "membership")}` : "",
    counts.removeSubgroup > 0 ? `remove ${plural(counts.removeSubgroup, "subgroup link")}` : "",
  ].filter(Boolean);
  if (parts.length <= 1) return parts[0] ?? "remove nothing";
  return `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}`;
}

/**
 * Applies the run's removals and lists each one in its report. Only what still holds is changed (a
 * user marked missing meanwhile, a membership already gone are passed over), so applying twice
 * changes nothing the second time. Returns how many users and groups it changed (the run's
 * "updated" count grows by them).
 */
export async function applyRemovals(tx: Db, runId: number): Promise<{ updated: number; lines: number }> {
  const [users] = await queryRows<{ n: number }>(
    tx,
    sql`with changed as (
          update users u set missing_in_directory = true, enabled = false,
                 disabled_by_directory = u.disabled_by_directory or u.enabled,
                 last_synced_at = now(), updated_at = now()
          from sync_removals r
          where r.run_id = ${runId} and r.change = 'disable_user' and r.user_id = u.id
            and not (u.missing_in_directory and not u.enabled)
          returning u.username, coalesce(u.dn, '') as dn
        ), listed as (
          insert into import_run_entries (run_id, outcome, entry_kind, name, dn, reason)
          select ${runId}, 'updated', 'user', username, dn,
                 'Disabled and marked missing: its entry is no longer in the directory (or no longer matches the directory''s user filter). Its roles are kept.'
          from changed returning 1
        )
        select count(*)::int as n from listed`,
  );
  const [groups] = await queryRows<{ n: number }>(
    tx,
    sql`with changed as (
          update groups g set missing_in_directory = true, last_synced_at = now(), updated_at = now()
          from sync_removals r
          where r.run_id = ${runId} and r.change = 'group_missing' and r.group_id = g.id
            and not g.missing_in_directory
          returning g.name, coalesce(g.dn, '') as dn
        ), listed as (
          insert into import_run_entries (run_id, outcome, entry_kind, name, dn, reason)
          select ${runId}, 'updated', 'group', name, dn,
                 'Marked missing: its entry is no longer in the directory (or no longer matches the directory''s group filter). Its members and roles are kept.'
          from changed returning 1
        )
        select count(*)::int as n from listed`,
  );
  const [members] = await queryRows<{ n: number }>(
    tx,
    sql`with removed as (
          delete from group_members m using sync_removals r
          where r.run_id = ${runId} and r.change = 'remove_member'
            and m.group_id = r.group_id and m.user_id = r.user_id
          returning m.group_id, m.user_id
        ), listed as (
          insert into import_run_entries (run_id, outcome, entry_kind, name, dn, reason)
          select ${runId}, 'updated', 'user', u.username, coalesce(u.dn, ''),
                 'Removed from the group ' || g.name || ': the directory no longer lists it as a member.'
          from removed x join users u on u.id = x.user_id join groups g on g.id = x.group_id
          returning 1
        )
        select count(*)::int as n from listed`,
  );
  const [subgroups] = await queryRows<{ n: number }>(
    tx,
    sql`with removed as (
          delete from group_subgroups s using sync_removals r
          where r.run_id = ${runId} and r.change = 'remove_subgroup'
            and s.parent_id = r.group_id and s.child_id = r.child_id
          returning s.parent_id, s.child_id
        ), listed as (
          insert into import_run_entries (run_id, outcome, entry_kind, name, dn, reason)
          select ${runId}, 'updated', 'group', c.name, coalesce(c.dn, ''),
                 'Removed from the group ' || p.name || ': the directory no longer lists it as a subgroup.'
          from removed x join groups c on c.id = x.child_id join groups p on p.id = x.parent_id
          returning 1
        )
        select count(*)::int as n from listed`,
  );
  const updated = Number(users?.n ?? 0) + Number(groups?.n ?? 0);
  return { updated, lines: updated + Number(members?.n ?? 0) + Number(subgroups?.n ?? 0) };
}

export interface HeldRemoval {
  change: RemovalChange;
  name: string;
  dn: string;
  /** The group a member or subgroup would leave. */
  groupName: string | null;
}

/** A page of what a held synchronization would remove, for its review. */
export async function listRemovals(
  db: Db,
  runId: number,
  options: { limit: number; offset: number },
): Promise<HeldRemoval[]> {
  const rows = await queryRows<{
    change: RemovalChange;
    name: string;
    dn: string;
    group_name: string | null;
  }>(
    db,
    sql`select r.change,
               coalesce(u.username, c.name, g.name, '') as name,
               coalesce(u.dn, c.dn, g.dn, '') as dn,
               case when r.change in ('remove_member', 'remove_subgroup') then g.name end as group_name
        from sync_removals r
        left join users u on u.id = r.user_id
        left join groups g on g.id = r.group_id
        left join groups c on c.id = r.child_id
        where r.run_id = ${runId}
        order by r.change, r.id
        limit ${options.limit} offset ${options.offset}`,
  );
  return rows.map((r) => ({ change: r.change, name: r.name, dn: r.dn, groupName: r.group_name }));
}

function plural(n: number, noun: string): string {
  return `${n.toLocaleString("en-US")} ${noun}${n === 1 ? "" : "s"}`;
}
