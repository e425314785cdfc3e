import { type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { isStorableText, isTimestampText, likePattern } from "./names.ts";
import { type EmailReach, patternLiteral, searchReachesEmails, userSearchCondition } from "./user-search.ts";

/**
 * The Users application's one list of users and groups: filtered by kind, searched
 * case-insensitively, sorted by name and paged by keyset (never OFFSET), fast at 1,000,000 users.
 */

export const LIST_FILTERS = [
  "all",
  "internal-users",
  "external-users",
  "internal-groups",
  "external-groups",
] as const;
export type ListFilter = (typeof LIST_FILTERS)[number];

/** The columns the list sorts by; a leading "-" sorts the other way. */
export const SORT_COLUMNS = ["name", "kind", "directory", "status", "activity"] as const;
export type SortColumn = (typeof SORT_COLUMNS)[number];
export const LIST_SORTS = [
  "name",
  "-name",
  "kind",
  "-kind",
  "directory",
  "-directory",
  "status",
  "-status",
  "activity",
  "-activity",
] as const;
export type ListSort = (typeof LIST_SORTS)[number];

export function sortColumnOf(sort: ListSort): SortColumn {
  return (sort.startsWith("-") ? sort.slice(1) : sort) as SortColumn;
}

export const PAGE_SIZE = 50;
export const PAGE_SIZES = [25, 50, 100, 200] as const;

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
  /** Counts that are the database's estimates: more rows than COUNT_LIMIT, which an exact count would cost. */
  about: Record<ListFilter, boolean>;
};

/**
 * Without a search, rows are counted exactly up to this many per table and kind; past it the counts
 * are PostgreSQL's own estimates (pg_class, pg_stats), as counting a million rows costs ~300 ms.
 */
export const COUNT_LIMIT = 10_000;

/**
 * A count as shown beside a filter: a lower bound is rounded down to two digits and gets a "+", an
 * estimate is rounded to two digits and says "about".
 */
export function formatCount(counts: ListCounts, filter: ListFilter): string {
  const n = counts[filter];
  if (counts.about[filter]) return `about ${roundEstimate(n).toLocaleString("en")}`;
  if (!counts.atLeast[filter]) return n.toLocaleString("en");
  const unit = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(n, 1))) - 1);
  return `${(Math.floor(n / unit) * unit).toLocaleString("en")}+`;
}

/** An estimate to two significant digits: its other digits would claim a precision it doesn't have. */
export function roundEstimate(n: number): number {
  const unit = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(n, 1))) - 1);
  return Math.round(n / unit) * unit;
}

/** Where a page starts: the sort key of the row before it (or after it, going back). */
export interface Cursor {
  key: string;
  /** 0 for users, 1 for groups: a user and a group may share a name. */
  rank: 0 | 1;
  /** Sorting by another column than the name: the row's partition (see partitionsOf), 0 otherwise. */
  part?: number;
  /** Sorting by last activity: the row's time as PostgreSQL prints it (microseconds kept). */
  value?: string | null;
}

/** What a picker may list besides the filters: users of both kinds, or groups of both kinds. */
export type ListScope = ListFilter | "users" | "groups";

export interface ListQuery {
  filter: ListScope;
  search: string;
  sort: ListSort;
  after?: Cursor | null;
  before?: Cursor | null;
  /** The last page: read back from the end of the list. */
  end?: boolean;
  pageSize?: number;
}

export interface ListPage {
  entries: ListEntry[];
  counts: ListCounts;
  /** Cursors for the neighbouring pages, null when there is none. */
  next: Cursor | null;
  previous: Cursor | null;
}

export function encodeCursor(cursor: Cursor): string {
  const parts: unknown[] = [cursor.key, cursor.rank];
  if (cursor.part || cursor.value) parts.push(cursor.part ?? 0, cursor.value ?? null);
  return Buffer.from(JSON.stringify(parts), "utf8").toString("base64url");
}

export function decodeCursor(text: unknown): Cursor | null {
  if (typeof text !== "string" || text === "" || text.length > 2000) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
    if (!Array.isArray(value) || typeof value[0] !== "string" || (value[1] !== 0 && value[1] !== 1))
      return null;
    const [key, rank, part = 0, at = null] = value as [string, 0 | 1, unknown, unknown];
    if (!isStorableText(key)) return null;
    if (!Number.isSafeInteger(part) || (part as number) < 0 || (part as number) > 10_000) return null;
    if (at !== null && (typeof at !== "string" || !isTimestampText(at))) return null;
    return { key, rank, part: part as number, value: at as string | null };
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
  /** Reading the list in its order (false when paging back with `before`, or from the end). */
  forward: boolean;
  /** Within a partition, rows are read in ascending order. */
  ascending: boolean;
  cursor: Cursor | null;
}

function directionOf(query: ListQuery): Direction {
  const sortAscending = !query.sort.startsWith("-");
  if (query.before) return { forward: false, ascending: !sortAscending, cursor: query.before };
  if (query.end && !query.after) return { forward: false, ascending: !sortAscending, cursor: null };
  return { forward: true, ascending: sortAscending, cursor: query.after ?? null };
}

/**
 * A run of the list's order. Sorting by a column other than the name splits the list into runs
 * (external, then internal; each directory in turn; disabled, then enabled…) that are each in name
 * order, so every run is one walk along an index of names and a page reads only the runs it reaches.
 */
export interface Partition {
  /** Which users and which groups it holds (a condition on their columns); null: none. */
  users: SQL | null;
  groups: SQL | null;
  /** Ordered by last activity, then the name. */
  byActivity?: boolean;
}

/**
 * The runs of a sort, in the order shown. Rows a column says nothing of (a group's sign-in status or
 * last activity, an internal user's directory) come last both ways. `directoryOrder`: the ids of
 * the directories by name.
 */
export function partitionsOf(sort: ListSort, directoryOrder: number[]): Partition[] {
  const descending = sort.startsWith("-");
  const both = (condition: string): Partition => ({ users: sql.raw(condition), groups: sql.raw(condition) });
  const inOrder = (parts: Partition[]) => (descending ? parts.reverse() : parts);
  switch (sortColumnOf(sort)) {
    case "kind":
      return inOrder([both("kind = 'external'"), both("kind = 'internal'")]);
    case "directory":
      return [
        ...inOrder(directoryOrder.map((id) => both(`directory_id = ${Math.trunc(id)}`))),
        // What a deleted directory left, then internal users and groups, which have none.
        both("directory_id is null and kind = 'external'"),
        both("directory_id is null and kind = 'internal'"),
      ];
    case "status":
      return [
        ...inOrder([
          { users: sql.raw("not enabled"), groups: null },
          { users: sql.raw("enabled"), groups: null },
        ]),
        { users: null, groups: sql`true` },
      ];
    case "activity":
      return [
        { users: sql.raw("last_activity_at is not null"), groups: null, byActivity: true },
        { users: sql.raw("last_activity_at is null"), groups: null },
        { users: null, groups: sql`true` },
      ];
    default:
      return [{ users: sql`true`, groups: sql`true` }];
  }
}

/**
 * The keyset condition for one table in one partition, or null when the cursor lies past the whole
 * partition. Rows are ordered by (partition, [activity,] key, rank); within a table the rank is
 * constant and the key unique, so "after (k, r)" is `key > k`, or `key >= k` when this table's rank
 * comes after the cursor's.
 */
function keysetCondition(
  index: number,
  partition: Partition,
  column: SQL,
  rank: 0 | 1,
  direction: Direction,
): SQL | null {
  const { cursor, ascending, forward } = direction;
  if (!cursor) return sql`true`;
  const cursorPart = cursor.part ?? 0;
  if (index !== cursorPart) return (forward ? index > cursorPart : index < cursorPart) ? sql`true` : null;
  const inclusive = ascending ? rank > cursor.rank : rank < cursor.rank;
  const op = ascending ? (inclusive ? sql`>=` : sql`>`) : inclusive ? sql`<=` : sql`<`;
  if (partition.byActivity && cursor.value) {
    return sql`(last_activity_at, ${column}) ${op} (${cursor.value}::timestamptz, ${cursor.key})`;
  }
  return sql`${column} ${op} ${cursor.key}`;
}

const ASC = sql`asc`;
const DESC = sql`desc`;

/**
 * A search collects at most this many matches per table. Fewer: they are all there is, counted
 * exactly and sorted in memory. More: the search is "dense", walking the name index while testing
 * each row finds a page within a few hundred rows (see DENSE_WALK), and the counts are lower bounds.
 */
export const DENSE_MATCHES = 5000;

/**
 * A dense search walks the names from the cursor, testing each, at most this many: matches spread
 * over the names fill a page within a few hundred. When they leave the page short (matches bunched
 * further on: "zoë" among a million names, all at the end), the matches past the names walked are
 * collected and sorted instead (from the trigram index, or one scan of the table for a text under
 * three characters), which costs their number rather than the names before them: at 1,000,000
 * users, a few hundred milliseconds instead of seconds.
 */
export const DENSE_WALK = 20_000;

interface WalkOptions {
  /** Whether the search is dense (a one-time filter). */
  isDense: SQL;
  /** The partition's rows after the cursor (kind, partition, keyset), dense or none. */
  base: SQL;
  match: SQL;
  ascending: boolean;
  pastWalks: boolean;
}

/** The id of the row a short walk leaves where it stopped, when its matches past it are not read. */
export const PAST_WALK_MARKER = -1;

/** A dense search's run of one partition: the bounded walk, then what lies past it (see DENSE_WALK). */
function boundedWalk(
  table: Table,
  index: number,
  { isDense, base, match, ascending, pastWalks }: WalkOptions,
  rows: SQL,
  ctes: SQL[],
): Run[] {
  const from = sql.raw(table.name);
  const key = table.key;
  const order = ascending ? ASC : DESC;
  const walk = sql.raw(String(DENSE_WALK));
  const walked = sql.raw(`${table.name}_walked_${index}`);
  ctes.push(sql`${walked} as (select id, key from (
      select id, ${key} as key, search_text from ${from} where ${base} order by ${key} ${order} limit ${walk}
    ) as w where ${match} order by key ${order} limit ${rows})`);
  // Where the walk stopped, and only when the search is dense and the walk left the page short: then
  // the matches past it are read. (Not within the lateral subquery: the planner may run that one in
  // parallel, and parallel workers start before its own one-time filters are tested.)
  const past = sql.raw(`${table.name}_past_${index}`);
  ctes.push(sql`${past} as (select (select ${sql.raw(ascending ? "max" : "min")}(k) from (
      select ${key} as k from ${from} where ${base} order by ${key} ${order} limit ${walk}) as walk) as boundary
    where ${isDense} and (select count(*) from ${walked}) < ${rows})`);
  const head = sql`${sql.raw(String(index))} as part, null::timestamptz as v, ${sql.raw(String(table.rank))} as rank`;
  const walkedRun = { part: index, query: sql`(select ${head}, id, key from ${walked})` };
  if (!pastWalks) {
    return [
      walkedRun,
      { part: index, query: sql`(select ${head}, ${PAST_WALK_MARKER} as id, boundary as key from ${past})` },
    ];
  }
  return [
    walkedRun,
    {
      part: index,
      // Lateral, so that it runs once per row of the CTE (none when the walk filled the page);
      // ordered and bounded by an expression no index provides, so that the planner collects and
      // sorts the matches rather than walking the names again.
      query: sql`(select ${head}, id, key from ${past} cross join lateral (
          select id, ${key} as key from ${from}
          where ${base} and ${match} and ${key} || '' ${ascending ? sql`>` : sql`<`} ${past}.boundary
          order by ${key} || '' ${order} limit ${rows}) as rest)`,
    },
  ];
}

interface Table {
  name: "users" | "groups";
  rank: 0 | 1;
  key: SQL;
  /** Whether the list's filter shows this table's rows. */
  shown: boolean;
  /** The columns a partition's condition may name, collected with a search's matches. */
  sortColumns: string;
}

function tables(scope: Scope): Table[] {
  return [
    {
      name: "users",
      rank: 0,
      key: sql.raw("username_key"),
      shown: scope.users,
      sortColumns: ", directory_id, enabled, last_activity_at",
    },
    { name: "groups", rank: 1, key: sql.raw("name_key"), shown: scope.groups, sortColumns: ", directory_id" },
  ];
}

export interface ListQueryOptions {
  /** The directories' ids by name, for sorting by directory. */
  directoryOrder?: number[];
  /** False: no counts beside the filters (an export reads pages and needs none). */
  counts?: boolean;
  /**
   * Read the matches past a dense search's bounded walk (see DENSE_WALK). Without it, a walk that came
   * up short leaves a marker row (id -1) where it stopped instead, and the statement stays cheap for
   * the planner: those reads, even never run, weigh enough in its estimate to have it JIT-compile
   * the statement (70-150 ms). runListQuery asks again with it when a marker lands on the page.
   */
  pastWalks?: boolean;
}

/**
 * One statement for a page and the counts beside the filters. Each table contributes, for each
 * partition of the sort (see partitionsOf), its first `limit` rows after the cursor, and the runs
 * are merged.
 *
 * Without a search, each table's key index (for internal users, their own partial index) is walked
 * in order, and the counts are exact up to COUNT_LIMIT, estimates past it (tableCounts). With one, each table's matches are collected first, up to
 * DENSE_MATCHES + 1 — MATERIALIZED, so the planner can't trade the trigram index for a walk along
 * the name index that may pass most of the table before it finds a match. When the collection is complete it is
 * counted and sorted; when it overflowed, the walk is the right plan after all, and a gate (a
 * one-time filter on the collection's size) runs it instead. Users match as userSearchCondition
 * says, given `reachesEmails` (searchReachesEmails' answer for the search).
 */
export function listQuery(
  query: ListQuery,
  limit: number,
  reachesEmails: EmailReach = false,
  options: ListQueryOptions = {},
): SQL {
  const scope = scopeOf(query.filter);
  const direction = directionOf(query);
  const order = direction.ascending ? ASC : DESC;
  const partOrder = direction.forward ? ASC : DESC;
  const partitions = partitionsOf(query.sort, options.directoryOrder ?? []);
  const byName = sortColumnOf(query.sort) === "name";
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
  const parts: Run[] = [];
  for (const table of tables(scope)) {
    const from = sql.raw(table.name);
    const rank = sql.raw(String(table.rank));
    /** Each partition's first rows after the cursor, read from `source` (the table or the matches). */
    const runs = (source: SQL, key: SQL, match: SQL): Run[] =>
      partitions.flatMap((partition, index) => {
        const condition = partition[table.name];
        const keyset = keysetCondition(index, partition, key, table.rank, direction);
        if (condition === null || keyset === null) return [];
        const value = partition.byActivity ? sql`last_activity_at` : sql`null::timestamptz`;
        const orderBy = partition.byActivity
          ? sql`last_activity_at ${order}, ${key} ${order}`
          : sql`${key} ${order}`;
        return [
          {
            part: index,
            query: sql`(select ${sql.raw(String(index))} as part, ${value} as v, ${rank} as rank, id, ${key} as key
            from ${source} where ${kindCondition} and ${condition} and ${keyset} and ${match}
            order by ${orderBy} limit ${rows})`,
          },
        ];
      });
    if (pattern === null) {
      if (options.counts !== false) counts.push(...tableCounts(table));
      if (table.shown) parts.push(...runs(from, table.key, sql`true`));
      continue;
    }
    const match =
      table.name === "users"
        ? userSearchCondition(query.search, reachesEmails)
        : sql`search_text like ${pattern}`;
    const found = sql.raw(`${table.name}_found`);
    const sized = sql.raw(`${table.name}_found_size`);
    // Counted once: several one-time filters ask.
    const size = sql`(select n from ${sized})`;
    const columns = sql.raw(byName ? "" : table.sortColumns);
    ctes.push(sql`${found} as materialized (select id, ${table.key} as key, kind${columns} from ${from}
        where ${match} limit ${collected})`);
    ctes.push(sql`${sized} as materialized (select count(*) as n from ${found})`);
    // Past DENSE_MATCHES the collection is a sample, so its counts are lower bounds ("3,300+").
    for (const kind of KINDS) {
      counts.push(
        sql`(select count(*)::int from ${found} where ${kindIs(kind)}) as ${countColumn(table, kind)}`,
      );
    }
    counts.push(sql`${size} > ${dense} as ${sql.raw(`${table.name}_overflow`)}`);
    if (!table.shown) continue;
    parts.push(...runs(found, sql`key`, sql`${size} <= ${dense}`));
    // Dense: the walk along the names, bounded (see DENSE_WALK); runs by activity walk their own index.
    partitions.forEach((partition, index) => {
      const condition = partition[table.name];
      const keyset = keysetCondition(index, partition, table.key, table.rank, direction);
      if (condition === null || keyset === null) return;
      if (partition.byActivity) {
        parts.push(
          ...runs(from, table.key, sql`${size} > ${dense} and ${match}`).filter((r) => r.part === index),
        );
        return;
      }
      const isDense = sql`${size} > ${dense}`;
      const base = sql`${kindCondition} and ${condition} and ${keyset} and ${isDense}`;
      const walk = {
        isDense,
        base,
        match,
        ascending: direction.ascending,
        pastWalks: options.pastWalks === true,
      };
      parts.push(...boundedWalk(table, index, walk, rows, ctes));
    });
  }
  if (counts.length === 0) counts.push(sql`true as uncounted`);
  const pageOrder = sql`part ${partOrder}, v ${order}, key ${order}, rank ${order}`;
  const page = pageRows(parts, direction.forward, pageOrder, rows, ctes);
  const withClause = ctes.length > 0 ? sql`with ${sql.join(ctes, sql`, `)} ` : sql``;
  return sql`${withClause}select counts.*, page.part, page.v::text as value, page.rank, page.id, page.key
    from (select ${sql.join(counts, sql`, `)}) as counts
    left join (${page}) as page on true
    order by page.part ${partOrder}, page.v ${order}, page.key ${order}, page.rank ${order}`;
}

/** One table's first rows of one partition after the cursor. */
interface Run {
  part: number;
  query: SQL;
}

/**
 * The page: the runs merged in the list's order, `rows` of them. With several partitions each is
 * read only when those before it (in reading order) left the page short — a one-time filter the
 * executor checks before starting the partition's scans — so a sparse later partition (users never
 * active, a directory's deleted users) costs nothing while an earlier one fills the page.
 */
function pageRows(runs: Run[], forward: boolean, pageOrder: SQL, rows: SQL, ctes: SQL[]): SQL {
  if (runs.length === 0) {
    return sql`select 0 as part, null::timestamptz as v, 0 as rank, 0 as id, '' as key where false`;
  }
  const byPart = new Map<number, SQL[]>();
  for (const run of runs) byPart.set(run.part, [...(byPart.get(run.part) ?? []), run.query]);
  const order = [...byPart.keys()].sort((a, b) => (forward ? a - b : b - a));
  const merged = (queries: SQL[]) =>
    sql`select part, v, rank, id, key from (${sql.join(queries, sql` union all `)}) as r`;
  if (order.length === 1)
    return sql`${merged(byPart.get(order[0] as number) ?? [])} order by ${pageOrder} limit ${rows}`;
  const names: SQL[] = [];
  for (const part of order) {
    const name = sql.raw(`page_part_${part}`);
    const earlier = names.map((n) => sql`select 1 from ${n}`);
    const gate =
      earlier.length === 0
        ? sql`true`
        : sql`(select count(*) from (${sql.join(earlier, sql` union all `)}) as earlier) < ${rows}`;
    ctes.push(
      sql`${name} as (${merged(byPart.get(part) ?? [])} where ${gate} order by ${pageOrder} limit ${rows})`,
    );
    names.push(name);
  }
  const all = names.map((n) => sql`select part, v, rank, id, key from ${n}`);
  return sql`select part, v, rank, id, key from (${sql.join(all, sql` union all `)}) as parts
    order by ${pageOrder} limit ${rows}`;
}

const KINDS = ["internal", "external"] as const;

/**
 * Without a search: a table's rows and its internal rows counted up to COUNT_LIMIT + 1 (index-only
 * scans that stop there; internal users on their partial index), and PostgreSQL's estimates for
 * when there are more: the table's rows at its last ANALYZE scaled to its size now (as the planner
 * scales them), and the share of internal rows in its statistics.
 */
function tableCounts(table: Table): SQL[] {
  const from = sql.raw(table.name);
  const capped = sql.raw(String(COUNT_LIMIT + 1));
  const column = (suffix: string) => sql.raw(`${table.name}_${suffix}`);
  return [
    sql`(select count(*)::int from (select 1 from ${from} limit ${capped}) as s) as ${column("total")}`,
    sql`(select count(*)::int from (select 1 from ${from} where ${kindIs("internal")} limit ${capped}) as s)
      as ${column("internal")}`,
    sql`(select case when c.reltuples < 0 then null when c.relpages = 0 then c.reltuples::float8
          else c.reltuples::float8 / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int) end
        from pg_class c where c.oid = ${sql.raw(`'${table.name}'::regclass`)}) as ${column("estimate")}`,
    sql`(select m.share from pg_stats s,
          unnest(s.most_common_vals::text::text[], s.most_common_freqs) as m(value, share)
        where s.schemaname = current_schema() and s.tablename = ${sql.raw(`'${table.name}'`)}
          and s.attname = 'kind' and m.value = 'internal') as ${column("internal_share")}`,
  ];
}

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
  part: number;
  value: string | null;
}

/** What listEntries needs besides the query: whether the search reads emails, the directories' order. */
async function queryContext(db: Db, query: ListQuery) {
  const [reachesEmails, directoryOrder] = await Promise.all([
    query.search ? searchReachesEmails(db, query.search) : false,
    sortColumnOf(query.sort) === "directory" ? directoryIdsByName(db) : [],
  ]);
  return { reachesEmails, directoryOrder };
}

async function directoryIdsByName(db: Db): Promise<number[]> {
  const rows = await queryRows<{ id: number }>(db, sql`select id from directories order by lower(name), id`);
  return rows.map((r) => Number(r.id));
}

function idRowsOf(result: ResultRow[]): IdRow[] {
  return result
    .filter((r) => r.id !== null && r.rank !== null && r.key !== null)
    .map((r) => ({
      rank: Number(r.rank) === 1 ? (1 as const) : (0 as const),
      id: Number(r.id),
      key: String(r.key),
      part: Number(r.part ?? 0),
      value: r.value ?? null,
    }));
}

function cursorOf(row: IdRow | undefined): Cursor | null {
  return row ? { key: row.key, rank: row.rank, part: row.part, value: row.value } : null;
}

/**
 * How many rows the list shows for its filter (or a picker's scope), and whether that is a lower
 * bound (`atLeast`) or an estimate (`about`).
 */
export function totalOf(
  counts: ListCounts,
  scope: ListScope,
): { total: number; atLeast: boolean; about: boolean } {
  const filters: ListFilter[] =
    scope === "users"
      ? ["internal-users", "external-users"]
      : scope === "groups"
        ? ["internal-groups", "external-groups"]
        : [scope];
  const atLeast = filters.some((f) => counts.atLeast[f]);
  return {
    total: filters.reduce((sum, f) => sum + counts[f], 0),
    atLeast,
    about: !atLeast && filters.some((f) => counts.about[f]),
  };
}

/**
 * The list's statement, and again reading past the dense walks when one came up short within the
 * rows asked for (its marker among them): rows after the marker may be missing matches.
 */
async function runListQuery(
  db: Db,
  query: ListQuery,
  limit: number,
  reachesEmails: EmailReach,
  options: ListQueryOptions,
): Promise<ResultRow[]> {
  const result = await queryRows<ResultRow>(db, listQuery(query, limit, reachesEmails, options));
  if (!result.some((r) => Number(r.id) === PAST_WALK_MARKER)) return result;
  return queryRows<ResultRow>(db, listQuery(query, limit, reachesEmails, { ...options, pastWalks: true }));
}

export async function listEntries(db: Db, query: ListQuery): Promise<ListPage> {
  const pageSize = query.pageSize ?? PAGE_SIZE;
  const { reachesEmails, directoryOrder } = await queryContext(db, query);
  const result = await runListQuery(db, query, pageSize + 1, reachesEmails, { directoryOrder });
  const counts = countsOf(result[0]);
  const rows = idRowsOf(result);
  const fromEnd = Boolean(query.end && !query.after && !query.before);
  // The last page holds what is left after the full pages before it, so page numbers stay right.
  const { total, atLeast, about } = totalOf(counts, query.filter);
  const exactTotal = !atLeast && !about;
  const lastSize = fromEnd && exactTotal && total % pageSize !== 0 ? total % pageSize : pageSize;
  const more = rows.length > lastSize;
  const pageRows = rows.slice(0, lastSize);
  // Paging back reads the rows in reverse; show them in the sort order.
  if (query.before || fromEnd) pageRows.reverse();
  const entries = await loadEntries(db, pageRows);
  const first = cursorOf(pageRows[0]);
  const last = cursorOf(pageRows[pageRows.length - 1]);
  if (fromEnd) return { entries, counts, next: null, previous: more ? first : null };
  if (query.before) {
    // Paging back: the page we came from follows; another precedes only if more rows were read.
    return { entries, counts, next: last, previous: more ? first : null };
  }
  return { entries, counts, next: more ? last : null, previous: query.after ? first : null };
}

/**
 * Every row of the list as a query filters and sorts it, in batches read one after another along
 * the same keyset as the pages (without counts): memory stays that of one batch however long the list.
 */
export async function* exportEntries(
  db: Db,
  query: Pick<ListQuery, "filter" | "search" | "sort">,
  batchSize = 1000,
): AsyncGenerator<ListEntry[]> {
  const base: ListQuery = { filter: query.filter, search: query.search, sort: query.sort };
  const { reachesEmails, directoryOrder } = await queryContext(db, base);
  let after: Cursor | null = null;
  for (;;) {
    const result = await runListQuery(db, { ...base, after }, batchSize + 1, reachesEmails, {
      directoryOrder,
      counts: false,
    });
    const rows = idRowsOf(result);
    const batch = rows.slice(0, batchSize);
    if (batch.length > 0) yield await loadEntries(db, batch);
    if (rows.length <= batchSize) return;
    after = cursorOf(batch[batch.length - 1]);
  }
}

interface ResultRow {
  internal_users?: number;
  external_users?: number;
  internal_groups?: number;
  external_groups?: number;
  users_overflow?: boolean;
  groups_overflow?: boolean;
  users_total?: number;
  users_internal?: number;
  users_estimate?: number | null;
  users_internal_share?: number | null;
  groups_total?: number;
  groups_internal?: number;
  groups_estimate?: number | null;
  groups_internal_share?: number | null;
  part: number | null;
  value: string | null;
  rank: number | null;
  id: number | null;
  key: string | null;
}

interface Count {
  n: number;
  atLeast: boolean;
  about: boolean;
}

const exact = (n: number): Count => ({ n, atLeast: false, about: false });
const lowerBound = (n: number): Count => ({ n, atLeast: true, about: false });
const estimated = (n: number): Count => ({ n: Math.max(0, Math.round(n)), atLeast: false, about: true });

const numberOrNull = (value: unknown) => (value === null || value === undefined ? null : Number(value));

/** Every user and group counted by kind, as the list counts them without a search (tableCounts). */
export async function countUsersAndGroups(db: Db): Promise<ListCounts> {
  const columns = tables(scopeOf("all")).flatMap(tableCounts);
  const [row] = await queryRows<ResultRow>(db, sql`select ${sql.join(columns, sql`, `)}`);
  return countsOf(row);
}

/** A table's internal and external rows from tableCounts' columns. */
function kindCounts(
  row: ResultRow | undefined,
  table: "users" | "groups",
): { internal: Count; external: Count } {
  const total = Number(row?.[`${table}_total`] ?? 0);
  const internal = Number(row?.[`${table}_internal`] ?? 0);
  if (total <= COUNT_LIMIT) return { internal: exact(internal), external: exact(total - internal) };
  const estimate = numberOrNull(row?.[`${table}_estimate`]);
  const share = numberOrNull(row?.[`${table}_internal_share`]) ?? 0;
  if (internal <= COUNT_LIMIT) {
    // More rows than counted: the external ones are at least the rest of those counted.
    const atLeast = total - internal;
    return {
      internal: exact(internal),
      external:
        estimate !== null && estimate - internal > atLeast
          ? estimated(estimate - internal)
          : lowerBound(atLeast),
    };
  }
  if (estimate === null || estimate * share <= COUNT_LIMIT) {
    // Statistics older than the rows (or none yet): only the lower bound is known.
    return { internal: lowerBound(COUNT_LIMIT), external: lowerBound(0) };
  }
  return { internal: estimated(estimate * share), external: estimated(estimate * (1 - share)) };
}

/** The counts beside the filters: exact, lower bounds (a dense search) or estimates (see tableCounts). */
function countsOf(row: ResultRow | undefined): ListCounts {
  let users: { internal: Count; external: Count };
  let groups: { internal: Count; external: Count };
  if (row?.users_total !== undefined) {
    users = kindCounts(row, "users");
    groups = kindCounts(row, "groups");
  } else {
    const searched = (n: unknown, overflow: unknown) =>
      overflow === true ? lowerBound(Number(n ?? 0)) : exact(Number(n ?? 0));
    users = {
      internal: searched(row?.internal_users, row?.users_overflow),
      external: searched(row?.external_users, row?.users_overflow),
    };
    groups = {
      internal: searched(row?.internal_groups, row?.groups_overflow),
      external: searched(row?.external_groups, row?.groups_overflow),
    };
  }
  const byFilter: Record<Exclude<ListFilter, "all">, Count> = {
    "internal-users": users.internal,
    "external-users": users.external,
    "internal-groups": groups.internal,
    "external-groups": groups.external,
  };
  const parts = Object.values(byFilter);
  const atLeastAll = parts.some((c) => c.atLeast);
  const all: Count = {
    n: parts.reduce((sum, c) => sum + c.n, 0),
    atLeast: atLeastAll,
    about: !atLeastAll && parts.some((c) => c.about),
  };
  const entries = { all, ...byFilter };
  const pick = <T>(f: (c: Count) => T) =>
    Object.fromEntries(Object.entries(entries).map(([k, c]) => [k, f(c)])) as Record<ListFilter, T>;
  return { ...pick((c) => c.n), atLeast: pick((c) => c.atLeast), about: pick((c) => c.about) };
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
