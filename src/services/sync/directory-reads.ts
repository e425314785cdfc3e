/**
 * The sync core's paged reads of a directory: the filter for what an administrator typed, the
 * searches that stream users and groups (all matches, or entries found again by stable id), and
 * which stable ids the directory still has. Used by import runs, the import search and the
 * console's Synchronize now.
 */
import { AndFilter, EqualityFilter, OrFilter } from "ldapts";
import type { DirectorySession, Entry } from "../../ldap/client.ts";
import { resolveBase } from "../../ldap/dn.ts";
import { type BuildFilterResult, buildSearchFilter, type Filter, parseFilter } from "../../ldap/filter.ts";
import {
  bufferAttributes,
  groupAttributes,
  guidToBytes,
  mapUser,
  memberAttributes,
  userAttributes,
} from "../../ldap/mapping.ts";
import type { DirectoryMapping } from "../../ldap/types.ts";
import type { EntryKind } from "./outcomes.ts";

/** Stable ids per `(|(entryUUID=…)…)` search when fetching chosen entries. */
const IDS_PER_SEARCH = 200;

/**
 * The filter for the search box: a raw filter (text starting with `(`) AND the directory's user or
 * group filter, or the escaped text matched on the mapped name attributes.
 */
export function importFilter(kind: EntryKind, text: string, mapping: DirectoryMapping): BuildFilterResult {
  return buildSearchFilter({
    text,
    attributes:
      kind === "user"
        ? [mapping.attrUsername, mapping.attrFullName, mapping.attrEmail]
        : [mapping.attrGroupName],
    objectFilter: kind === "user" ? mapping.userFilter : mapping.groupFilter,
  });
}

export interface SearchPlace {
  base: string;
  scope: "sub" | "one";
  attributes: string[];
}

export function placeOf(kind: EntryKind, session: DirectorySession, mapping: DirectoryMapping): SearchPlace {
  const baseDn = session.connection.baseDn;
  return kind === "user"
    ? {
        base: resolveBase(mapping.userBase, baseDn),
        scope: mapping.userScope,
        attributes: userAttributes(mapping),
      }
    : {
        base: resolveBase(mapping.groupBase, baseDn),
        scope: mapping.groupScope,
        attributes: groupAttributes(mapping),
      };
}

/** Group attributes without the member list: cheap to page through when only counting or listing. */
export function groupSummaryAttributes(mapping: DirectoryMapping): string[] {
  const members = new Set(memberAttributes(mapping).map((a) => a.name.toLowerCase()));
  return groupAttributes(mapping).filter((name) => !members.has(name.toLowerCase()));
}

export function searchEntries(
  session: DirectorySession,
  mapping: DirectoryMapping,
  kind: EntryKind,
  filter: Filter,
  options: { signal?: AbortSignal; attributes?: string[] } = {},
): AsyncIterable<Entry[]> {
  const place = placeOf(kind, session, mapping);
  return session.searchPages(place.base, filter, place.scope, options.attributes ?? place.attributes, {
    pageSize: mapping.pageSize,
    bufferAttributes: bufferAttributes(mapping),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * The chosen entries, found again by stable id (the DN may have changed since the search), a few
 * hundred per search. Entries that no longer exist are simply not returned.
 */
export async function* entriesByStableId(
  session: DirectorySession,
  mapping: DirectoryMapping,
  kind: EntryKind,
  externalIds: readonly string[],
  signal?: AbortSignal,
): AsyncGenerator<Entry[]> {
  const objectFilter = parseFilter(kind === "user" ? mapping.userFilter : mapping.groupFilter);
  if (!objectFilter.ok) throw new Error(`The directory's filter is invalid: ${objectFilter.message}`);
  for (let start = 0; start < externalIds.length; start += IDS_PER_SEARCH) {
    signal?.throwIfAborted();
    const chunk = externalIds.slice(start, start + IDS_PER_SEARCH);
    const terms = chunk.map(
      (id) => new EqualityFilter({ attribute: mapping.attrUniqueId, value: idValue(id, mapping) }),
    );
    const anyId = terms.length === 1 && terms[0] ? terms[0] : new OrFilter({ filters: terms });
    const filter = new AndFilter({ filters: [objectFilter.filter, anyId] });
    yield* searchEntries(session, mapping, kind, filter, signal ? { signal } : {});
  }
}

/** Which of these stable ids the directory has a user entry for (under its user filter). */
export async function userIdsInDirectory(
  session: DirectorySession,
  mapping: DirectoryMapping,
  externalIds: readonly string[],
  signal?: AbortSignal,
): Promise<Set<string>> {
  const found = new Set<string>();
  for await (const page of entriesByStableId(session, mapping, "user", externalIds, signal)) {
    for (const entry of page) {
      const mapped = mapUser(entry, mapping);
      const id = mapped.ok ? mapped.value.externalId : mapped.externalId;
      if (id !== undefined) found.add(id);
    }
  }
  return found;
}

/** objectGUID is matched on its 16 bytes; every other id (entryUUID, nsUniqueId, objectSid) as text. */
function idValue(externalId: string, mapping: DirectoryMapping): string | Buffer {
  if (mapping.attrUniqueId.toLowerCase() === "objectguid") {
    try {
      return guidToBytes(externalId);
    } catch {
      return externalId;
    }
  }
  return externalId;
}
