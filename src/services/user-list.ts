import { type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { likePattern } from "./names.ts";
import { patternLiteral, searchReachesEmails, userSearchCondition } from "./user-search.ts";

/**
 * The Users application's one list of users and groups: filtered by kind, searched
 * case-insensitively, sorted by name and paged by keyset (never OFFSET), fast at 100k users.
 */

export const LIST_FILTERS = [
  "all",
  "internal-users",
  "external-users",
  "internal-groups",
  "external-groups",
] as const;
export type ListFilter = (typeof LIST_FILTERS)[number];

export const LIST_SORTS = ["name", "-name"] as const;
export type ListSort = (typeof LIST_SORTS)[number];

export const PAGE_SIZE = 50;

export type EntryType = "user" | "group";

export interface ListEntry {
  type: EntryType;
  id: number;
  name: string;
  /** A user's full name, a group's description. */
  detail: string;
  email: string;
  kind: "internal" | "external";
  directoryName: string | null;
  /** Null for groups, which don't sign in. */
  enabled: boolean | null;
  missingInDirectory: boolean;
  lastActivityAt: Date | null;
}

export type ListCounts = Record<ListFilter, number> & {
  /** Counts that are lower bounds: a search matched more rows than it collects (DENSE_MATCHES). */
  atLeast: Record<ListFilter, boolean>;
};

/** A count as shown beside a filter: a lower bound is rounded down to two digits and gets a "+". */
export function formatCount(counts: ListCounts, filter: ListFilter): string {
  const n = counts[filter];
  if (!counts.atLeast[filter]) return n.toLocaleString("en");
  const unit = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(n, 1))) - 1);
  return `${(Math.floor(n / unit) * unit).toLocaleString("en")}+`;
}

/** Where a page starts: the sort key of the row before it (or after it, going back). */
export interface Cursor {
  key: string;
  /** 0 for users, 1 for groups: a user and a group may share a name. */
  rank: 0 | 1;
}

/** What a picker may list besides the filters: users of both kinds, or groups of both kinds. */
export type ListScope = ListFilter | "users" | "groups";

export interface ListQuery {
  filter: ListScope;
  search: string;
  sort: ListSort;
  after?: Cursor | null;
  before?: Cursor | null;
  pageSize?: number;
}

export interface ListPage {
  entries: ListEntry[];
  counts: ListCounts;
  /** Cursors for the neighbouring pages, null when there is none. */
  next: Cursor | null;
  previous: Cursor | null;
}

/** Escapes LIKE's own wildcards so a typed `%` or `_` matches itself. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.key, cursor.rank]), "utf8").toString("base64url");
}

export function decodeCursor(text: unknown): Cursor | null {
  if (typeof text !== "string" || text === "" || text.length > 2000) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
    if (!Array.isArray(value) || typeof value[0] !== "string" || (value[1] !== 0 && value[1] !== 1))
      return null;
    return { key: value[0], rank: value[1] };
  } catch {
    return null;
  }
}

interface Scope {
  users: boolean;
  groups: boolean;
  kind: "internal" | "external" | null;
}

function scopeOf(filter: ListScope): Scope {
  switch (filter) {
    case "users":
      return { users: true, groups: false, kind: null };
    case "groups":
      return { users: false, groups: true, kind: null };
    case "internal-users":
      return { users: true, groups: false, kind: "internal" };
    case "external-users":
      return { users: true, groups: false, kind: "external" };
    case "internal-groups":
      return { users: false, groups: true, kind: "internal" };
    case "external-groups":
      return { users: false, groups: true, kind: "external" };
    default:
      return { users: true, groups: true, kind: null };
  }
}

interface Direction {
  /** Scanning forwards in the chosen sort order (false when paging back with `before`). */
  ascending: boolean;
  cursor: Cursor | null;
}

function directionOf(query: ListQuery): Direction {
  const forwardSort = query.sort === "name";
  if (query.before) return { ascending: !forwardSort, cursor: query.before };
  return { ascending: forwardSort, cursor: query.after ?? null };
}

/**
 * The keyset condition for one table. Rows are ordered by (key, rank); within a table the rank is
 * constant and the key unique, so "after (k, r)" is `key > k`, or `key >= k` when this table's rank
 * comes after the cursor's.
 */
function keysetCondition(column: SQL, rank: 0 | 1, direction: Direction): SQL {
  const { cursor, ascending } = direction;
  if (!cursor) return sql`true`;
  const inclusive = ascending ? rank > cursor.rank : rank < cursor.rank;
  const op = ascending ? (inclusive ? sql`>=` : sql`>`) : inclusive ? sql`<=` : sql`<`;
  return sql`${column} ${op} ${cursor.key}`;
}

const ASC = sql`asc`;
const DESC = sql`desc`;

/**
 * A search collects at most this many matches per table. Fewer: they are all there is, counted
 * exactly and sorted in memory. More: the search is "dense", walking the name index while testing
 * each row finds a page within a few hundred rows, and the counts are lower bounds.
 */
export const DENSE_MATCHES = 5000;

interface Table {
  name: "users" | "groups";
  rank: 0 | 1;
  key: SQL;
  /** Whether the list's filter shows this table's rows. */
  shown: boolean;
}

function tables(scope: Scope): Table[] {
  return [
    { name: "users", rank: 0, key: sql.raw("username_key"), shown: scope.users },
    { name: "groups", rank: 1, key: sql.raw("name_key"), shown: scope.groups },
  ];
}

/**
 * One statement for a page and the counts beside the filters. Each table contributes its first
 * `limit` rows after the cursor and the runs are merged.
 *
 * Without a search, each table's key index (for internal users, their own partial index) is walked
 * in order; internal rows are counted on that index and external ones are the table's total less
 * those, both index-only scans. With one, each table's matches are collected first, up to
 * DENSE_MATCHES + 1 — MATERIALIZED, so the planner can't trade the trigram index for a walk along
 * the name index that may pass most of the table before it finds a match. When the collection is complete it is
 * counted and sorted; when it overflowed, the walk is the right plan after all, and a gate (a
 * one-time filter on the collection's size) runs it instead. Users match as userSearchCondition
 * says, given `reachesEmails` (searchReachesEmails' answer for the search).
 */
export function listQuery(query: ListQuery, limit: number, reachesEmails = false): SQL {
  const scope = scopeOf(query.filter);
  const direction = directionOf(query);
  const order = direction.ascending ? ASC : DESC;
  // A literal, not a parameter: only then can the planner use users' index of internal names,
  // which is partial (a generic plan for `kind = $1` can't prove the index covers the rows).
  const kindCondition = scope.kind ? kindIs(scope.kind) : sql`true`;
  const pattern = query.search ? patternLiteral(likePattern(query.search)) : null;
  // Numbers as literals too: a statement without parameters is planned once per connection and its
  // plan reused (a search's text is in the statement anyway), where parameters had it planned anew.
  const rows = sql.raw(String(Math.max(1, Math.trunc(limit))));
  const dense = sql.raw(String(DENSE_MATCHES));
  const collected = sql.raw(String(DENSE_MATCHES + 1));

  const ctes: SQL[] = [];
  const counts: SQL[] = [];
  const parts: SQL[] = [];
  for (const table of tables(scope)) {
    const from = sql.raw(table.name);
    const keyset = keysetCondition(table.key, table.rank, direction);
    const rank = sql.raw(String(table.rank));
    const walk = (match: SQL) => sql`(select ${rank} as rank, id, ${table.key} as key from ${from}
        where ${kindCondition} and ${keyset} and ${match} order by ${table.key} ${order} limit ${rows})`;
    if (pattern === null) {
      // Internal rows are counted on their own index (once); external ones are the rest of the table.
      const internal = sql.raw(`${table.name}_internal`);
      ctes.push(sql`${internal} as (select count(*)::int as n from ${from} where ${kindIs("internal")})`);
      counts.push(sql`(select n from ${internal}) as ${countColumn(table, "internal")}`);
      counts.push(
        sql`(select count(*)::int from ${from}) - (select n from ${internal}) as ${countColumn(table, "external")}`,
      );
      if (table.shown) parts.push(walk(sql`true`));
      continue;
    }
    const match =
      table.name === "users"
        ? userSearchCondition(query.search, reachesEmails)
        : sql`search_text like ${pattern}`;
    const found = sql.raw(`${table.name}_found`);
    const size = sql`(select count(*) from ${found})`;
    ctes.push(sql`${found} as materialized (select id, ${table.key} as key, kind from ${from}
        where ${match} limit ${collected})`);
    // Past DENSE_MATCHES the collection is a sample, so its counts are lower bounds ("3,300+").
    for (const kind of KINDS) {
      counts.push(
        sql`(select count(*)::int from ${found} where ${kindIs(kind)}) as ${countColumn(table, kind)}`,
      );
    }
    counts.push(sql`${size} > ${dense} as ${sql.raw(`${table.name}_overflow`)}`);
    if (!table.shown) continue;
    parts.push(sql`(select ${rank} as rank, id, key from ${found}
        where ${size} <= ${dense} and ${kindCondition}
          and ${keysetCondition(sql`key`, table.rank, direction)}
        order by key ${order} limit ${rows})`);
    parts.push(walk(sql`${size} > ${dense} and ${match}`));
  }
  const withClause = ctes.length > 0 ? sql`with ${sql.join(ctes, sql`, `)} ` : sql``;
  return sql`${withClause}select counts.*, page.rank, page.id, page.key
    from (select ${sql.join(counts, sql`, `)}) as counts
    left join (
      select rank, id, key from (${sql.join(parts, sql` union all `)}) as parts
      order by key ${order}, rank ${order} limit ${rows}
    ) as page on true
    order by page.key ${order}, page.rank ${order}`;
}

const KINDS = ["internal", "external"] as const;

function kindIs(kind: (typeof KINDS)[number]): SQL {
  return sql.raw(`kind = '${kind}'`);
}

function countColumn(table: Table, kind: (typeof KINDS)[number]): SQL {
  return sql.raw(`${kind}_${table.name}`);
}

interface IdRow {
  rank: 0 | 1;
  id: number;
  key: string;
}

export async function listEntries(db: Db, query: ListQuery): Promise<ListPage> {
  const pageSize = query.pageSize ?? PAGE_SIZE;
  const reachesEmails = query.search ? await searchReachesEmails(db, query.search) : false;
  const result = await queryRows<ResultRow>(db, listQuery(query, pageSize + 1, reachesEmails));
  const counts = countsOf(result[0]);
  const rows = result
    .filter((r) => r.id !== null && r.rank !== null && r.key !== null)
    .map((r) => ({
      rank: Number(r.rank) === 1 ? (1 as const) : (0 as const),
      id: Number(r.id),
      key: String(r.key),
    }));
  const more = rows.length > pageSize;
  const pageRows = rows.slice(0, pageSize);
  // Paging back reads the rows in reverse; show them in the sort order.
  if (query.before) pageRows.reverse();
  const entries = await loadEntries(db, pageRows);
  const cursorOf = (row: IdRow | undefined): Cursor | null => (row ? { key: row.key, rank: row.rank } : null);
  const first = cursorOf(pageRows[0]);
  const last = cursorOf(pageRows[pageRows.length - 1]);
  if (query.before) {
    // Paging back: the page we came from follows; another precedes only if more rows were read.
    return { entries, counts, next: last, previous: more ? first : null };
  }
  return { entries, counts, next: more ? last : null, previous: query.after ? first : null };
}

interface ResultRow {
  internal_users: number;
  external_users: number;
  internal_groups: number;
  external_groups: number;
  users_overflow?: boolean;
  groups_overflow?: boolean;
  rank: number | null;
  id: number | null;
  key: string | null;
}

function countsOf(row: ResultRow | undefined): ListCounts {
  const usersPartial = row?.users_overflow === true;
  const groupsPartial = row?.groups_overflow === true;
  const internalUsers = Number(row?.internal_users ?? 0);
  const externalUsers = Number(row?.external_users ?? 0);
  const internalGroups = Number(row?.internal_groups ?? 0);
  const externalGroups = Number(row?.external_groups ?? 0);
  return {
    all: internalUsers + externalUsers + internalGroups + externalGroups,
    "internal-users": internalUsers,
    "external-users": externalUsers,
    "internal-groups": internalGroups,
    "external-groups": externalGroups,
    atLeast: {
      all: usersPartial || groupsPartial,
      "internal-users": usersPartial,
      "external-users": usersPartial,
      "internal-groups": groupsPartial,
      "external-groups": groupsPartial,
    },
  };
}

interface EntryRow {
  rank: number;
  id: number;
  name: string;
  detail: string;
  email: string;
  kind: "internal" | "external";
  directory_name: string | null;
  enabled: boolean | null;
  missing_in_directory: boolean;
  last_activity_at: string | Date | null;
}

/** The displayed columns of the rows on a page, by primary key. */
async function loadEntries(db: Db, rows: IdRow[]): Promise<ListEntry[]> {
  if (rows.length === 0) return [];
  const userIds = rows.filter((r) => r.rank === 0).map((r) => r.id);
  const groupIds = rows.filter((r) => r.rank === 1).map((r) => r.id);
  const idList = (ids: number[]) =>
    ids.length > 0
      ? sql.join(
          ids.map((id) => sql`${id}`),
          sql`, `,
        )
      : sql`null`;
  const found = await queryRows<EntryRow>(
    db,
    sql`select 0 as rank, u.id, u.username as name, u.full_name as detail, u.email, u.kind,
          d.name as directory_name, u.enabled, u.missing_in_directory, u.last_activity_at
        from users u left join directories d on d.id = u.directory_id
        where u.id in (${idList(userIds)})
        union all
        select 1 as rank, g.id, g.name, g.description, '' as email, g.kind,
          d.name, null::boolean, g.missing_in_directory, null::timestamptz
        from groups g left join directories d on d.id = g.directory_id
        where g.id in (${idList(groupIds)})`,
  );
  const byKey = new Map(found.map((r) => [`${Number(r.rank)}:${Number(r.id)}`, r]));
  return rows.flatMap((row) => {
    const r = byKey.get(`${row.rank}:${row.id}`);
    if (!r) return [];
    return [
      {
        type: row.rank === 0 ? "user" : "group",
        id: row.id,
        name: r.name,
        detail: r.detail,
        email: r.email,
        kind: r.kind,
        directoryName: r.directory_name,
        enabled: r.enabled,
        missingInDirectory: r.missing_in_directory,
        lastActivityAt: r.last_activity_at ? new Date(r.last_activity_at) : null,
      } satisfies ListEntry,
    ];
  });
}
