import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { countUsersAndGroups, roundEstimate, totalOf } from "./user-list.ts";

/**
 * What an administrator opens Home for: how many users, groups and directories there are, the last
 * imports and synchronizations with their outcome, and the directories that need a look.
 * A few statements, each cheap at a million users: users and groups are counted as the Users list
 * counts them (exactly up to COUNT_LIMIT, PostgreSQL's estimates past it), users disabled by the
 * directory on their own partial index, and the runs walk the primary key.
 */

export interface HomeCounts {
  internalUsers: number;
  externalUsers: number;
  groups: number;
  directories: number;
  disabledByDirectory: number;
  /** Which of the counts are estimates (see countUsersAndGroups). */
  about: { internalUsers: boolean; externalUsers: boolean; groups: boolean };
}

export interface RecentRun {
  id: number;
  kind: "import" | "synchronization";
  directoryName: string;
  status: string;
  created: number;
  updated: number;
  unchanged: number;
  skipped: number;
  failed: number;
  error: string | null;
  /** When it ended, or started, or was queued: the latest of these it has. */
  at: Date;
}

export interface DirectoryProblem {
  id: number;
  name: string;
  testFailedAt: Date | null;
  run: {
    id: number;
    kind: "import" | "synchronization";
    status: string;
    error: string | null;
    at: Date;
  } | null;
}

export interface FirstStep {
  /** No directory yet: add one. A directory but nothing imported: import from it. */
  kind: "add-directory" | "import";
  directoryId?: number;
  directoryName?: string;
}

export interface HomeSummary {
  counts: HomeCounts;
  runs: RecentRun[];
  problems: DirectoryProblem[];
  firstStep: FirstStep | null;
}

export const RECENT_RUNS = 6;

export async function loadHomeSummary(db: Db): Promise<HomeSummary> {
  const [counts, runs, problems] = await Promise.all([loadCounts(db), recentRuns(db), directoryProblems(db)]);
  return { counts, runs, problems, firstStep: await firstStepOf(db, counts, runs) };
}

async function loadCounts(db: Db): Promise<HomeCounts> {
  const [listed, [row]] = await Promise.all([
    countUsersAndGroups(db),
    // `where disabled_by_directory` as written, so that its partial index answers.
    queryRows<Record<string, number | string>>(
      db,
      sql`select
        (select count(*) from users where disabled_by_directory)::int as disabled_by_directory,
        (select count(*) from directories)::int as directories`,
    ),
  ]);
  const n = (key: string) => Number(row?.[key] ?? 0);
  const groups = totalOf(listed, "groups");
  // An estimate's last digits mean nothing: 668,113 is shown as 670,000.
  const shown = (n: number, estimated: boolean) => (estimated ? roundEstimate(n) : n);
  return {
    internalUsers: shown(listed["internal-users"], listed.about["internal-users"]),
    externalUsers: shown(listed["external-users"], listed.about["external-users"]),
    groups: shown(groups.total, groups.about),
    directories: n("directories"),
    disabledByDirectory: n("disabled_by_directory"),
    about: {
      internalUsers: listed.about["internal-users"] || listed.atLeast["internal-users"],
      externalUsers: listed.about["external-users"] || listed.atLeast["external-users"],
      groups: groups.about || groups.atLeast,
    },
  };
}

interface RunRow {
  id: number;
  kind: "import" | "synchronization";
  directory_name: string;
  status: string;
  created: number;
  updated: number;
  unchanged: number;
  skipped: number;
  failed: number;
  error: string | null;
  at: string | Date;
}

async function recentRuns(db: Db): Promise<RecentRun[]> {
  // By id, not created_at: ids grow with time and the primary key is the index to walk.
  const rows = await queryRows<RunRow>(
    db,
    sql`select id, kind, directory_name, status, created, updated, unchanged, skipped, failed, error,
          coalesce(finished_at, started_at, created_at) as at
        from import_runs order by id desc limit ${RECENT_RUNS}`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    kind: r.kind,
    directoryName: r.directory_name,
    status: r.status,
    created: Number(r.created),
    updated: Number(r.updated),
    unchanged: Number(r.unchanged),
    skipped: Number(r.skipped),
    failed: Number(r.failed),
    error: r.error,
    at: new Date(r.at),
  }));
}

interface ProblemRow {
  id: number;
  name: string;
  last_test_ok: boolean | null;
  last_tested_at: string | Date | null;
  run_id: number | null;
  run_kind: "import" | "synchronization" | null;
  run_status: string | null;
  run_error: string | null;
  run_at: string | Date | null;
}

/** Directories whose last connection test failed or whose last finished run failed or holds removals. */
async function directoryProblems(db: Db): Promise<DirectoryProblem[]> {
  const rows = await queryRows<ProblemRow>(
    db,
    sql`select d.id, d.name, d.last_test_ok, d.last_tested_at,
          r.id as run_id, r.kind as run_kind, r.status as run_status, r.error as run_error, r.at as run_at
        from directories d
        left join lateral (
          select id, kind, status, error, coalesce(finished_at, created_at) as at from import_runs
          where directory_id = d.id and status in ('succeeded', 'failed', 'cancelled', 'held')
          order by created_at desc limit 1
        ) r on true
        where d.last_test_ok = false or r.status in ('failed', 'held')
        order by d.position`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    name: r.name,
    testFailedAt: r.last_test_ok === false && r.last_tested_at ? new Date(r.last_tested_at) : null,
    run:
      r.run_id !== null && (r.run_status === "failed" || r.run_status === "held")
        ? {
            id: Number(r.run_id),
            kind: r.run_kind ?? "import",
            status: r.run_status,
            error: r.run_error,
            at: new Date(r.run_at ?? 0),
          }
        : null,
  }));
}

async function firstStepOf(db: Db, counts: HomeCounts, runs: RecentRun[]): Promise<FirstStep | null> {
  if (counts.externalUsers > 0 || counts.groups > 0 || runs.length > 0) return null;
  if (counts.directories === 0) return { kind: "add-directory" };
  const [directory] = await queryRows<{ id: number; name: string }>(
    db,
    sql`select id, name from directories where enabled order by position limit 1`,
  );
  if (!directory) return { kind: "add-directory" };
  return { kind: "import", directoryId: Number(directory.id), directoryName: directory.name };
}
