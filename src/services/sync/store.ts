/**
 * Reading Roster's side of an import in bulk: one query finds, for a whole batch of directory
 * entries, the users (or groups) they match by stable id and by name.
 */
import { type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import type { StoredGroup, StoredUser } from "./decide.ts";

export interface Matches<T> {
  /** Rows of this directory, by external id. */
  byId: Map<string, T>;
  /** Rows of any kind, by NFC-lowercased name. */
  byName: Map<string, T>;
}

/** Json-encoded rows for `json_to_recordset`: one parameter, however many rows, on both drivers. */
export function jsonRows(rows: readonly object[]): string {
  return JSON.stringify(rows);
}

/**
 * A text[] parameter as PostgreSQL's array literal (`{"a","b\"c",NULL}`), which both drivers pass
 * as text. A column per array and `unnest` costs PostgreSQL half of what `json_to_recordset` does.
 */
export function textArray(values: readonly (string | null)[]): string {
  if (values.length === 0) return "{}";
  // Nearly always nothing needs escaping: one join then, without a quoted copy of every value.
  if (values.every((value) => value !== null && !value.includes('"') && !value.includes("\\")))
    return `{"${values.join('","')}"}`;
  const quoted = values.map((value) => {
    if (value === null) return "NULL";
    return value.includes('"') || value.includes("\\")
      ? `"${value.replace(/["\\]/g, "\\$&")}"`
      : `"${value}"`;
  });
  return `{${quoted.join(",")}}`;
}

/** A boolean[] parameter as PostgreSQL's array literal (`{t,f}`). */
export function boolArray(values: readonly boolean[]): string {
  return `{${values.map((value) => (value ? "t" : "f")).join(",")}}`;
}

/** An int[] parameter as PostgreSQL's array literal (`{1,2,3}`), which both drivers pass as text. */
export function intArray(ids: Iterable<number>): string {
  // Joined 10,000 at a time: one join of a 1,000,000-id spread took 131 MB of RSS for a moment
  // (a group's members kept, at the end of its import), these 49 MB.
  const parts: string[] = [];
  let chunk: number[] = [];
  for (const id of ids) {
    chunk.push(id);
    if (chunk.length === 10_000) {
      parts.push(chunk.join(","));
      chunk = [];
    }
  }
  if (chunk.length > 0) parts.push(chunk.join(","));
  return `{${parts.join(",")}}`;
}

/** Values sent to a temporary table at a time (idsCondition, compareMemberList). */
const SLICE = 20_000;

/**
 * The condition "`column` is one of these ids": an array literal for up to SLICE of them; past
 * that, a temporary table (dropped at commit) filled a slice at a time, which the condition joins.
 * A 1,000,000-member group's kept members then cost no 8 MB literal and its copies in the driver.
 * `table` names the temporary table: one per condition in a transaction.
 */
export async function idsCondition(tx: Db, column: SQL, ids: Iterable<number>, table: string): Promise<SQL> {
  const name = sql.raw(table);
  let chunk: number[] = [];
  let created = false;
  const flush = async () => {
    if (!created) {
      await tx.execute(sql`create temporary table ${name} (id int not null) on commit drop`);
      created = true;
    }
    await tx.execute(sql`insert into ${name} (id) select unnest(${intArray(chunk)}::int[])`);
    chunk = [];
  };
  for (const id of ids) {
    chunk.push(id);
    if (chunk.length === SLICE) await flush();
  }
  if (!created) return sql`${column} = any(${intArray(chunk)}::int[])`;
  if (chunk.length > 0) await flush();
  await tx.execute(sql`analyze ${name}`);
  return sql`exists (select 1 from ${name} k where k.id = ${column})`;
}

/** Whether Roster holds any user of the directory (the leading column of its stable-id index). */
export async function directoryHasUsers(db: Db, directoryId: number): Promise<boolean> {
  const [row] = await queryRows<{ found: boolean }>(
    db,
    sql`select exists (select 1 from users where directory_id = ${directoryId}) as found`,
  );
  return row?.found === true;
}

/**
 * What Roster holds of a directory: its users and groups (a synchronization reads them all again,
 * those marked missing included: their entries may be back), and how many of the users are present.
 */
export async function directoryHoldings(
  db: Db,
  directoryId: number,
): Promise<{ users: number; usersPresent: number; groups: number }> {
  const [row] = await queryRows<{ users: number; present: number; groups: number }>(
    db,
    sql`select count(*)::int as users, (count(*) filter (where not missing_in_directory))::int as present,
               (select count(*)::int from groups where directory_id = ${directoryId}) as groups
        from users where directory_id = ${directoryId} and kind = 'external'`,
  );
  return {
    users: Number(row?.users ?? 0),
    usersPresent: Number(row?.present ?? 0),
    groups: Number(row?.groups ?? 0),
  };
}

/** Which of these stable ids are of users (or groups) imported from the directory. */
export async function importedExternalIds(
  db: Db,
  kind: "user" | "group",
  directoryId: number,
  externalIds: readonly string[],
): Promise<Set<string>> {
  if (externalIds.length === 0) return new Set();
  const table = sql.raw(kind === "user" ? "users" : "groups");
  const rows = await queryRows<{ external_id: string }>(
    db,
    sql`select external_id from ${table}
        where directory_id = ${directoryId} and external_id = any(${textArray(externalIds)}::text[])`,
  );
  return new Set(rows.map((row) => row.external_id));
}

/** Whether the run has handled the users row aliased `u` (its stable id is in import_run_users). */
export function handledByRun(runId: number): SQL {
  return sql`exists (select 1 from import_run_users h where h.run_id = ${runId} and h.external_id = u.external_id)`;
}

/** How a group's member list compares with the members and subgroups Roster has for it. */
export interface MemberListDiff {
  /** Positions (in `dns`, in `usernames`) of the values no member or subgroup matches as text. */
  dns: number[];
  usernames: number[];
  /** Members and subgroups no value matches as text (or, with `handledBy`, members not met). */
  users: { id: number; dn: string | null; username: string; externalId: string | null; handled: boolean }[];
  groups: { id: number; dn: string | null }[];
}

/**
 * Compares a group's member list with its members in Roster in the database: the list's keys go
 * into a temporary table a slice at a time, and two anti-joins answer what matches nothing on
 * either side. Only the differences come back, so a 1,000,000-member group with a few changes
 * holds its list and a few rows, not a million member rows and the sets to match them.
 *
 * `dnKey` and `nameKey` make a value's key (lower case); Roster's side is `lower(dn)` and
 * `lower(btrim(username))`, so a value that differs only in its spelling (escapes, spacing) comes
 * back on both sides, for the caller to compare parsed. With `handledBy` (a full run), a member
 * the run did not meet matches nothing: its value is resolved again.
 */
export async function compareMemberList(
  db: Db,
  groupId: number,
  list: { dns: readonly string[]; usernames: readonly string[] },
  keys: { dnKey: (value: string) => string; nameKey: (value: string) => string },
  handledBy: number | null,
): Promise<MemberListDiff> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    await tx.execute(
      sql`create temporary table listed_members (position int not null, by_name boolean not null, key text not null)
          on commit drop`,
    );
    for (const [values, byName, keyOf] of [
      [list.dns, false, keys.dnKey],
      [list.usernames, true, keys.nameKey],
    ] as const) {
      for (let at = 0; at < values.length; at += SLICE) {
        const slice = values.slice(at, at + SLICE).map(keyOf);
        await tx.execute(
          sql`insert into listed_members (position, by_name, key)
              select ${at}::int + t.n::int - 1, ${byName}, t.key
              from unnest(${textArray(slice)}::text[]) with ordinality as t(key, n)`,
        );
      }
    }
    await tx.execute(sql`analyze listed_members`);
    const handled = handledBy === null ? sql`true` : handledByRun(handledBy);
    const rows = await queryRows<{
      what: "dn" | "name" | "user" | "group";
      position: number | null;
      id: number | null;
      dn: string | null;
      username: string | null;
      external_id: string | null;
      handled: boolean | null;
    }>(
      tx,
      sql`with members as materialized (
            select u.id, u.dn, u.username, u.external_id, lower(u.dn) as dn_key,
                   lower(btrim(u.username)) as name_key, (u.external_id is null or ${handled}) as handled
            from group_members m join users u on u.id = m.user_id where m.group_id = ${groupId}
          ),
          children as materialized (
            select g.id, g.dn, lower(g.dn) as dn_key
            from group_subgroups s join groups g on g.id = s.child_id where s.parent_id = ${groupId}
          ),
          matched as materialized (
            select l.position, l.by_name, mb.id from listed_members l
              join members mb on mb.dn_key = l.key where not l.by_name and mb.handled
            union all
            select l.position, l.by_name, mb.id from listed_members l
              join members mb on mb.name_key = l.key where l.by_name and mb.handled
          )
          select case when l.by_name then 'name' else 'dn' end as what, l.position, null::int as id,
                 null::text as dn, null::text as username, null::text as external_id, null::boolean as handled
          from listed_members l
          where not exists (select 1 from matched x where x.position = l.position and x.by_name = l.by_name)
            and (l.by_name or not exists (select 1 from children c where c.dn_key = l.key))
          union all
          select 'user', null, mb.id, mb.dn, mb.username, mb.external_id, mb.handled from members mb
          where not exists (select 1 from matched x where x.id = mb.id)
          union all
          select 'group', null, c.id, c.dn, null, null, null from children c
          where not exists (select 1 from listed_members l where not l.by_name and l.key = c.dn_key)`,
    );
    const diff: MemberListDiff = { dns: [], usernames: [], users: [], groups: [] };
    for (const row of rows) {
      if (row.what === "dn") diff.dns.push(Number(row.position));
      else if (row.what === "name") diff.usernames.push(Number(row.position));
      else if (row.what === "user")
        diff.users.push({
          id: Number(row.id),
          dn: row.dn,
          username: row.username ?? "",
          externalId: row.external_id,
          handled: row.handled === true,
        });
      else diff.groups.push({ id: Number(row.id), dn: row.dn });
    }
    return diff;
  });
}

/**
 * A group's members and subgroups named by the given keys (a DN in lower case or parsed, as
 * compareMemberList keys them; a username trimmed, in lower case): those a change log told removed.
 */
export async function linkedMembersNamed(
  db: Db,
  groupId: number,
  keys: { dnKeys: readonly string[]; leafKeys: readonly string[]; nameKeys: readonly string[] },
): Promise<Pick<MemberListDiff, "users" | "groups">> {
  if (keys.dnKeys.length + keys.nameKeys.length === 0) return { users: [], groups: [] };
  type Row = { id: number; dn: string | null; username: string; external_id: string | null };
  const member = (where: SQL) =>
    queryRows<Row>(
      db,
      sql`select u.id, u.dn, u.username, u.external_id from users u
          join group_members m on m.group_id = ${groupId} and m.user_id = u.id where ${where}`,
    );
  // Most DNs name their user by username (uid=…): found through its index, then the DN compared.
  const found = await member(
    sql`u.username_key = any(${textArray([...keys.leafKeys, ...keys.nameKeys])}::text[])
        and (lower(u.dn) = any(${textArray(keys.dnKeys)}::text[])
             or lower(btrim(u.username)) = any(${textArray(keys.nameKeys)}::text[]))`,
  );
  // The others (a DN named by cn, say): every member's DN compared, for those keys alone.
  const foundDns = new Set(found.map((row) => row.dn?.toLowerCase()));
  const rest = keys.dnKeys.filter((key) => !foundDns.has(key));
  const others = rest.length === 0 ? [] : await member(sql`lower(u.dn) = any(${textArray(rest)}::text[])`);
  const groups = await queryRows<{ id: number; dn: string | null }>(
    db,
    sql`select g.id, g.dn from group_subgroups s join groups g on g.id = s.child_id
        where s.parent_id = ${groupId} and lower(g.dn) = any(${textArray(keys.dnKeys)}::text[])`,
  );
  const users = new Map<number, MemberListDiff["users"][number]>();
  for (const row of [...found, ...others]) {
    users.set(Number(row.id), {
      id: Number(row.id),
      dn: row.dn,
      username: row.username,
      externalId: row.external_id,
      handled: true,
    });
  }
  return { users: [...users.values()], groups: groups.map((row) => ({ id: Number(row.id), dn: row.dn })) };
}

/** The fingerprint of the member list Roster last stored for the group (null: never stored). */
export async function storedMemberListHash(db: Db, groupId: number): Promise<string | null> {
  const [row] = await queryRows<{ hash: string | null }>(
    db,
    sql`select member_list_hash as hash from groups where id = ${groupId}`,
  );
  return row?.hash ?? null;
}

/**
 * A group's members whose entries the run has not met (not handled in import_run_users): after a
 * full synchronization's users phase, those deleted from the directory or outside its user search.
 * An anti-join in the database: a few rows, whatever the group's size.
 */
export async function membersNotHandled(
  db: Db,
  groupId: number,
  runId: number,
): Promise<{ id: number; dn: string | null; username: string }[]> {
  const rows = await queryRows<{ id: number; dn: string | null; username: string }>(
    db,
    sql`select u.id, u.dn, u.username from group_members m join users u on u.id = m.user_id
        where m.group_id = ${groupId} and u.external_id is not null
          and not ${handledByRun(runId)}`,
  );
  return rows.map((row) => ({ id: Number(row.id), dn: row.dn, username: row.username }));
}

export async function lookupUsers(
  db: Db,
  directoryId: number,
  keys: readonly { externalId: string; usernameKey: string }[],
): Promise<Matches<StoredUser>> {
  const byId = new Map<string, StoredUser>();
  const byName = new Map<string, StoredUser>();
  if (keys.length === 0) return { byId, byName };
  const input = jsonRows(keys.map((k) => ({ ext: k.externalId, key: k.usernameKey })));
  // Aliased to StoredUser's own names: the rows are used as they come, without a copy per row.
  const rows = await queryRows<StoredUser>(
    db,
    // A username held by a row found by stable id (nearly always the entry's own row) needs no second
    // probe: the unique index says no other row has it. Rows come once each, as no row found by
    // name holds a username a row found by id holds.
    sql`with input as materialized (select * from json_to_recordset(${input}::json) as t(ext text, key text)),
        by_id as materialized (
          select u.* from input i join users u on u.directory_id = ${directoryId} and u.external_id = i.ext
        ),
        by_name as (
          select u.* from input i join users u on u.username_key = i.key
          where not exists (select 1 from by_id b where b.username_key = i.key)
        )
        select u.id, u.kind, u.username, u.username_key as "usernameKey", u.full_name as "fullName", u.email,
               u.department, u.phone, u.enabled, u.disabled_by_directory as "disabledByDirectory", u.dn, u.directory_id as "directoryId",
               d.name as "directoryName", u.external_id as "externalId",
               u.missing_in_directory as "missingInDirectory"
        from (select * from by_id union all select * from by_name) u left join directories d on d.id = u.directory_id`,
  );
  for (const user of rows) {
    if (user.directoryId === directoryId && user.externalId !== null) byId.set(user.externalId, user);
    byName.set(user.usernameKey, user);
  }
  return { byId, byName };
}

interface GroupRow {
  id: number;
  kind: "internal" | "external";
  name: string;
  name_key: string;
  description: string;
  dn: string | null;
  directory_id: number | null;
  directory_name: string | null;
  external_id: string | null;
  missing_in_directory: boolean;
  member_list_hash: string | null;
}

export async function lookupGroups(
  db: Db,
  directoryId: number,
  keys: readonly { externalId: string; nameKey: string }[],
): Promise<Matches<StoredGroup>> {
  const byId = new Map<string, StoredGroup>();
  const byName = new Map<string, StoredGroup>();
  if (keys.length === 0) return { byId, byName };
  const input = jsonRows(keys.map((k) => ({ ext: k.externalId, key: k.nameKey })));
  const rows = await queryRows<GroupRow>(
    db,
    sql`with input as materialized (select * from json_to_recordset(${input}::json) as t(ext text, key text)),
        found as (
          select g.id from input i join groups g on g.directory_id = ${directoryId} and g.external_id = i.ext
          union
          select g.id from input i join groups g on g.name_key = i.key
        )
        select g.id, g.kind, g.name, g.name_key, g.description, g.dn, g.directory_id, d.name as directory_name,
               g.external_id, g.missing_in_directory, g.member_list_hash
        from found f join groups g on g.id = f.id left join directories d on d.id = g.directory_id`,
  );
  for (const row of rows) {
    const group: StoredGroup = {
      id: Number(row.id),
      kind: row.kind,
      name: row.name,
      nameKey: row.name_key,
      description: row.description,
      dn: row.dn,
      directoryId: row.directory_id === null ? null : Number(row.directory_id),
      directoryName: row.directory_name,
      externalId: row.external_id,
      missingInDirectory: row.missing_in_directory,
      memberListHash: row.member_list_hash,
    };
    if (group.directoryId === directoryId && group.externalId !== null) byId.set(group.externalId, group);
    byName.set(group.nameKey, group);
  }
  return { byId, byName };
}
