/**
 * What importing one directory entry would do to Roster's store: the single place where "same
 * user", "conflict" and "what changes" are decided, used by the search results (the status column)
 * and by the import itself, so the two always agree.
 */
import { sameDnText } from "../../ldap/dn.ts";
import type { LdapGroup, LdapUser } from "../../ldap/types.ts";
import { nameKey, searchTextOf, userSearchText } from "../names.ts";

/** A user row as the import compares it. */
export interface StoredUser {
  id: number;
  kind: "internal" | "external";
  username: string;
  usernameKey: string;
  fullName: string;
  email: string;
  department: string;
  phone: string;
  enabled: boolean;
  /** Disabled by the directory, not by an administrator: the directory may enable it again. */
  disabledByDirectory: boolean;
  dn: string | null;
  directoryId: number | null;
  directoryName: string | null;
  externalId: string | null;
  missingInDirectory: boolean;
}

export interface StoredGroup {
  id: number;
  kind: "internal" | "external";
  name: string;
  nameKey: string;
  description: string;
  dn: string | null;
  directoryId: number | null;
  directoryName: string | null;
  externalId: string | null;
  missingInDirectory: boolean;
  /** The member list's fingerprint at the last import of the group's members (null: never). */
  memberListHash?: string | null;
}

/** The user row an entry should produce (synchronized fields only). */
export interface DesiredUser {
  username: string;
  usernameKey: string;
  fullName: string;
  email: string;
  department: string;
  phone: string;
  dn: string;
  externalId: string;
  enabled: boolean;
}

export interface DesiredGroup {
  name: string;
  nameKey: string;
  description: string;
  searchText: string;
  dn: string;
  externalId: string;
}

export type Decision<T> =
  | { action: "create" }
  | { action: "update"; target: T; changes: string[] }
  | { action: "unchanged"; target: T }
  | { action: "conflict"; reason: string };

export interface MatchContext {
  directoryId: number;
  /** True when this run already imported the entry with this stable id (another entry then owns the name). */
  importedInThisRun?: (externalId: string) => boolean;
  /**
   * True when the directory still has an entry with this stable id (see `relinkCandidates`): a user
   * of this directory found by username is then another person's, not this entry made again.
   */
  stillInDirectory?: (externalId: string) => boolean;
}

/**
 * The stable ids to look for in the directory before users found only by username are followed:
 * those of users of this directory whose entry may have been deleted and made again.
 */
export function relinkCandidates(
  entries: readonly { externalId: string; usernameKey: string }[],
  matches: { byId: ReadonlyMap<string, StoredUser>; byName: ReadonlyMap<string, StoredUser> },
  directoryId: number,
): string[] {
  const ids = new Set<string>();
  for (const entry of entries) {
    if (matches.byId.has(entry.externalId)) continue;
    const byName = matches.byName.get(entry.usernameKey);
    if (byName?.kind === "external" && byName.directoryId === directoryId && byName.externalId !== null)
      ids.add(byName.externalId);
  }
  return [...ids];
}

export function desiredUser(user: LdapUser): DesiredUser {
  const email = user.email ?? "";
  return {
    username: user.username,
    usernameKey: nameKey(user.username),
    fullName: user.fullName,
    email,
    department: user.department ?? "",
    phone: user.phone ?? "",
    dn: user.dn,
    externalId: user.externalId,
    enabled: !user.disabled,
  };
}

/** What the case-insensitive user search looks at: computed only for rows that are written. */
export function userSearch(user: Pick<DesiredUser, "username" | "fullName" | "email">): string {
  return userSearchText(user.username, user.fullName, user.email);
}

export function desiredGroup(group: LdapGroup): DesiredGroup {
  const description = group.description ?? "";
  return {
    name: group.name,
    nameKey: nameKey(group.name),
    description,
    searchText: searchTextOf(group.name, description),
    dn: group.dn,
    externalId: group.externalId,
  };
}

/**
 * Users are matched by the directory's stable id first, then by username (NFC, case-insensitive).
 * An internal user or an external user of this directory with the same username is the same person;
 * a user of another directory is never taken over.
 */
export function classifyUser(
  desired: DesiredUser,
  byId: StoredUser | null,
  byName: StoredUser | null,
  context: MatchContext,
): Decision<StoredUser> {
  if (byId) {
    if (byName && byName.id !== byId.id) {
      return {
        action: "conflict",
        reason: `Renamed to “${desired.username}” in the directory, but ${describeOwner(byName, "user", context)} already has that username.`,
      };
    }
    return compareUser(desired, byId);
  }
  if (!byName) return { action: "create" };
  if (byName.kind === "internal") return compareUser(desired, byName);
  if (byName.directoryId !== context.directoryId) {
    return {
      action: "conflict",
      reason: `The username belongs to ${describeOwner(byName, "user", context)}.`,
    };
  }
  // (byName's stable id is another entry's: the same id would have been found by id.)
  if (byName.externalId !== null && context.importedInThisRun?.(byName.externalId)) {
    return {
      action: "conflict",
      reason: `Another entry of this directory${byName.dn ? ` (${byName.dn})` : ""} has the same username.`,
    };
  }
  if (byName.externalId !== null && context.stillInDirectory?.(byName.externalId)) {
    return {
      action: "conflict",
      reason: `The username belongs to the user of another entry of this directory${byName.dn ? ` (${byName.dn})` : ""}, which is still there, perhaps renamed: import that entry first.`,
    };
  }
  // Same directory, same username, new stable id, and the old entry gone: it was made again; follow it.
  return compareUser(desired, byName);
}

export function classifyGroup(
  desired: DesiredGroup,
  byId: StoredGroup | null,
  byName: StoredGroup | null,
  context: MatchContext,
): Decision<StoredGroup> {
  if (byId) {
    if (byName && byName.id !== byId.id) {
      return {
        action: "conflict",
        reason: `Renamed to “${desired.name}” in the directory, but ${describeOwner(byName, "group", context)} already has that name.`,
      };
    }
    return compareGroup(desired, byId);
  }
  if (!byName) return { action: "create" };
  if (byName.kind === "internal" || byName.directoryId !== context.directoryId) {
    return { action: "conflict", reason: `The name belongs to ${describeOwner(byName, "group", context)}.` };
  }
  if (byName.externalId !== null && context.importedInThisRun?.(byName.externalId)) {
    return {
      action: "conflict",
      reason: `Another entry of this directory${byName.dn ? ` (${byName.dn})` : ""} has the same group name.`,
    };
  }
  return compareGroup(desired, byName);
}

/** The synchronized fields that differ, in words; an internal user keeps its username and stays internal. */
export function userChanges(desired: DesiredUser, stored: StoredUser): string[] {
  const changes: string[] = [];
  if (stored.kind === "external" && stored.username !== desired.username) changes.push("username");
  if (stored.fullName !== desired.fullName) changes.push("full name");
  if (stored.email !== desired.email) changes.push("email");
  if (stored.department !== desired.department) changes.push("department");
  if (stored.phone !== desired.phone) changes.push("phone");
  if (stored.kind === "external") {
    if (!sameDnText(stored.dn, desired.dn)) changes.push("DN");
    if (stored.externalId !== desired.externalId) changes.push("stable id");
    if (stored.missingInDirectory) changes.push("found in the directory again");
    const enabled = signInAfterSync(desired.enabled, stored);
    if (enabled.enabled !== stored.enabled) {
      changes.push(
        enabled.enabled
          ? "sign-in enabled (enabled in the directory)"
          : "sign-in disabled (disabled in the directory)",
      );
    }
  }
  return changes;
}

/**
 * Whether an external user can sign in after its entry is synchronized. An account disabled in the
 * directory can't sign in; the directory enabling it again enables it in Roster only when the
 * directory was what disabled it — an administrator's own "Disable sign-in" is never undone.
 */
export function signInAfterSync(
  enabledInDirectory: boolean,
  stored: Pick<StoredUser, "enabled" | "disabledByDirectory" | "missingInDirectory">,
): { enabled: boolean; disabledByDirectory: boolean } {
  if (!enabledInDirectory) {
    return stored.enabled
      ? { enabled: false, disabledByDirectory: true }
      : { enabled: false, disabledByDirectory: stored.disabledByDirectory };
  }
  if (!stored.enabled && stored.disabledByDirectory) return { enabled: true, disabledByDirectory: false };
  return { enabled: stored.enabled, disabledByDirectory: stored.disabledByDirectory };
}

export function groupChanges(desired: DesiredGroup, stored: StoredGroup): string[] {
  const changes: string[] = [];
  if (stored.name !== desired.name) changes.push("name");
  if (stored.description !== desired.description) changes.push("description");
  if (!sameDnText(stored.dn, desired.dn)) changes.push("DN");
  if (stored.externalId !== desired.externalId) changes.push("stable id");
  if (stored.missingInDirectory) changes.push("found in the directory again");
  return changes;
}

function compareUser(desired: DesiredUser, stored: StoredUser): Decision<StoredUser> {
  const changes = userChanges(desired, stored);
  return changes.length === 0
    ? { action: "unchanged", target: stored }
    : { action: "update", target: stored, changes };
}

function compareGroup(desired: DesiredGroup, stored: StoredGroup): Decision<StoredGroup> {
  const changes = groupChanges(desired, stored);
  return changes.length === 0
    ? { action: "unchanged", target: stored }
    : { action: "update", target: stored, changes };
}

function describeOwner(
  owner: StoredUser | StoredGroup,
  noun: "user" | "group",
  context: MatchContext,
): string {
  if (owner.kind === "internal") return `an internal ${noun} of Roster`;
  if (owner.directoryId === null) return `an external ${noun} whose directory was deleted`;
  if (owner.directoryId === context.directoryId) return `another ${noun} of this directory`;
  return `a ${noun} of the directory “${owner.directoryName ?? `#${owner.directoryId}`}”`;
}

/** “username, full name and email” */
export function listInWords(items: string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}
