/**
 * Batched writes of an import: a few statements per batch of directory entries, never one per user.
 * Every function here runs inside the batch's transaction and returns what it did; the caller
 * commits, then remembers the ids (a rolled-back batch leaves nothing behind to forget).
 */
import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { sameDnText } from "../../ldap/dn.ts";
import type { LdapGroup, LdapUser } from "../../ldap/types.ts";
import { isUniqueViolation } from "../guards.ts";
import {
  classifyGroup,
  classifyUser,
  type Decision,
  type DesiredGroup,
  type DesiredUser,
  desiredGroup,
  desiredUser,
  listInWords,
  relinkCandidates,
  type StoredGroup,
  type StoredUser,
  signInAfterSync,
  userSearch,
} from "./decide.ts";
import { emptyCounts, type OutcomeCounts, type ReportedEntry, type RoleSource } from "./outcomes.ts";
import {
  boolArray,
  idsCondition,
  intArray,
  jsonRows,
  lookupGroups,
  lookupUsers,
  textArray,
} from "./store.ts";

/** Rounds of lookup → write for rows another run inserted between our lookup and our insert. */
const MAX_ROUNDS = 4;

export interface UpsertContext {
  directoryId: number;
  /**
   * Of these stable ids, those this run has already handled, with the row each became (null:
   * skipped). Asked once per batch (and for the few users a relink would take a name from): a run
   * keeps that set in the database, not in memory (see `handledIn` for a small one that is).
   */
  handledUsers: (externalIds: readonly string[]) => Promise<ReadonlyMap<string, number | null>>;
  /**
   * The batch's entries can't have been handled by this run yet (its first reading of users, which
   * meets each entry once): the batch's own question is not asked. A relink still asks.
   */
  firstMeeting?: boolean;
  importedGroups: ReadonlyMap<string, number | null>;
  /** Users of this run's other batches being written now: their names are taken too. */
  usersInFlight?: ReadonlySet<string>;
  copyRolesFrom: RoleSource | null;
  /**
   * Which of these stable ids the directory still has. Asked only for users of this directory found
   * by username with another stable id (rare): when the old entry is still there, the user is
   * another person's (renamed), not this entry deleted and made again.
   */
  findInDirectory?: (externalIds: string[]) => Promise<ReadonlySet<string>>;
  /**
   * Insert first, look up only what the insert left out: the right order when most entries are new
   * (a first import), where the lookup would find nothing at twice the cost. An insert succeeds
   * exactly when no user has the entry's stable id or username, which is classifyUser's "create".
   */
  insertFirst?: boolean;
  /**
   * A synchronization: only entries imported from the directory before (found by stable id) are
   * refreshed; the others are not its business and are left out (BatchResult.leftOut). Decided on
   * the lookup the upsert makes anyway, not a query of its own.
   */
  existingOnly?: boolean;
  /**
   * Conversion of an internal user to an external one: an internal user with the entry's username
   * is linked to the entry (it becomes external, keeps its roles and groups, loses its Roster
   * password). Without it such a user is synchronized and stays internal.
   */
  convertInternal?: boolean;
}

/** `UpsertContext.handledUsers` over a map in memory (a group tree, one entry: a few ids). */
export function handledIn(handled: ReadonlyMap<string, number | null>): UpsertContext["handledUsers"] {
  return async (externalIds) => {
    const found = new Map<string, number | null>();
    for (const id of externalIds) if (handled.has(id)) found.set(id, handled.get(id) ?? null);
    return found;
  };
}

export interface BatchResult {
  counts: OutcomeCounts;
  /** Stable id → Roster id for every entry now in Roster; null for entries skipped. */
  ids: Map<string, number | null>;
  entries: ReportedEntry[];
  /** Entries left out as not imported before (existingOnly): neither counted nor reported. */
  leftOut: number;
  /** Entries the run had handled before, or that the batch lists twice: in `ids`, not counted. */
  repeats: number;
}

function newResult(): BatchResult {
  return { counts: emptyCounts(), ids: new Map(), entries: [], leftOut: 0, repeats: 0 };
}

// ——— users ———

export async function upsertUsers(
  tx: Db,
  context: UpsertContext,
  users: readonly LdapUser[],
): Promise<BatchResult> {
  const result = newResult();
  const handled = context.firstMeeting
    ? new Map<string, number | null>()
    : await context.handledUsers(users.map((user) => user.externalId));
  const pending = pickFresh(
    users.map(desiredUser),
    (user) => user.usernameKey,
    handled,
    result,
    "user",
    (user) => user.username,
  );
  const created: number[] = [];
  const touched: number[] = [];
  let todo = pending;
  const recordCreated = (user: DesiredUser, id: number) => {
    result.ids.set(user.externalId, id);
    result.counts.created += 1;
    created.push(id);
    result.entries.push({ outcome: "created", kind: "user", name: user.username, dn: user.dn, reason: "" });
  };
  if (context.insertFirst && !context.existingOnly && todo.length > 0) {
    const inserted = await insertNewUsers(tx, context.directoryId, todo);
    todo = todo.filter((user) => {
      const id = inserted.get(user.externalId);
      if (id !== undefined) recordCreated(user, id);
      return id === undefined;
    });
  }
  for (let round = 1; todo.length > 0; round += 1) {
    if (round > MAX_ROUNDS) {
      for (const user of todo) {
        fail(
          result,
          "user",
          { name: user.username, dn: user.dn, externalId: user.externalId },
          "Another import kept changing this user; run the import again.",
        );
      }
      break;
    }
    const matches = await lookupUsers(tx, context.directoryId, todo);
    if (context.existingOnly && round === 1) {
      const known = todo.filter((user) => matches.byId.has(user.externalId));
      result.leftOut += todo.length - known.length;
      todo = known;
    }
    const inBatch = new Set(todo.map((user) => user.externalId));
    // Users of this directory found only by username: whether this run met their entries decides.
    const relinkable = relinkCandidates(todo, matches, context.directoryId);
    const handledElsewhere = relinkable.length > 0 ? await context.handledUsers(relinkable) : new Map();
    // One closure per batch (not per user): the stable ids another entry of this run holds.
    const importedInThisRun = (id: string) =>
      handled.has(id) ||
      handledElsewhere.has(id) ||
      inBatch.has(id) ||
      (context.usersInFlight?.has(id) ?? false);
    const candidates = context.findInDirectory ? relinkable.filter((id) => !importedInThisRun(id)) : [];
    const present =
      candidates.length > 0 && context.findInDirectory
        ? await context.findInDirectory(candidates)
        : new Set();
    const matchContext = {
      directoryId: context.directoryId,
      importedInThisRun,
      stillInDirectory: (id: string) => present.has(id),
    };
    const decided = todo.map((user) => ({
      user,
      decision: classifyUser(
        user,
        matches.byId.get(user.externalId) ?? null,
        matches.byName.get(user.usernameKey) ?? null,
        matchContext,
      ),
    }));
    await applyUserUpdates(
      tx,
      decided,
      result,
      touched,
      context.convertInternal ? context.directoryId : null,
    );
    const inserted = await insertUsers(
      tx,
      context.directoryId,
      decided.filter((d) => d.decision.action === "create").map((d) => d.user),
    );
    todo = [];
    for (const { user, decision } of decided) {
      if (decision.action !== "create") continue;
      const id = inserted.get(user.externalId);
      if (id === undefined)
        todo.push(user); // someone else inserted it meanwhile: look again
      else recordCreated(user, id);
    }
  }
  await grantDefaultRoles(tx, context.directoryId, created);
  if (context.copyRolesFrom) await copyRoles(tx, context.copyRolesFrom, [...created, ...touched]);
  return result;
}

type Decided<D, S> = { user: D; decision: Decision<S> };

async function applyUserUpdates(
  tx: Db,
  decided: Decided<DesiredUser, StoredUser>[],
  result: BatchResult,
  touched: number[],
  convertInto: number | null,
): Promise<void> {
  const updates: { user: DesiredUser; target: StoredUser; changes: string[] }[] = [];
  const converts = (target: StoredUser) => convertInto !== null && target.kind === "internal";
  for (const { user, decision } of decided) {
    if (decision.action === "conflict") {
      result.ids.set(user.externalId, null);
      result.counts.skipped += 1;
      result.entries.push({
        outcome: "skipped",
        kind: "user",
        name: user.username,
        dn: user.dn,
        reason: decision.reason,
      });
    } else if (decision.action === "unchanged" && !converts(decision.target)) {
      result.ids.set(user.externalId, decision.target.id);
      result.counts.unchanged += 1;
      touched.push(decision.target.id);
    } else if (decision.action !== "create") {
      const changes = decision.action === "update" ? decision.changes : [];
      updates.push({ user, target: decision.target, changes });
    }
  }
  if (updates.length === 0) return;
  const rows = updates.map(({ user, target }) => {
    // An internal user keeps its username, stays internal and is not linked to the entry — unless
    // this is its conversion to external.
    const convert = converts(target);
    const external = target.kind === "external" || convert;
    const signIn = external
      ? signInAfterSync(user.enabled, target)
      : { enabled: target.enabled, disabledByDirectory: target.disabledByDirectory };
    return {
      id: target.id,
      username: external ? user.username : target.username,
      key: external ? user.usernameKey : target.usernameKey,
      full_name: user.fullName,
      email: user.email,
      department: user.department,
      phone: user.phone,
      search: userSearch(user),
      // The stored spelling of an unchanged DN is kept: no write for a server's change of case.
      dn: external && !sameDnText(target.dn, user.dn) ? user.dn : target.dn,
      ext: external ? user.externalId : target.externalId,
      missing: external ? false : target.missingInDirectory,
      enabled: signIn.enabled,
      by_directory: signIn.disabledByDirectory,
      convert,
    };
  });
  // The WHERE makes a row another run already brought up to date cost nothing (and count as unchanged).
  const changed = await queryRows<{ id: number }>(
    tx,
    sql`with v as (
          select * from json_to_recordset(${jsonRows(rows)}::json) as t(id int, username text, key text,
            full_name text, email text, department text, phone text, search text, dn text, ext text, missing boolean,
            enabled boolean, by_directory boolean, convert boolean)
        )
        update users u set username = v.username, username_key = v.key, full_name = v.full_name,
          email = v.email, department = v.department, phone = v.phone, search_text = v.search, dn = v.dn,
          external_id = v.ext, missing_in_directory = v.missing, enabled = v.enabled,
          disabled_by_directory = v.by_directory,
          kind = case when v.convert then 'external' else u.kind end,
          directory_id = case when v.convert then ${convertInto} else u.directory_id end,
          password_hash = case when v.convert then null else u.password_hash end,
          last_synced_at = case when u.kind = 'external' or v.convert then now() else u.last_synced_at end,
          updated_at = now()
        from v
        where u.id = v.id and (v.convert or (u.username, u.username_key, u.full_name, u.email, u.department,
          u.phone, u.search_text, u.dn, u.external_id, u.missing_in_directory, u.enabled, u.disabled_by_directory)
          is distinct from (v.username, v.key, v.full_name, v.email, v.department, v.phone, v.search, v.dn,
          v.ext, v.missing, v.enabled, v.by_directory))
        returning u.id`,
  );
  const changedIds = new Set(changed.map((row) => Number(row.id)));
  for (const { user, target, changes } of updates) {
    result.ids.set(user.externalId, target.id);
    touched.push(target.id);
    if (changedIds.has(target.id)) {
      result.counts.updated += 1;
      const what = converts(target)
        ? `Converted to an external user${changes.length > 0 ? `; changed: ${listInWords(changes)}` : ""}`
        : target.kind === "internal"
          ? `Internal user synchronized: ${listInWords(changes)}`
          : listInWords(changes);
      result.entries.push({
        outcome: "updated",
        kind: "user",
        name: user.username,
        dn: user.dn,
        reason: changedReason(what),
      });
    } else {
      result.counts.unchanged += 1;
    }
  }
}

function changedReason(what: string): string {
  return what.startsWith("Internal") || what.startsWith("Converted") ? `${what}.` : `Changed: ${what}.`;
}

/**
 * Inserts users expected to be new with a plain INSERT, in a savepoint: if any of them exists after
 * all, the savepoint is rolled back and they go in through `insertUsers`, which skips those. ON
 * CONFLICT first probes every unique index for every row, about a tenth of PostgreSQL's work in a
 * first import, where no row conflicts.
 */
async function insertNewUsers(
  tx: Db,
  directoryId: number,
  users: DesiredUser[],
): Promise<Map<string, number>> {
  try {
    return await tx.transaction((savepoint) => insertUsers(savepoint as Db, directoryId, users, "fail"));
  } catch (err) {
    if (!isUniqueViolation(err)) throw err;
    return insertUsers(tx, directoryId, users, "skip");
  }
}

/**
 * Inserts users and returns stable id → Roster id. On "skip" a user whose stable id or username is
 * taken is left out (a concurrent run that got there first wins; the caller looks it up again); on
 * "fail" the statement fails with a unique violation instead.
 */
async function insertUsers(
  tx: Db,
  directoryId: number,
  users: DesiredUser[],
  conflicts: "skip" | "fail" = "skip",
): Promise<Map<string, number>> {
  const inserted = new Map<string, number>();
  if (users.length === 0) return inserted;
  const column = <V>(pick: (u: DesiredUser) => V) => users.map(pick);
  // A user created disabled was disabled by the directory: enabling it there enables it here.
  const returned = await queryRows<{ id: number; external_id: string }>(
    tx,
    sql`insert into users (kind, username, username_key, full_name, email, department, phone, search_text,
          enabled, disabled_by_directory, directory_id, external_id, dn, last_synced_at)
        select 'external', v.username, v.key, v.full_name, v.email, v.department, v.phone, v.search, v.enabled,
          not v.enabled, ${directoryId}, v.ext, v.dn, now()
        from unnest(${textArray(column((u) => u.username))}::text[], ${textArray(column((u) => u.usernameKey))}::text[],
          ${textArray(column((u) => u.fullName))}::text[], ${textArray(column((u) => u.email))}::text[],
          ${textArray(column((u) => u.department))}::text[], ${textArray(column((u) => u.phone))}::text[],
          ${textArray(column(userSearch))}::text[], ${textArray(column((u) => u.dn))}::text[],
          ${textArray(column((u) => u.externalId))}::text[], ${boolArray(column((u) => u.enabled))}::boolean[])
          as v(username, key, full_name, email, department, phone, search, dn, ext, enabled)
        ${conflicts === "skip" ? sql`on conflict do nothing` : sql``}
        returning id, external_id`,
  );
  for (const row of returned) inserted.set(row.external_id, Number(row.id));
  return inserted;
}

/** The directory's default role assignments, for users this batch created (never for existing ones). */
async function grantDefaultRoles(tx: Db, directoryId: number, userIds: number[]): Promise<void> {
  if (userIds.length === 0) return;
  await tx.execute(
    sql`insert into role_assignments (role_id, user_id, scope)
        select d.role_id, u.id, d.scope
        from unnest(${intArray(userIds)}::int[]) as u(id)
        cross join directory_default_roles d
        where d.directory_id = ${directoryId}
        on conflict do nothing`,
  );
}

/** The source's role assignments (role + scope) onto each user; assignments they already have stay. */
async function copyRoles(tx: Db, source: RoleSource, userIds: number[]): Promise<void> {
  if (userIds.length === 0) return;
  const subject = source.type === "user" ? sql`a.user_id = ${source.id}` : sql`a.group_id = ${source.id}`;
  await tx.execute(
    sql`insert into role_assignments (role_id, user_id, scope)
        select a.role_id, u.id, a.scope
        from unnest(${intArray(userIds)}::int[]) as u(id)
        cross join (select distinct role_id, scope from role_assignments a where ${subject}) a
        on conflict do nothing`,
  );
}

// ——— groups ———

export interface GroupBatchResult extends BatchResult {
  /** How each group fared, for the report written once its members are known. */
  decisions: Map<string, { id: number; outcome: "created" | "updated" | "unchanged"; changes: string[] }>;
}

/**
 * Creates or updates the group rows. Their outcome is not counted here: a group's report depends
 * on its members too, and is written by `finishGroup`.
 */
export async function upsertGroups(
  tx: Db,
  context: UpsertContext,
  groups: readonly LdapGroup[],
): Promise<GroupBatchResult> {
  const result: GroupBatchResult = { ...newResult(), decisions: new Map() };
  let todo = pickFresh(
    groups.map(desiredGroup),
    (g) => g.nameKey,
    context.importedGroups,
    result,
    "group",
    (g) => g.name,
  );
  for (let round = 1; todo.length > 0; round += 1) {
    if (round > MAX_ROUNDS) {
      for (const group of todo) {
        fail(
          result,
          "group",
          { name: group.name, dn: group.dn, externalId: group.externalId },
          "Another import kept changing this group; run the import again.",
        );
      }
      break;
    }
    const matches = await lookupGroups(tx, context.directoryId, todo);
    const inBatch = new Set(todo.map((g) => g.externalId));
    const matchContext = {
      directoryId: context.directoryId,
      importedInThisRun: (id: string) => context.importedGroups.has(id) || inBatch.has(id),
    };
    const decided = todo.map((group) => ({
      group,
      decision: classifyGroup(
        group,
        matches.byId.get(group.externalId) ?? null,
        matches.byName.get(group.nameKey) ?? null,
        matchContext,
      ),
    }));
    await applyGroupUpdates(tx, decided, result);
    const inserted = await insertGroups(
      tx,
      context.directoryId,
      decided.filter((d) => d.decision.action === "create").map((d) => d.group),
    );
    todo = [];
    for (const { group, decision } of decided) {
      if (decision.action !== "create") continue;
      const id = inserted.get(group.externalId);
      if (id === undefined) {
        todo.push(group);
        continue;
      }
      result.ids.set(group.externalId, id);
      result.decisions.set(group.externalId, { id, outcome: "created", changes: [] });
    }
  }
  return result;
}

async function applyGroupUpdates(
  tx: Db,
  decided: { group: DesiredGroup; decision: Decision<StoredGroup> }[],
  result: GroupBatchResult,
): Promise<void> {
  const updates: { group: DesiredGroup; target: StoredGroup; changes: string[] }[] = [];
  for (const { group, decision } of decided) {
    if (decision.action === "conflict") {
      result.ids.set(group.externalId, null);
      result.counts.skipped += 1;
      result.entries.push({
        outcome: "skipped",
        kind: "group",
        name: group.name,
        dn: group.dn,
        reason: decision.reason,
      });
    } else if (decision.action === "unchanged") {
      result.ids.set(group.externalId, decision.target.id);
      result.decisions.set(group.externalId, { id: decision.target.id, outcome: "unchanged", changes: [] });
    } else if (decision.action === "update") {
      updates.push({ group, target: decision.target, changes: decision.changes });
    }
  }
  if (updates.length === 0) return;
  const rows = updates.map(({ group, target }) => ({
    id: target.id,
    name: group.name,
    key: group.nameKey,
    description: group.description,
    search: group.searchText,
    dn: sameDnText(target.dn, group.dn) ? target.dn : group.dn,
    ext: group.externalId,
  }));
  const changed = await queryRows<{ id: number }>(
    tx,
    sql`with v as (
          select * from json_to_recordset(${jsonRows(rows)}::json)
            as t(id int, name text, key text, description text, search text, dn text, ext text)
        )
        update groups g set name = v.name, name_key = v.key, description = v.description, search_text = v.search,
          dn = v.dn, external_id = v.ext, missing_in_directory = false, last_synced_at = now(), updated_at = now()
        from v
        where g.id = v.id and (g.name, g.name_key, g.description, g.search_text, g.dn, g.external_id,
          g.missing_in_directory) is distinct from (v.name, v.key, v.description, v.search, v.dn, v.ext, false)
        returning g.id`,
  );
  const changedIds = new Set(changed.map((row) => Number(row.id)));
  for (const { group, target, changes } of updates) {
    result.ids.set(group.externalId, target.id);
    const outcome = changedIds.has(target.id) ? "updated" : "unchanged";
    result.decisions.set(group.externalId, {
      id: target.id,
      outcome,
      changes: outcome === "updated" ? changes : [],
    });
  }
}

async function insertGroups(
  tx: Db,
  directoryId: number,
  groups: DesiredGroup[],
): Promise<Map<string, number>> {
  const inserted = new Map<string, number>();
  if (groups.length === 0) return inserted;
  const rows = groups.map((g) => ({
    name: g.name,
    key: g.nameKey,
    description: g.description,
    search: g.searchText,
    dn: g.dn,
    ext: g.externalId,
  }));
  const returned = await queryRows<{ id: number; external_id: string }>(
    tx,
    sql`insert into groups (kind, name, name_key, description, search_text, directory_id, external_id, dn, last_synced_at)
        select 'external', v.name, v.key, v.description, v.search, ${directoryId}, v.ext, v.dn, now()
        from json_to_recordset(${jsonRows(rows)}::json)
          as v(name text, key text, description text, search text, dn text, ext text)
        on conflict do nothing
        returning id, external_id`,
  );
  for (const row of returned) inserted.set(row.external_id, Number(row.id));
  return inserted;
}

// ——— memberships ———

/** Adds the members (users) and subgroups; returns how many links were new. */
export async function linkMembers(
  tx: Db,
  groupId: number,
  userIds: readonly number[],
  childGroupIds: readonly number[],
): Promise<{ membersAdded: number; subgroupsAdded: number }> {
  let membersAdded = 0;
  let subgroupsAdded = 0;
  if (userIds.length > 0) {
    const [row] = await queryRows<{ n: number }>(
      tx,
      sql`with added as (
            insert into group_members (group_id, user_id)
            select ${groupId}, u.id from unnest(${intArray(userIds)}::int[]) as u(id)
            on conflict do nothing
            returning 1
          )
          select count(*)::int as n from added`,
    );
    membersAdded = Number(row?.n ?? 0);
  }
  const children = childGroupIds.filter((id) => id !== groupId);
  if (children.length > 0) {
    const [row] = await queryRows<{ n: number }>(
      tx,
      sql`with added as (
            insert into group_subgroups (parent_id, child_id)
            select ${groupId}, c.id from unnest(${intArray(children)}::int[]) as c(id)
            on conflict do nothing
            returning 1
          )
          select count(*)::int as n from added`,
    );
    subgroupsAdded = Number(row?.n ?? 0);
  }
  return { membersAdded, subgroupsAdded };
}

/**
 * After a group's members were all read: removes the members and subgroups the directory no longer
 * lists (the directory owns an external group's membership). Users themselves are never removed.
 */
/** The fingerprint of the member list a group's members were just imported from. */
/**
 * The fingerprint of the member list Roster's links now follow. A synchronization (`runId`) that
 * collected removals of the group's members leaves none: the links follow the list only once they
 * are applied (the guard may hold them), and the next run must compare the lists again.
 */
export async function rememberMemberList(
  tx: Db,
  groupId: number,
  hash: string | null,
  runId: number | null = null,
): Promise<void> {
  await tx.execute(
    runId === null
      ? sql`update groups set member_list_hash = ${hash} where id = ${groupId}`
      : sql`update groups set member_list_hash = case when exists (
                select 1 from sync_removals r where r.run_id = ${runId} and r.group_id = ${groupId}
                  and r.change in ('remove_member', 'remove_subgroup')) then null else ${hash} end
            where id = ${groupId}`,
  );
}

export async function pruneMembers(
  tx: Db,
  groupId: number,
  keepUserIds: Iterable<number>,
  keepGroupIds: Iterable<number>,
): Promise<{ membersRemoved: number; subgroupsRemoved: number }> {
  const keptMembers = await idsCondition(tx, sql`user_id`, keepUserIds, "kept_members");
  const [members] = await queryRows<{ n: number }>(
    tx,
    sql`with removed as (
          delete from group_members where group_id = ${groupId} and not ${keptMembers}
          returning 1
        )
        select count(*)::int as n from removed`,
  );
  const keptSubgroups = await idsCondition(tx, sql`child_id`, keepGroupIds, "kept_subgroups");
  const [subgroups] = await queryRows<{ n: number }>(
    tx,
    sql`with removed as (
          delete from group_subgroups where parent_id = ${groupId} and not ${keptSubgroups}
          returning 1
        )
        select count(*)::int as n from removed`,
  );
  return { membersRemoved: Number(members?.n ?? 0), subgroupsRemoved: Number(subgroups?.n ?? 0) };
}

// ——— helpers ———

/**
 * Drops entries this run already handled (a user in two nested groups is imported once) and
 * entries twice in the batch; a second entry with a name already taken in the batch is a conflict.
 */
function pickFresh<T extends { externalId: string; dn: string }>(
  items: T[],
  nameKeyOf: (item: T) => string,
  imported: ReadonlyMap<string, number | null>,
  result: BatchResult,
  kind: "user" | "group",
  nameOf: (item: T) => string,
): T[] {
  const fresh: T[] = [];
  const ids = new Set<string>();
  const names = new Map<string, T>();
  for (const item of items) {
    if (imported.has(item.externalId)) {
      result.ids.set(item.externalId, imported.get(item.externalId) ?? null);
      result.repeats += 1;
      continue;
    }
    if (ids.has(item.externalId)) {
      result.repeats += 1;
      continue;
    }
    ids.add(item.externalId);
    const first = names.get(nameKeyOf(item));
    if (first) {
      result.ids.set(item.externalId, null);
      result.counts.skipped += 1;
      result.entries.push({
        outcome: "skipped",
        kind,
        name: nameOf(item),
        dn: item.dn,
        reason: `Another entry of this directory (${first.dn}) has the same ${kind === "user" ? "username" : "group name"}.`,
      });
      continue;
    }
    names.set(nameKeyOf(item), item);
    fresh.push(item);
  }
  return fresh;
}

function fail(
  result: BatchResult,
  kind: "user" | "group",
  entry: { name: string; dn: string; externalId: string },
  reason: string,
): void {
  // Handled, though not imported: a run's report lists each entry once.
  result.ids.set(entry.externalId, null);
  result.counts.failed += 1;
  result.entries.push({ outcome: "failed", kind, name: entry.name, dn: entry.dn, reason });
}
