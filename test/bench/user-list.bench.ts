/**
 * The Users list at 100,000 users (or USERS): seeds users (COPY) and groups, then runs each list
 * query under EXPLAIN ANALYZE and prints the server's own time, the plan's top nodes, and the ratio
 * to a baseline `select count(*) from users` measured in the same run; then Home's summary, and the
 * CSV export of every row with the process's peak RSS.
 *
 *   node --import tsx test/bench/user-list.bench.ts                  (embedded PGlite)
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx test/bench/user-list.bench.ts
 *
 * USERS=… and GROUPS=… change the sizes. Exits non-zero when a list query takes 50 ms or more: the
 * server's time on PostgreSQL, the time listEntries() takes on PGlite (whose WASM build makes
 * EXPLAIN ANALYZE's own timing expensive; its ratio to count(*) is the comparable figure there).
 */
import { type SQL, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { loadHomeSummary } from "../../src/services/home-summary.ts";
import { searchFold } from "../../src/services/names.ts";
import {
  encodeCursor,
  exportEntries,
  type ListQuery,
  listEntries,
  listQuery,
  PAST_WALK_MARKER,
} from "../../src/services/user-list.ts";
import { domainLookup, searchReachesEmails } from "../../src/services/user-search.ts";
import { csvLine } from "../../src/web/csv.ts";
import { createTestDatabase } from "../helpers/database.ts";
import { seedUsersAndGroups } from "./seed.ts";

const USER_COUNT = Number(process.env.USERS ?? 100_000);
const GROUP_COUNT = Number(process.env.GROUPS ?? 2_000);
const BUDGET_MS = 50;
const RUNS = 5;

const database = await createTestDatabase();
const db = database.db;

try {
  const seeded = await seedUsersAndGroups(db, USER_COUNT, GROUP_COUNT);
  console.log(`\n${database.kind}: ${USER_COUNT} users, ${GROUP_COUNT} groups seeded in ${seeded} ms\n`);

  const baseline = await serverTime(sql`select count(*) from users`);
  console.log(`baseline  select count(*) from users: ${baseline.ms.toFixed(2)} ms (server)\n`);

  const middle =
    (
      await queryRows<{ key: string }>(
        db,
        sql`select username_key as key from users order by username_key offset ${Math.floor(USER_COUNT / 2)} limit 1`,
      )
    )[0]?.key ?? "m";
  const cases: { label: string; query: ListQuery }[] = [
    { label: "first page, all", query: q({}) },
    { label: "first page, internal users", query: q({ filter: "internal-users" }) },
    { label: "first page, external users", query: q({ filter: "external-users" }) },
    { label: "first page, internal groups", query: q({ filter: "internal-groups" }) },
    { label: "first page, name descending", query: q({ sort: "-name" }) },
    { label: "middle page (keyset after)", query: q({ after: { key: middle, rank: 0 } }) },
    { label: "middle page back (keyset before)", query: q({ before: { key: middle, rank: 0 } }) },
    { label: "search 'ada' (selective)", query: q({ search: "ada" }) },
    { label: "search 'müller' (non-ASCII)", query: q({ search: "Müller" }) },
    { label: "search 'ZOË' (case, non-ASCII)", query: q({ search: "ZOË" }) },
    { label: "search 'e' (matches nearly all)", query: q({ search: "e" }) },
    { label: "search 'example.test' (all, 3+ chars)", query: q({ search: "example.test" }) },
    { label: "search '@example' (domain, after an @)", query: q({ search: "@example" }) },
    { label: "search 'rare.example' (10 users' domain)", query: q({ search: "rare.example" }) },
    { label: "search 'kim1@exa' (across the @)", query: q({ search: "kim1@exa" }) },
    { label: "search 'qqqzzz' (no match)", query: q({ search: "qqqzzz" }) },
    { label: "search 'smith', external users", query: q({ search: "smith", filter: "external-users" }) },
    { label: "search 'an', page after middle", query: q({ search: "an", after: { key: middle, rank: 0 } }) },
    { label: "search 'zo' (clustered at the end)", query: q({ search: "zo" }) },
    { label: "search 'yamamoto' (clustered)", query: q({ search: "yamamoto" }) },
    { label: "search 'ø' (folds to o, < 3 chars)", query: q({ search: "ø" }) },
    ...(
      ["kind", "-kind", "directory", "-directory", "status", "-status", "activity", "-activity"] as const
    ).map((sort) => ({ label: `first page, sort ${sort}`, query: q({ sort }) })),
    { label: "search 'smith', sort -activity", query: q({ search: "smith", sort: "-activity" }) },
  ];
  const directoryOrder = (
    await queryRows<{ id: number }>(db, sql`select id from directories order by lower(name), id`)
  ).map((r) => Number(r.id));

  // One untimed pass first, so no case pays for warming caches (PGlite's especially).
  for (const { query } of cases) await listEntries(db, query);

  // EXPLAIN ANALYZE's own timing costs a lot inside PGlite's WASM build: there the budget applies to
  // the time listEntries() takes, on PostgreSQL to the server's own figure.
  const budgetOn = database.kind === "postgres" ? "server" : "wall";
  const failures: string[] = [];
  console.log("query                                   server ms   ratio   listEntries() wall ms");
  for (const { label, query } of cases) {
    // The look at email_domains that listEntries() makes first (without an "@") is timed too.
    const folded = searchFold(query.search);
    const lookup = folded && !folded.includes("@") ? await serverTime(domainLookup(folded)) : null;
    const reaches = query.search ? await searchReachesEmails(db, query.search) : false;
    const list = await serverTime(listQuery(query, 51, reaches, { directoryOrder }));
    // A dense walk that came up short leaves its marker: listEntries then reads past it, a second statement.
    const marked = (
      await queryRows<{ id: number | null }>(db, listQuery(query, 51, reaches, { directoryOrder }))
    ).some((row) => Number(row.id) === PAST_WALK_MARKER);
    const past = marked
      ? await serverTime(listQuery(query, 51, reaches, { directoryOrder, pastWalks: true }))
      : null;
    const server = {
      ms: list.ms + (past?.ms ?? 0) + (lookup?.ms ?? 0),
      plan: past ? `${list.plan}; then past the walk: ${past.plan}` : list.plan,
    };
    const wall = await wallTime(() => listEntries(db, query));
    const ratio = server.ms / baseline.ms;
    console.log(
      `${label.padEnd(40)}${server.ms.toFixed(2).padStart(9)}   ${ratio.toFixed(2).padStart(5)}×   ${wall
        .toFixed(1)
        .padStart(8)}`,
    );
    console.log(`    ${server.plan}`);
    if ((budgetOn === "server" ? server.ms : wall) >= BUDGET_MS) failures.push(label);
  }
  console.log(`\ncursor example: after=${encodeCursor({ key: middle, rank: 0 })}`);

  // Home counts users and groups as the list does, and the users disabled by the directory.
  const home = await wallTime(() => loadHomeSummary(db));
  console.log(`Home summary (loadHomeSummary, every statement): ${home.toFixed(1)} ms wall`);
  if (home >= BUDGET_MS) failures.push("Home summary");

  // The CSV export: every row, read in keyset batches and turned into CSV as /users.csv does
  // (written to nowhere). Memory must stay that of a batch: the peak RSS is sampled as it runs.
  for (const sort of ["name", "-activity"] as const) {
    if (global.gc) global.gc();
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const started = performance.now();
    let rows = 0;
    let bytes = 0;
    for await (const batch of exportEntries(db, { filter: "all", search: "", sort })) {
      for (const e of batch) {
        bytes += csvLine([e.type, e.name, e.detail, e.email, e.kind, e.directoryName ?? ""]).length;
        rows += 1;
      }
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    clearInterval(sampler);
    const ms = performance.now() - started;
    console.log(
      `CSV export (sort ${sort}): ${rows} rows, ${(bytes / 1e6).toFixed(1)} MB in ${ms.toFixed(0)} ms ` +
        `(${Math.round(rows / (ms / 1000))} rows/s); RSS ${mb(rssBefore)} MB before, peak ${mb(peak)} MB`,
    );
    if (rows !== USER_COUNT + GROUP_COUNT) failures.push(`CSV export (sort ${sort}) row count`);
  }
  if (failures.length > 0) {
    console.error(`\nOver the ${BUDGET_MS} ms budget (${budgetOn} time): ${failures.join(", ")}`);
    process.exitCode = 1;
  } else {
    console.log(`\nEvery list query answered within ${BUDGET_MS} ms (${budgetOn} time).`);
  }
} finally {
  await database.destroy();
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(0);
}

function q(partial: Partial<ListQuery>): ListQuery {
  return { filter: "all", search: "", sort: "name", ...partial };
}

interface Timed {
  ms: number;
  plan: string;
}

/** The best of a few EXPLAIN ANALYZE runs (the first warms the cache), with the plan's outline. */
async function serverTime(query: SQL): Promise<Timed> {
  let best = Number.POSITIVE_INFINITY;
  let plan = "";
  for (let i = 0; i < RUNS; i++) {
    const [row] = await queryRows<{ "QUERY PLAN": unknown }>(
      db,
      sql`explain (analyze, format json) ${query}`,
    );
    const raw = row?.["QUERY PLAN"];
    const parsed = (typeof raw === "string" ? JSON.parse(raw) : raw) as {
      Plan: PlanNode;
      "Execution Time": number;
      "Planning Time": number;
    }[];
    const top = parsed[0];
    if (!top) continue;
    const ms = top["Execution Time"] + top["Planning Time"];
    if (ms < best) {
      best = ms;
      plan = outline(top.Plan);
    }
  }
  return { ms: best, plan };
}

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Relation Name"?: string;
  "Actual Rows"?: number;
  Plans?: PlanNode[];
}

/** The plan's scan nodes, e.g. `Bitmap Index Scan users_search_text_trgm_idx (312 rows)`. */
function outline(node: PlanNode): string {
  const scans: string[] = [];
  const walk = (n: PlanNode) => {
    if (/Scan/.test(n["Node Type"]) && !/CTE|Subquery/.test(n["Node Type"])) {
      scans.push(
        `${n["Node Type"]} ${n["Index Name"] ?? n["Relation Name"] ?? ""} (${n["Actual Rows"]} rows)`,
      );
    }
    for (const child of n.Plans ?? []) walk(child);
  };
  walk(node);
  return scans.join("; ");
}

async function wallTime(run: () => Promise<unknown>): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await run();
    best = Math.min(best, performance.now() - started);
  }
  return best;
}
