/**
 * The import page's search: every match is paged through (so the total is exact past any server
 * size limit), only the requested window of rows is kept, and each kept row says what importing it
 * would do compared with Roster's store.
 */
import type { Db } from "../../db/client.ts";
import type { DirectorySession, Entry } from "../../ldap/client.ts";
import type { Filter } from "../../ldap/filter.ts";
import { mapGroup, mapUser } from "../../ldap/mapping.ts";
import { memberSummary } from "../../ldap/members.ts";
import type { DirectoryMapping } from "../../ldap/types.ts";
import { type Directory, mappingOf } from "../directories.ts";
import { type DirectorySessionDeps, withStoredDirectory } from "../directory-session.ts";
import {
  classifyGroup,
  classifyUser,
  type Decision,
  desiredGroup,
  desiredUser,
  relinkCandidates,
  type StoredGroup,
} from "../sync/decide.ts";
import {
  groupSummaryAttributes,
  importFilter,
  searchEntries,
  userIdsInDirectory,
} from "../sync/directory-reads.ts";
import { lookupGroups, lookupUsers } from "../sync/store.ts";
import { mapLimited } from "./stream.ts";
import type { EntryKind, ImportKind } from "./types.ts";

export type RowStatus =
  | { kind: "new" }
  | { kind: "update"; changes: string[] }
  | { kind: "unchanged" }
  | { kind: "conflict"; reason: string }
  | { kind: "invalid"; reason: string };

export interface ResultRow {
  /** `user:<stable id>` or `group:<stable id>`: what a checkbox selects. */
  key: string;
  kind: EntryKind;
  externalId: string;
  dn: string;
  /** Username or group name. */
  name: string;
  fullName: string;
  email: string;
  memberCount: number | null;
  status: RowStatus;
}

export type SearchPlan =
  | {
      ok: true;
      text: string;
      kind: ImportKind;
      user: Filter | null;
      group: Filter | null;
      rawFilter: boolean;
    }
  | { ok: false; message: string };

/** Checks what was typed before anything is sent to the directory. */
export function planSearch(mapping: DirectoryMapping, text: string, kind: ImportKind): SearchPlan {
  const trimmed = text.trim();
  const wanted = (k: EntryKind) => kind === "both" || (k === "user" ? kind === "users" : kind === "groups");
  const build = (k: EntryKind) => {
    if (!wanted(k)) return { ok: true as const, filter: null };
    const built = importFilter(k, trimmed, mapping);
    return built.ok ? { ok: true as const, filter: built.filter } : built;
  };
  const user = build("user");
  if (!user.ok) return { ok: false, message: filterMessage(trimmed, user.message) };
  const group = build("group");
  if (!group.ok) return { ok: false, message: filterMessage(trimmed, group.message) };
  return {
    ok: true,
    text: trimmed,
    kind,
    user: user.filter,
    group: group.filter,
    rawFilter: trimmed.startsWith("("),
  };
}

function filterMessage(text: string, message: string): string {
  return text.startsWith("(") ? `The LDAP filter is not valid: ${message}` : message;
}

export interface SearchWindow {
  offset: number;
  limit: number;
}

export interface SearchResults {
  total: number;
  users: number;
  groups: number;
  rows: ResultRow[];
}

export async function runSearch(
  db: Db,
  session: DirectorySession,
  mapping: DirectoryMapping,
  directoryId: number,
  plan: Extract<SearchPlan, { ok: true }>,
  window: SearchWindow,
): Promise<SearchResults> {
  const kept: { kind: EntryKind; entry: Entry }[] = [];
  let seen = 0;
  const keep = (kind: EntryKind, entries: Entry[]) => {
    for (const entry of entries) {
      if (seen >= window.offset && seen < window.offset + window.limit) kept.push({ kind, entry });
      seen += 1;
    }
  };
  let users = 0;
  if (plan.user) {
    for await (const page of searchEntries(session, mapping, "user", plan.user)) {
      keep("user", page);
      users += page.length;
    }
  }
  let groups = 0;
  if (plan.group) {
    // Member lists can be huge: page through names only, and count the members of the rows shown.
    const attributes = groupSummaryAttributes(mapping);
    for await (const page of searchEntries(session, mapping, "group", plan.group, { attributes })) {
      keep("group", page);
      groups += page.length;
    }
  }
  const rows = await describeRows(db, session, mapping, directoryId, kept);
  return { total: users + groups, users, groups, rows };
}

async function describeRows(
  db: Db,
  session: DirectorySession,
  mapping: DirectoryMapping,
  directoryId: number,
  kept: { kind: EntryKind; entry: Entry }[],
): Promise<ResultRow[]> {
  const mappedUsers = kept
    .filter((k) => k.kind === "user")
    .map((k) => ({ entry: k.entry, mapped: mapUser(k.entry, mapping) }));
  const mappedGroups = kept
    .filter((k) => k.kind === "group")
    .map((k) => ({ entry: k.entry, mapped: mapGroup(k.entry, mapping) }));
  const desiredUsers = mappedUsers.flatMap((m) => (m.mapped.ok ? [desiredUser(m.mapped.value)] : []));
  const desiredGroups = mappedGroups.flatMap((m) => (m.mapped.ok ? [desiredGroup(m.mapped.value)] : []));
  const userMatches = await lookupUsers(db, directoryId, desiredUsers);
  const groupMatches = await lookupGroups(db, directoryId, desiredGroups);
  const candidates = relinkCandidates(desiredUsers, userMatches, directoryId);
  const present = candidates.length > 0 ? await userIdsInDirectory(session, mapping, candidates) : new Set();
  const context = { directoryId, stillInDirectory: (id: string) => present.has(id) };
  const memberLists = await mapLimited(mappedGroups, 4, async (m) =>
    m.mapped.ok ? memberSummary(session, m.mapped.value.dn, mapping) : null,
  );

  const rows: ResultRow[] = [];
  // Two matches with one username (or group name): an import takes the first and skips the next.
  const firstNamed = new Map<string, string>();
  const sameName = (key: string, dn: string, noun: string): Decision<never> | null => {
    const first = firstNamed.get(key);
    if (first === undefined) {
      firstNamed.set(key, dn);
      return null;
    }
    return { action: "conflict", reason: `Another entry of this directory (${first}) has the same ${noun}.` };
  };
  for (const { entry, mapped } of mappedUsers) {
    if (!mapped.ok) {
      rows.push(invalidRow("user", entry, mapped.reason));
      continue;
    }
    const desired = desiredUser(mapped.value);
    const decision =
      sameName(`user:${desired.usernameKey}`, desired.dn, "username") ??
      classifyUser(
        desired,
        userMatches.byId.get(desired.externalId) ?? null,
        userMatches.byName.get(desired.usernameKey) ?? null,
        context,
      );
    rows.push({
      key: `user:${desired.externalId}`,
      kind: "user",
      externalId: desired.externalId,
      dn: desired.dn,
      name: desired.username,
      fullName: desired.fullName,
      email: desired.email,
      memberCount: null,
      status: statusOf(decision),
    });
  }
  mappedGroups.forEach(({ entry, mapped }, index) => {
    if (!mapped.ok) {
      rows.push(invalidRow("group", entry, mapped.reason));
      return;
    }
    const desired = desiredGroup(mapped.value);
    const decision =
      sameName(`group:${desired.nameKey}`, desired.dn, "group name") ??
      withMemberChanges(
        classifyGroup(
          desired,
          groupMatches.byId.get(desired.externalId) ?? null,
          groupMatches.byName.get(desired.nameKey) ?? null,
          context,
        ),
        memberLists[index]?.hash ?? null,
      );
    rows.push({
      key: `group:${desired.externalId}`,
      kind: "group",
      externalId: desired.externalId,
      dn: desired.dn,
      name: desired.name,
      fullName: desired.description,
      email: "",
      memberCount: memberLists[index]?.count ?? null,
      status: statusOf(decision),
    });
  });
  return rows;
}

/**
 * A group whose member list differs from the one its members were last imported from: importing
 * it again adds or removes members. (Not known for a group imported before Roster kept the list's
 * fingerprint: it is not flagged until imported once more.)
 */
function withMemberChanges(
  decision: Decision<StoredGroup>,
  currentHash: string | null,
): Decision<StoredGroup> {
  if (decision.action !== "unchanged" && decision.action !== "update") return decision;
  const stored = decision.target.memberListHash ?? null;
  if (currentHash === null || stored === null || stored === currentHash) return decision;
  const changes = decision.action === "update" ? decision.changes : [];
  return { action: "update", target: decision.target, changes: [...changes, "members"] };
}

function statusOf<T>(decision: Decision<T>): RowStatus {
  switch (decision.action) {
    case "create":
      return { kind: "new" };
    case "update":
      return { kind: "update", changes: decision.changes };
    case "unchanged":
      return { kind: "unchanged" };
    case "conflict":
      return { kind: "conflict", reason: decision.reason };
  }
}

function invalidRow(kind: EntryKind, entry: Entry, reason: string): ResultRow {
  return {
    key: `${kind}:invalid:${entry.dn}`,
    kind,
    externalId: "",
    dn: entry.dn,
    name: entry.dn,
    fullName: "",
    email: "",
    memberCount: null,
    status: { kind: "invalid", reason },
  };
}

export type DirectorySearchOutcome =
  | { ok: true; results: SearchResults }
  /** `field`: the message belongs beside the search field (the query is malformed). */
  | { ok: false; message: string; field: boolean };

/**
 * The import page's search of a stored directory: opens it, plans the query (typed text or a raw
 * filter), reads the window of rows asked for, and says in words what failed when something did.
 */
export async function searchDirectory(
  deps: DirectorySessionDeps,
  directory: Directory,
  text: string,
  kind: ImportKind,
  window: SearchWindow,
): Promise<DirectorySearchOutcome> {
  // A malformed query is refused before the directory is contacted.
  const plan = planSearch(mappingOf(directory), text, kind);
  if (!plan.ok) return { ok: false, message: plan.message, field: true };
  const done = await withStoredDirectory(deps, directory, (session, { mapping }) =>
    runSearch(deps.db, session, mapping, directory.id, plan, window),
  );
  if (done.ok) return { ok: true, results: done.value };
  if (done.problem === "deleted")
    return { ok: false, message: "That directory does not exist any more.", field: false };
  if (done.problem === "secret") return { ok: false, message: done.message, field: false };
  return {
    ok: false,
    message: `Roster could not search ${directory.name}: ${done.error.message}`,
    field: false,
  };
}
