/**
 * Synchronize now on a group: the group, every group nested in it and all their members, written
 * with the same batched writes and rules as an import of the group (a name held by another group
 * or user is a conflict, reported; an internal user with a member's username is that member and
 * stays internal), and each group's direct members and subgroups made exactly the directory's.
 */
import type { Db } from "../../db/client.ts";
import type { DirectorySession } from "../../ldap/client.ts";
import { tryNormalizeDn } from "../../ldap/dn.ts";
import { expandGroup } from "../../ldap/members.ts";
import type { DirectoryMapping, LdapGroup } from "../../ldap/types.ts";
import { type GroupDetails, getGroup } from "../groups.ts";
import { userIdsInDirectory } from "./directory-reads.ts";
import type { BatchResult, UpsertContext } from "./write.ts";
import {
  handledIn,
  linkMembers,
  pruneMembers,
  rememberMemberList,
  upsertGroups,
  upsertUsers,
} from "./write.ts";

export interface GroupTreeResult {
  /** The group the tree starts at. */
  group: GroupDetails;
  groups: { created: number; updated: number; unchanged: number };
  users: { created: number; updated: number; unchanged: number };
  conflicts: { name: string; reason: string }[];
  /** Member values that are neither a user nor a group under the directory's filters. */
  unresolved: number;
  membersAdded: number;
  membersRemoved: number;
}

export type GroupTreeOutcome = { ok: true; tree: GroupTreeResult } | { ok: false; reason: string };

interface Wanted {
  users: Set<number>;
  groups: Set<number>;
  memberHash?: string;
}

export async function syncGroupTree(
  db: Db,
  session: DirectorySession,
  mapping: DirectoryMapping,
  directoryId: number,
  root: LdapGroup,
): Promise<GroupTreeOutcome> {
  const importedUsers = new Map<string, number | null>();
  const importedGroups = new Map<string, number | null>();
  const context: UpsertContext = {
    directoryId,
    handledUsers: handledIn(importedUsers),
    importedGroups,
    copyRolesFrom: null,
    findInDirectory: (ids) => userIdsInDirectory(session, mapping, ids),
  };
  const tree = {
    groups: { created: 0, updated: 0, unchanged: 0 },
    users: { created: 0, updated: 0, unchanged: 0 },
    conflicts: [] as { name: string; reason: string }[],
    unresolved: 0,
    membersAdded: 0,
    membersRemoved: 0,
  };
  /** Normalized DN of each group written → its id. */
  const groupIds = new Map<string, number>();
  const wanted = new Map<number, Wanted>();

  const writeGroups = async (tx: Db, entries: LdapGroup[]) => {
    const written = await upsertGroups(tx, context, entries);
    for (const entry of entries) {
      const id = written.ids.get(entry.externalId) ?? importedGroups.get(entry.externalId) ?? null;
      if (id !== null) groupIds.set(dnKey(entry.dn), id);
    }
    for (const decision of written.decisions.values()) {
      tree.groups[decision.outcome] += 1;
      if (!wanted.has(decision.id)) wanted.set(decision.id, { users: new Set(), groups: new Set() });
    }
    noteConflicts(written);
    mergeIds(importedGroups, written.ids);
  };
  const noteConflicts = (result: BatchResult) => {
    for (const entry of result.entries) {
      if (entry.outcome === "skipped" || entry.outcome === "failed")
        tree.conflicts.push({ name: entry.name, reason: entry.reason });
    }
  };

  await db.transaction((tx) => writeGroups(tx as unknown as Db, [root]));
  const rootId = groupIds.get(dnKey(root.dn));
  if (rootId === undefined) {
    return { ok: false, reason: tree.conflicts[0]?.reason ?? `The group ${root.name} could not be written.` };
  }

  for await (const batch of expandGroup(session, root.dn, mapping)) {
    const parentId = groupIds.get(dnKey(batch.groupDn));
    if (parentId === undefined) continue; // a nested group in conflict: its members are not read into it
    const parent = wanted.get(parentId) ?? { users: new Set<number>(), groups: new Set<number>() };
    wanted.set(parentId, parent);
    if (batch.memberHash !== undefined) parent.memberHash = batch.memberHash;
    tree.unresolved += batch.unresolved.length;
    await db.transaction(async (txRaw) => {
      const tx = txRaw as unknown as Db;
      const written = await upsertUsers(tx, context, batch.users);
      tree.users.created += written.counts.created;
      tree.users.updated += written.counts.updated;
      tree.users.unchanged += written.counts.unchanged;
      noteConflicts(written);
      mergeIds(importedUsers, written.ids);
      if (batch.groups.length > 0) await writeGroups(tx, batch.groups);
      const memberIds = batch.users.flatMap((u) => idOf(importedUsers, u.externalId));
      const childIds = batch.groups.flatMap((g) => idOf(importedGroups, g.externalId));
      for (const id of memberIds) parent.users.add(id);
      for (const id of childIds) if (id !== parentId) parent.groups.add(id);
      const linked = await linkMembers(tx, parentId, memberIds, childIds);
      tree.membersAdded += linked.membersAdded + linked.subgroupsAdded;
    });
  }

  // Only now is every member known: what the directory no longer lists leaves each group.
  await db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    for (const [groupId, members] of wanted) {
      const pruned = await pruneMembers(tx, groupId, members.users, members.groups);
      tree.membersRemoved += pruned.membersRemoved + pruned.subgroupsRemoved;
      if (members.memberHash !== undefined) await rememberMemberList(tx, groupId, members.memberHash);
    }
  });
  const group = await getGroup(db, rootId);
  if (!group) return { ok: false, reason: "The group was deleted while it was synchronized." };
  return { ok: true, tree: { group, ...tree } };
}

function dnKey(dn: string): string {
  return tryNormalizeDn(dn) ?? dn;
}

function idOf(ids: ReadonlyMap<string, number | null>, externalId: string): number[] {
  const id = ids.get(externalId);
  return id === undefined || id === null ? [] : [id];
}

function mergeIds(target: Map<string, number | null>, source: ReadonlyMap<string, number | null>): void {
  for (const [key, id] of source) target.set(key, id);
}
