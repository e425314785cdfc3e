/**
 * External users and groups: finding one entry in its directory, and writing directory entries
 * into Roster. Used by "Synchronize now", conversion, directory sign-in, and (through
 * upsertExternalUsers / synchronizeGroupTree) by imports.
 *
 * External users are keyed on (directory, stable id); the DN is only a cache, and the username is
 * compared case-insensitively and NFC-normalized (nameKey). A user of another directory is never
 * taken over.
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import { EqualityFilter } from "ldapts";
import type { Db } from "../db/client.ts";
import {
  directories,
  directoryDefaultRoles,
  groupMembers,
  groupSubgroups,
  groups,
  roleAssignments,
  users,
} from "../db/schema.ts";
import type { DirectorySession } from "../ldap/client.ts";
import { normalizeDn, resolveBase } from "../ldap/dn.ts";
import { DirectoryError } from "../ldap/errors.ts";
import { andFilters, type Filter, parseFilter } from "../ldap/filter.ts";
import {
  bufferAttributes,
  groupAttributes,
  guidToBytes,
  mapGroup,
  mapUser,
  userAttributes,
} from "../ldap/mapping.ts";
import { expandGroup } from "../ldap/members.ts";
import type { DirectoryMapping, LdapGroup, LdapUser } from "../ldap/types.ts";
import type { User } from "./auth.ts";
import { sameDn, signInAfterSync } from "./import/classify.ts";
import { userIdsInDirectory } from "./import/directory-search.ts";
import { nameKey, searchTextOf, userSearchText } from "./names.ts";

export type Group = typeof groups.$inferSelect;

// ——— Finding one entry ———————————————————————————————————————————————————————————————

/** What Roster knows about an entry: tried in this order. */
export interface EntryKeys {
  externalId?: string | null;
  dn?: string | null;
  username?: string | null;
}

export type FoundBy = "id" | "dn" | "username";

export type FindResult<T> =
  | { ok: true; entry: T; by: FoundBy }
  | { ok: false; reason: "missing" }
  | { ok: false; reason: "ambiguous"; count: number };

export interface FindOptions {
  /**
   * Accept only the entry whose stable id is `keys.externalId` (sign-in): the DN and username
   * then only help find it, so a new entry that reuses an old DN or username is never taken for
   * the old one.
   */
  strict?: boolean;
}

/**
 * The user entry with this stable id, else at this DN, else with this username — each search
 * restricted by the directory's user filter, every value sent as a filter object (never spliced
 * into filter text). Several entries with the username is `ambiguous`, not a guess.
 */
export async function findUserEntry(
  session: DirectorySession,
  mapping: DirectoryMapping,
  keys: EntryKeys,
  options: FindOptions = {},
): Promise<FindResult<LdapUser>> {
  const objectFilter = compile(mapping.userFilter);
  const base = resolveBase(mapping.userBase, session.connection.baseDn);
  const read = (searchBase: string, filter: Filter, scope: "sub" | "one" | "base") =>
    searchEntries(session, searchBase, filter, scope, userAttributes(mapping), mapping, (entry) =>
      mapUser(entry, mapping),
    );
  const accept = (user: LdapUser) => !options.strict || user.externalId === keys.externalId;
  // The DN names whoever holds it now: an entry there with another stable id and another username
  // (the old one deleted, a new person given its DN) is someone else, not this user moved.
  const samePerson = (user: LdapUser) =>
    !keys.externalId ||
    user.externalId === keys.externalId ||
    (!!keys.username && nameKey(user.username) === nameKey(keys.username));

  if (keys.externalId) {
    const idFilter = uniqueIdFilter(mapping.attrUniqueId, keys.externalId);
    if (idFilter) {
      const found = (await read(base, andFilters(objectFilter, idFilter), mapping.userScope)).filter(
        (u) => u.externalId === keys.externalId,
      );
      if (found[0]) return { ok: true, entry: found[0], by: "id" };
    }
  }
  if (keys.dn) {
    const [atDn] = await read(keys.dn, objectFilter, "base");
    if (atDn && accept(atDn) && samePerson(atDn)) return { ok: true, entry: atDn, by: "dn" };
  }
  if (keys.username) {
    const byName = andFilters(
      objectFilter,
      new EqualityFilter({ attribute: mapping.attrUsername, value: keys.username }),
    );
    const key = nameKey(keys.username);
    const found = (await read(base, byName, mapping.userScope)).filter((u) => nameKey(u.username) === key);
    if (found.length > 1) return { ok: false, reason: "ambiguous", count: found.length };
    if (found[0] && accept(found[0])) return { ok: true, entry: found[0], by: "username" };
  }
  return { ok: false, reason: "missing" };
}

/** The group entry with this stable id, else at this DN, else with this name. */
export async function findGroupEntry(
  session: DirectorySession,
  mapping: DirectoryMapping,
  keys: { externalId?: string | null; dn?: string | null; name?: string | null },
): Promise<FindResult<LdapGroup>> {
  const objectFilter = compile(mapping.groupFilter);
  const base = resolveBase(mapping.groupBase, session.connection.baseDn);
  const read = (searchBase: string, filter: Filter, scope: "sub" | "one" | "base") =>
    searchEntries(session, searchBase, filter, scope, groupAttributes(mapping), mapping, (entry) =>
      mapGroup(entry, mapping),
    );
  if (keys.externalId) {
    const idFilter = uniqueIdFilter(mapping.attrUniqueId, keys.externalId);
    if (idFilter) {
      const found = (await read(base, andFilters(objectFilter, idFilter), mapping.groupScope)).filter(
        (g) => g.externalId === keys.externalId,
      );
      if (found[0]) return { ok: true, entry: found[0], by: "id" };
    }
  }
  if (keys.dn) {
    const [atDn] = await read(keys.dn, objectFilter, "base");
    // As for users: another group given the old DN is not this group.
    const sameGroup =
      !keys.externalId ||
      atDn?.externalId === keys.externalId ||
      (!!keys.name && !!atDn && nameKey(atDn.name) === nameKey(keys.name));
    if (atDn && sameGroup) return { ok: true, entry: atDn, by: "dn" };
  }
  if (keys.name) {
    const byName = andFilters(
      objectFilter,
      new EqualityFilter({ attribute: mapping.attrGroupName, value: keys.name }),
    );
    const key = nameKey(keys.name);
    const found = (await read(base, byName, mapping.groupScope)).filter((g) => nameKey(g.name) === key);
    if (found.length > 1) return { ok: false, reason: "ambiguous", count: found.length };
    if (found[0]) return { ok: true, entry: found[0], by: "username" };
  }
  return { ok: false, reason: "missing" };
}

/**
 * An equality filter on the unique-id attribute. objectGUID is matched on its 16 bytes; objectSid
 * (kept as S-1-5-…) can't be turned back into a filter here, so such entries are found by DN.
 */
function uniqueIdFilter(attribute: string, externalId: string): Filter | null {
  const name = attribute.toLowerCase();
  if (name === "objectsid") return null;
  if (name === "objectguid") {
    try {
      return new EqualityFilter({ attribute, value: guidToBytes(externalId) });
    } catch {
      return null;
    }
  }
  return new EqualityFilter({ attribute, value: externalId });
}

async function searchEntries<T>(
  session: DirectorySession,
  base: string,
  filter: Filter,
  scope: "sub" | "one" | "base",
  attributes: string[],
  mapping: DirectoryMapping,
  map: (entry: import("ldapts").Entry) => { ok: true; value: T } | { ok: false },
): Promise<T[]> {
  const found: T[] = [];
  try {
    const options = { pageSize: mapping.pageSize, bufferAttributes: bufferAttributes(mapping) };
    for await (const page of session.searchPages(base, filter, scope, attributes, options)) {
      for (const entry of page) {
        const mapped = map(entry);
        if (mapped.ok) found.push(mapped.value);
      }
    }
  } catch (err) {
    // A base that no longer exists (the DN of a deleted entry) simply holds nothing.
    if (err instanceof DirectoryError && err.classified.ldapCode === 32) return [];
    throw err;
  }
  return found;
}

function compile(filter: string): Filter {
  const parsed = parseFilter(filter);
  if (parsed.ok) return parsed.filter;
  throw new DirectoryError({
    kind: "protocol",
    message: `The directory's filter is invalid: ${parsed.message}`,
    detail: `filter: ${filter}`,
  });
}

// ——— Writing users ———————————————————————————————————————————————————————————————————

export type UserChange = [from: unknown, to: unknown];

export type UpsertOutcome =
  | { outcome: "created" | "updated" | "unchanged"; user: User; changes: Record<string, UserChange> }
  | {
      outcome: "conflict";
      entry: LdapUser;
      reason: string;
      /** The internal user with the entry's username, when that is why (it stays internal). */
      internalUser?: User;
    };

export interface UpsertOptions {
  /**
   * An internal user with the entry's username: link it (it becomes external, keeps its roles, loses
   * its Roster password) instead of reporting a conflict.
   */
  linkInternal?: boolean;
  /** Record the time of this synchronization even on users that did not change (default true). */
  touchUnchanged?: boolean;
  now?: Date;
  /**
   * Which of these stable ids the directory still has: a user of this directory found only by
   * username, whose own entry is still there (renamed), is another person's and is not relinked.
   * Without it such a user is taken to be the entry deleted and made again.
   */
  findInDirectory?: (externalIds: string[]) => Promise<ReadonlySet<string>>;
}

/** The synced columns an entry determines. */
function syncedValues(entry: LdapUser) {
  const email = entry.email ?? "";
  return {
    username: entry.username,
    usernameKey: nameKey(entry.username),
    fullName: entry.fullName,
    email,
    department: entry.department ?? "",
    phone: entry.phone ?? "",
    searchText: userSearchText(entry.username, entry.fullName, email),
    dn: entry.dn,
  };
}

const SYNCED_FIELDS = ["username", "fullName", "email", "department", "phone", "dn"] as const;

/** Field-by-field differences between a user and its entry (the DN compared parsed, not as text). */
export function entryChanges(user: User, entry: LdapUser): Record<string, UserChange> {
  const next = syncedValues(entry);
  const changes: Record<string, UserChange> = {};
  for (const field of SYNCED_FIELDS) {
    const same = field === "dn" ? sameDn(user.dn, next.dn) : user[field] === next[field];
    if (!same) changes[field] = [user[field], next[field]];
  }
  if (user.externalId !== entry.externalId) changes.externalId = [user.externalId, entry.externalId];
  const signIn = signInAfterSync(!entry.disabled, user);
  if (signIn.enabled !== user.enabled) changes.enabled = [user.enabled, signIn.enabled];
  if (user.missingInDirectory) changes.missingInDirectory = [true, false];
  return changes;
}

/**
 * Writes directory entries into Roster as external users of `directoryId`, in one transaction:
 * the user with the entry's stable id is updated; else a user with its username is relinked
 * (same directory), linked (internal, with `linkInternal`) or reported as a conflict; else a user is
 * created, with the directory's default role assignments. Returns one outcome per entry, in order.
 */
export async function upsertExternalUsers(
  db: Db,
  directoryId: number,
  entries: LdapUser[],
  options: UpsertOptions = {},
): Promise<UpsertOutcome[]> {
  if (entries.length === 0) return [];
  const now = options.now ?? new Date();
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const ids = [...new Set(entries.map((e) => e.externalId))];
    const keys = [...new Set(entries.map((e) => nameKey(e.username)))];
    const byId = new Map(
      (
        await tx
          .select()
          .from(users)
          .where(and(eq(users.directoryId, directoryId), inArray(users.externalId, ids)))
          .for("update")
      ).map((u) => [u.externalId, u]),
    );
    const byName = new Map(
      (await tx.select().from(users).where(inArray(users.usernameKey, keys)).for("update")).map((u) => [
        u.usernameKey,
        u,
      ]),
    );
    const directoryNames = await directoryNamesOf(tx);
    const relinked = entries.flatMap((entry) => {
      const holder = byId.has(entry.externalId) ? undefined : byName.get(nameKey(entry.username));
      return holder?.kind === "external" && holder.directoryId === directoryId && holder.externalId !== null
        ? [holder.externalId]
        : [];
    });
    const stillThere =
      relinked.length > 0 && options.findInDirectory
        ? await options.findInDirectory(relinked)
        : new Set<string>();
    const outcomes: UpsertOutcome[] = [];
    const toCreate: { index: number; entry: LdapUser }[] = [];
    const claimedKeys = new Set<string>();
    for (const [index, entry] of entries.entries()) {
      const key = nameKey(entry.username);
      const existing = byId.get(entry.externalId) ?? byName.get(key);
      if (claimedKeys.has(key)) {
        outcomes[index] = {
          outcome: "conflict",
          entry,
          reason: "Another entry in this run has the same username.",
        };
        continue;
      }
      claimedKeys.add(key);
      if (!existing) {
        toCreate.push({ index, entry });
        continue;
      }
      const holder = byName.get(key);
      if (holder && holder.id !== existing.id) {
        outcomes[index] = {
          outcome: "conflict",
          entry,
          reason: `The username ${entry.username} belongs to another user.`,
        };
        continue;
      }
      if (
        existing.externalId !== entry.externalId &&
        existing.externalId !== null &&
        stillThere.has(existing.externalId)
      ) {
        outcomes[index] = {
          outcome: "conflict",
          entry,
          reason: `The username ${entry.username} belongs to the user of another entry of this directory, which is still there, perhaps renamed.`,
        };
        continue;
      }
      const refusal = linkRefusal(existing, directoryId, options, directoryNames);
      if (refusal) {
        outcomes[index] = {
          outcome: "conflict",
          entry,
          reason: refusal,
          ...(existing.kind === "internal" ? { internalUser: existing } : {}),
        };
        continue;
      }
      outcomes[index] = await applyEntry(tx, existing, directoryId, entry, options, now);
    }
    if (toCreate.length > 0) {
      const created = await tx
        .insert(users)
        .values(
          toCreate.map(({ entry }) => ({
            kind: "external" as const,
            ...syncedValues(entry),
            enabled: !entry.disabled,
            disabledByDirectory: entry.disabled,
            directoryId,
            externalId: entry.externalId,
            lastSyncedAt: now,
          })),
        )
        .returning();
      await giveDefaultRoles(
        tx,
        directoryId,
        created.map((u) => u.id),
      );
      created.forEach((user, i) => {
        const slot = toCreate[i];
        if (slot) outcomes[slot.index] = { outcome: "created", user, changes: {} };
      });
    }
    return outcomes;
  });
}

/** Why the entry may not be written onto this user, or null. */
function linkRefusal(
  user: User,
  directoryId: number,
  options: UpsertOptions,
  directoryNames: Map<number, string>,
): string | null {
  if (user.kind === "internal") {
    return options.linkInternal ? null : `An internal user named ${user.username} already exists.`;
  }
  if (user.directoryId !== directoryId) {
    const other =
      user.directoryId === null
        ? "a deleted directory"
        : (directoryNames.get(user.directoryId) ?? "another directory");
    return `${user.username} is an external user of ${other}; Roster doesn't take over another directory's users.`;
  }
  // Same directory: found by stable id, or by username when the entry was deleted and made again.
  return null;
}

async function applyEntry(
  tx: Db,
  user: User,
  directoryId: number,
  entry: LdapUser,
  options: UpsertOptions,
  now: Date,
): Promise<UpsertOutcome> {
  const changes = entryChanges(user, entry);
  const linking = user.kind === "internal" || user.directoryId !== directoryId;
  if (linking) changes.kind = [user.kind, "external"];
  if (Object.keys(changes).length === 0) {
    if (options.touchUnchanged === false) return { outcome: "unchanged", user, changes };
    const [touched] = await tx
      .update(users)
      .set({ lastSyncedAt: now })
      .where(eq(users.id, user.id))
      .returning();
    return { outcome: "unchanged", user: touched ?? user, changes };
  }
  const [updated] = await tx
    .update(users)
    .set({
      ...syncedValues(entry),
      kind: "external",
      directoryId,
      externalId: entry.externalId,
      ...(linking ? { passwordHash: null } : {}),
      ...signInAfterSync(!entry.disabled, user),
      missingInDirectory: false,
      lastSyncedAt: now,
      updatedAt: now,
    })
    .where(eq(users.id, user.id))
    .returning();
  if (!updated) throw new Error("update returned no row");
  return { outcome: "updated", user: updated, changes };
}

/** The directory's default role assignments, for users it has just created. */
async function giveDefaultRoles(tx: Db, directoryId: number, userIds: number[]): Promise<void> {
  if (userIds.length === 0) return;
  const defaults = await tx
    .select()
    .from(directoryDefaultRoles)
    .where(eq(directoryDefaultRoles.directoryId, directoryId));
  if (defaults.length === 0) return;
  await tx
    .insert(roleAssignments)
    .values(
      userIds.flatMap((userId) =>
        defaults.map((d) => ({ roleId: d.roleId, scope: d.scope, userId, groupId: null })),
      ),
    )
    .onConflictDoNothing();
}

async function directoryNamesOf(tx: Db): Promise<Map<number, string>> {
  const rows = await tx.select({ id: directories.id, name: directories.name }).from(directories);
  return new Map(rows.map((r) => [r.id, r.name]));
}

/** One entry onto one user (see upsertExternalUsers). */
export async function upsertExternalUser(
  db: Db,
  directoryId: number,
  entry: LdapUser,
  options: UpsertOptions = {},
): Promise<UpsertOutcome> {
  const [outcome] = await upsertExternalUsers(db, directoryId, [entry], options);
  if (!outcome) throw new Error("upsert returned no outcome");
  return outcome;
}

/**
 * An external user whose entry is gone: disabled (never deleted), its roles kept, and marked so
 * the console can say why. Returns false when it was marked already. When the entry comes back
 * enabled, the user is enabled again — unless an administrator had disabled it.
 */
export async function markUserMissing(db: Db, userId: number, now = new Date()): Promise<boolean> {
  const updated = await db
    .update(users)
    .set({
      missingInDirectory: true,
      enabled: false,
      disabledByDirectory: sql`${users.disabledByDirectory} or ${users.enabled}`,
      lastSyncedAt: now,
      updatedAt: now,
    })
    .where(and(eq(users.id, userId), sql`not (${users.missingInDirectory} and not ${users.enabled})`))
    .returning({ id: users.id });
  return updated.length > 0;
}

// ——— Writing groups ——————————————————————————————————————————————————————————————————

export interface GroupTreeResult {
  /** The group the tree starts at. */
  group: Group;
  groups: { created: number; updated: number; unchanged: number };
  users: { created: number; updated: number; unchanged: number };
  conflicts: { name: string; reason: string }[];
  /** Member values that are neither a user nor a group under the directory's filters. */
  unresolved: number;
  membersAdded: number;
  membersRemoved: number;
}

/**
 * Reads a group and every group nested in it (cycles end: members.ts keeps a visited set), writes
 * the groups and their users as external ones, and makes each group's direct members and
 * subgroups in Roster exactly those in the directory. Users in conflict are reported and left out.
 */
export async function synchronizeGroupTree(
  db: Db,
  session: DirectorySession,
  mapping: DirectoryMapping,
  directoryId: number,
  root: LdapGroup,
  now = new Date(),
): Promise<GroupTreeResult> {
  const result: GroupTreeResult = {
    group: undefined as unknown as Group,
    groups: { created: 0, updated: 0, unchanged: 0 },
    users: { created: 0, updated: 0, unchanged: 0 },
    conflicts: [],
    unresolved: 0,
    membersAdded: 0,
    membersRemoved: 0,
  };
  const rootGroup = await upsertExternalGroup(db, directoryId, root, now, result);
  if (!rootGroup)
    throw new Error(`The group ${root.name} could not be written: ${result.conflicts[0]?.reason ?? ""}`);
  result.group = rootGroup;
  const groupIds = new Map<string, number>([[dnKey(root.dn), rootGroup.id]]);
  const members = new Map<number, { users: Set<number>; groups: Set<number> }>([
    [rootGroup.id, { users: new Set(), groups: new Set() }],
  ]);
  /** Group id → the fingerprint of the member list read for it. */
  const memberLists = new Map<number, string>();
  for await (const batch of expandGroup(session, root.dn, mapping)) {
    const parentId = groupIds.get(dnKey(batch.groupDn));
    if (parentId === undefined) continue;
    const parent = members.get(parentId) ?? { users: new Set<number>(), groups: new Set<number>() };
    members.set(parentId, parent);
    if (batch.memberHash !== undefined) memberLists.set(parentId, batch.memberHash);
    result.unresolved += batch.unresolved.length;
    const outcomes = await upsertExternalUsers(db, directoryId, batch.users, {
      now,
      findInDirectory: (ids) => userIdsInDirectory(session, mapping, ids),
    });
    for (const outcome of outcomes) {
      // An internal user with a member's username is that member, as an import has it: it stays
      // internal and keeps its membership (and the roles that come with the group).
      if (outcome.outcome === "conflict" && outcome.internalUser) {
        parent.users.add(outcome.internalUser.id);
        continue;
      }
      if (outcome.outcome === "conflict") {
        result.conflicts.push({ name: outcome.entry.username, reason: outcome.reason });
        continue;
      }
      result.users[outcome.outcome] += 1;
      parent.users.add(outcome.user.id);
    }
    for (const subgroup of batch.groups) {
      const key = dnKey(subgroup.dn);
      let id = groupIds.get(key);
      if (id === undefined) {
        const written = await upsertExternalGroup(db, directoryId, subgroup, now, result);
        if (!written) continue;
        id = written.id;
        groupIds.set(key, id);
        if (!members.has(id)) members.set(id, { users: new Set(), groups: new Set() });
      }
      if (id !== parentId) parent.groups.add(id);
    }
  }
  for (const [groupId, wanted] of members) {
    const changed = await replaceMembership(db, groupId, wanted);
    result.membersAdded += changed.added;
    result.membersRemoved += changed.removed;
    const hash = memberLists.get(groupId);
    if (hash !== undefined)
      await db.update(groups).set({ memberListHash: hash }).where(eq(groups.id, groupId));
  }
  return result;
}

function dnKey(dn: string): string {
  try {
    return normalizeDn(dn);
  } catch {
    return dn;
  }
}

async function upsertExternalGroup(
  db: Db,
  directoryId: number,
  entry: LdapGroup,
  now: Date,
  result: GroupTreeResult,
): Promise<Group | null> {
  const values = {
    name: entry.name,
    nameKey: nameKey(entry.name),
    description: entry.description ?? "",
    searchText: searchTextOf(entry.name, entry.description),
    dn: entry.dn,
    externalId: entry.externalId,
    directoryId,
    kind: "external" as const,
    missingInDirectory: false,
    lastSyncedAt: now,
  };
  const [existing] = await db
    .select()
    .from(groups)
    .where(and(eq(groups.directoryId, directoryId), eq(groups.externalId, entry.externalId)));
  const [sameName] = existing
    ? [existing]
    : await db.select().from(groups).where(eq(groups.nameKey, values.nameKey));
  const target =
    existing ??
    (sameName?.kind === "external" && sameName.directoryId === directoryId ? sameName : undefined);
  if (!target && sameName) {
    // An internal group, or another directory's, has this name: keep both apart with a suffix.
    values.name = `${entry.name} (${entry.externalId.slice(0, 8)})`;
    values.nameKey = nameKey(values.name);
  }
  if (!target) {
    const [created] = await db.insert(groups).values(values).onConflictDoNothing().returning();
    if (created) {
      result.groups.created += 1;
      return created;
    }
    result.conflicts.push({ name: entry.name, reason: "Another group already has this name." });
    return null;
  }
  const unchanged =
    target.name === values.name &&
    target.description === values.description &&
    target.externalId === values.externalId &&
    sameDn(target.dn, values.dn) &&
    !target.missingInDirectory;
  const [updated] = await db
    .update(groups)
    .set(unchanged ? { lastSyncedAt: now } : { ...values, updatedAt: now })
    .where(eq(groups.id, target.id))
    .returning();
  result.groups[unchanged ? "unchanged" : "updated"] += 1;
  return updated ?? target;
}

/** Makes a group's direct members and subgroups exactly these. */
async function replaceMembership(
  db: Db,
  groupId: number,
  wanted: { users: Set<number>; groups: Set<number> },
): Promise<{ added: number; removed: number }> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const userIds = [...wanted.users];
    const childIds = [...wanted.groups];
    const removedUsers = await tx
      .delete(groupMembers)
      .where(
        and(
          eq(groupMembers.groupId, groupId),
          userIds.length > 0
            ? sql`${groupMembers.userId} not in (${sql.join(
                userIds.map((id) => sql`${id}`),
                sql`, `,
              )})`
            : undefined,
        ),
      )
      .returning();
    const removedGroups = await tx
      .delete(groupSubgroups)
      .where(
        and(
          eq(groupSubgroups.parentId, groupId),
          childIds.length > 0
            ? sql`${groupSubgroups.childId} not in (${sql.join(
                childIds.map((id) => sql`${id}`),
                sql`, `,
              )})`
            : undefined,
        ),
      )
      .returning();
    let added = 0;
    for (let i = 0; i < userIds.length; i += 1000) {
      const chunk = userIds.slice(i, i + 1000);
      const inserted = await tx
        .insert(groupMembers)
        .values(chunk.map((userId) => ({ groupId, userId })))
        .onConflictDoNothing()
        .returning();
      added += inserted.length;
    }
    if (childIds.length > 0) {
      const inserted = await tx
        .insert(groupSubgroups)
        .values(childIds.map((childId) => ({ parentId: groupId, childId })))
        .onConflictDoNothing()
        .returning();
      added += inserted.length;
    }
    return { added, removed: removedUsers.length + removedGroups.length };
  });
}

/** An external group whose entry is gone: marked, its members and roles kept. */
export async function markGroupMissing(db: Db, groupId: number, now = new Date()): Promise<void> {
  await db
    .update(groups)
    .set({ missingInDirectory: true, lastSyncedAt: now, updatedAt: now })
    .where(eq(groups.id, groupId));
}
