/**
 * The reads that find one directory entry again: by stable id, then DN, then username (or group
 * name), each restricted by the directory's filters, every value sent as a filter object (never
 * spliced into filter text). Used by Synchronize now, conversion and directory sign-in.
 */
import { type Entry, EqualityFilter } from "ldapts";
import type { DirectorySession } from "../../ldap/client.ts";
import { resolveBase, withinSearch } from "../../ldap/dn.ts";
import { DirectoryError } from "../../ldap/errors.ts";
import { andFilters, compileDirectoryFilter, type Filter } from "../../ldap/filter.ts";
import {
  bufferAttributes,
  groupAttributes,
  guidToBytes,
  mapGroup,
  mapUser,
  userAttributes,
} from "../../ldap/mapping.ts";
import type { DirectoryMapping, LdapGroup, LdapUser } from "../../ldap/types.ts";
import { nameKey } from "../names.ts";

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
  const objectFilter = compileDirectoryFilter(mapping.userFilter);
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
  // Only where the user search reaches: an entry elsewhere is not one of the directory's users.
  if (keys.dn && withinSearch(keys.dn, base, mapping.userScope)) {
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
  const objectFilter = compileDirectoryFilter(mapping.groupFilter);
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
  if (keys.dn && withinSearch(keys.dn, base, mapping.groupScope)) {
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
  map: (entry: Entry) => { ok: true; value: T } | { ok: false },
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
