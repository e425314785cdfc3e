/**
 * The import benchmark: a directory of 100,000 users and one group holding all of them (generated,
 * loaded with slapadd into a throwaway slapd with a 1,000-entry size limit), `ldapsearch -E pr=1000`
 * of the same entries as the baseline, then Roster's import of all users and of the group into
 * PostgreSQL and into PGlite, and a re-import with nothing changed. Each import runs in a child
 * process (test/bench/import-child.ts) whose peak RSS is reported.
 *
 *   node --import tsx test/bench/import.bench.ts
 *
 * USERS=… changes the size; BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * names the server a scratch database is created on; BENCH_DRIVERS=postgres,pglite chooses drivers;
 * BENCH_NODE_FLAGS replaces the Node flags of the measured child (by default those of `npm start`);
 * BENCH_RUNS (default 3) is how many times the four imports run, each time on a new database: each
 * line shows the best time and the highest peak RSS. The baseline is the best of three ldapsearch
 * runs before each run of the imports (and at the start), so a slow moment can't flatter a ratio.
 * Exits non-zero when a target is missed: fresh import into PostgreSQL ≤ 3× the baseline, unchanged
 * re-import ≤ 2.5×, peak RSS of a PostgreSQL import ≤ 300 MB. BENCH_STEPS (default
 * fresh,group,unchanged,group-unchanged,sync-full,sync-incremental,sync-incremental-timestamp) chooses which steps run, always in
 * that order; a re-import needs its import (unchanged needs fresh, group-unchanged needs group).
 *
 * The synchronization steps: sync-full, a full synchronization of the imported directory with nothing
 * changed (target ≤ 2.5× the baseline); then 1% of the directory changes (500 users' phone numbers,
 * 250 users deleted and taken out of the group, 250 new users added to it, with ldapmodify) and
 * sync-incremental reads only that (target ≤ 0.1× the full synchronization). The directory has the
 * syncprov overlay: that run refreshes from the cookies the full one took (RFC 4533), and the
 * accesslog overlay: it reads the group's member changes from the change log. Then 1% changes
 * again, and sync-incremental-timestamp reads it as a directory without syncprov is read, by change
 * time: the synchronization state is set to what a run that ended just before the changes leaves
 * (newest change read: a second before them), with no safety margin (BENCH_MARGIN_MS, default 0).
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connectPostgres, type Database, openDatabase } from "../../src/db/client.ts";
import { directories } from "../../src/db/schema.ts";
import { groupDn, groupEntry, userDn, userEntries, writeLdif } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { resolveBase } from "../../src/ldap/dn.ts";
import { userAttributes } from "../../src/ldap/mapping.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import type { Selection } from "../../src/services/import/types.ts";
import { ensurePredefinedRoles } from "../../src/services/permissions.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { importFilter } from "../../src/services/sync/directory-reads.ts";

const USERS = Number(process.env.USERS ?? 100_000);
const PAGE_SIZE = 1000;
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const DRIVERS = (process.env.BENCH_DRIVERS ?? "postgres,pglite").split(",") as ("postgres" | "pglite")[];
const STEP_NAMES = [
  "fresh",
  "group",
  "unchanged",
  "group-unchanged",
  "sync-full",
  "sync-incremental",
  "sync-incremental-timestamp",
];
const STEPS = chosenSteps(process.env.BENCH_STEPS ?? STEP_NAMES.join(","));
/** BENCH_PGLITE_STEPS: fewer steps on PGlite (the scale bench only checks that it completes). */
const PGLITE_STEPS = process.env.BENCH_PGLITE_STEPS ? chosenSteps(process.env.BENCH_PGLITE_STEPS) : STEPS;
const TARGETS = { fresh: 3, unchanged: 2.5, syncFull: 2.5, rssMb: 300 };
/**
 * An incremental synchronization of 1,000 changed entries (1% of 100,000 users, 0.1% of 1,000,000),
 * against the full one of the same run.
 */
const INCREMENTAL_TARGET = USERS >= 1_000_000 ? 0.05 : 0.1;
const CHANGED_SHARE = `${Number(((1000 / USERS) * 100).toPrecision(2))}%`;
const LONG_AGO = "20250101000000Z";
/** The group changed last: the newest change a synchronization reads is the group's. */
const GROUP_CHANGED = "20250601000000Z";
// The Node flags `npm start` runs Roster with (package.json), unless BENCH_NODE_FLAGS says otherwise.
// --heap-growing-percent=50 lets the heap grow to 1.5 times what is live before a full collection
// (V8's default is up to four times). A group of 1,000,000 members, 1,000,000 strings live for a
// while: 403 MB peak RSS at 100, 327 MB at 50, in the same time. A --max-old-space-size cap bounds
// it too, but puts V8 in its memory-constrained mode: 4–5× as many full collections, ≈ 25% more CPU.
const CHILD_NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "--heap-growing-percent=50")
  .split(" ")
  .filter(Boolean);
const here = path.dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);

interface Measured {
  label: string;
  ms: number;
  entries: number;
  rssMb: number | null;
  /** CPU time of Roster's process (user + system) during the import. */
  cpuMs?: number;
  /** CPU time of the whole machine during the import, and what the hypervisor took for other guests. */
  machineBusyMs?: number;
  machineStealMs?: number;
  /** CPU time of PostgreSQL's processes and of slapd during the import. */
  postgresMs?: number;
  slapdMs?: number;
}

const mapping = { ...presetMapping("openldap"), pageSize: PAGE_SIZE };
const key = randomBytes(32);
const scratch = await mkdtemp(path.join(tmpdir(), "roster-import-bench-"));
let server: SlapdServer | undefined;
const cleanups: (() => Promise<void>)[] = [];

try {
  const started = performance.now();
  server = await startDirectory();
  console.log(
    `\n${USERS.toLocaleString("en-US")} users and a group of all of them loaded into slapd in ${seconds(performance.now() - started)} s\n`,
  );

  // The baseline is measured again before every run of the imports, and the best of all its
  // measurements counts: a slow moment of this shared machine can't flatter the ratios.
  const baselines = [await ldapsearchBaseline(server)];
  const measured: {
    driver: string;
    lines: (Measured & { runs: ChildResult[]; target?: "fresh" | "unchanged" | "syncFull"; step: string })[];
  }[] = [];
  let changes = 0;
  for (const driver of DRIVERS) {
    const users: Selection = { mode: "query", text: "*", kind: "users" };
    const group: Selection = { mode: "query", text: "everyone", kind: "groups" };
    const steps = [
      { step: "fresh", label: `fresh import → ${driver}`, selection: users, target: "fresh" as const },
      { step: "group", label: `group of ${USERS.toLocaleString("en-US")} → ${driver}`, selection: group },
      {
        step: "unchanged",
        label: `re-import, nothing changed → ${driver}`,
        selection: users,
        target: "unchanged" as const,
      },
      { step: "group-unchanged", label: `group re-import, unchanged → ${driver}`, selection: group },
      {
        step: "sync-full",
        label: `full synchronization → ${driver}`,
        selection: { mode: "synchronize", trigger: "manual", full: true } as Selection,
        target: "syncFull" as const,
      },
      {
        step: "sync-incremental",
        label: `incremental sync (RFC 4533), ${CHANGED_SHARE} → ${driver}`,
        selection: { mode: "synchronize", trigger: "manual" } as Selection,
      },
      {
        step: "sync-incremental-timestamp",
        label: `incremental sync by change time, ${CHANGED_SHARE} → ${driver}`,
        selection: { mode: "synchronize", trigger: "manual" } as Selection,
      },
    ].filter((s) => (driver === "pglite" ? PGLITE_STEPS : STEPS).includes(s.step));
    const results: ChildResult[][] = steps.map(() => []);
    for (let attempt = 0; attempt < RUNS; attempt += 1) {
      const target = await prepareDatabase(driver, server, attempt);
      if (!target) break;
      baselines.push(await ldapsearchBaseline(server));
      for (const [i, step] of steps.entries()) {
        let env = target.env;
        if (step.step.startsWith("sync-incremental")) {
          // The directory's clock is this machine's; its timestamps have whole seconds.
          const before = Math.floor(Date.now() / 1000) * 1000;
          await changeOnePercent(server, changes++);
          if (step.step === "sync-incremental-timestamp") env = { ...env, BENCH_WATERMARK: String(before) };
        }
        results[i]?.push(await measureImport(env, step.selection));
      }
    }
    const lines = steps.flatMap((step, i) => {
      const runs = results[i] ?? [];
      const best = runs.reduce<ChildResult | undefined>((a, b) => (a && a.ms <= b.ms ? a : b), undefined);
      if (!best) return [];
      const peakRss = Math.max(...runs.map((r) => r.maxRssMb));
      return [
        {
          label: step.label,
          ms: best.ms,
          entries: best.processed,
          rssMb: peakRss,
          cpuMs: best.cpuMs,
          ...(best.machineBusyMs === undefined
            ? {}
            : { machineBusyMs: best.machineBusyMs, machineStealMs: best.machineStealMs ?? 0 }),
          ...(best.postgresMs === undefined
            ? {}
            : { postgresMs: best.postgresMs, slapdMs: best.slapdMs ?? 0 }),
          runs,
          step: step.step,
          ...(step.target ? { target: step.target } : {}),
        },
      ];
    });
    measured.push({ driver, lines });
  }

  const baseline = Math.min(...baselines);
  print({ label: "ldapsearch -E pr=1000 (baseline)", ms: baseline, entries: USERS, rssMb: null }, baseline);
  console.log(
    `Baseline: best of ${baselines.length * 3} (three before each run of the imports). Each import: best of ${RUNS} runs, each on a new database; peak RSS: the highest of the ${RUNS}.\n`,
  );
  const misses: string[] = [];
  for (const { driver, lines } of measured) {
    for (const line of lines) {
      print(line, baseline);
      if (line.step.startsWith("sync-incremental")) {
        const full = lines.find((l) => l.step === "sync-full");
        const best = line.runs.reduce((a, b) => (a.ms <= b.ms ? a : b));
        console.log(
          `  ${(best.created ?? 0).toLocaleString("en-US")} created, ${(best.updated ?? 0).toLocaleString("en-US")} updated (500 changed, 250 disabled, the group), ${(best.unchanged ?? 0).toLocaleString("en-US")} unchanged${full ? `; ${(line.ms / full.ms).toFixed(3)}× the full synchronization (target ≤ ${INCREMENTAL_TARGET})` : ""}`,
        );
        if (driver === "postgres" && full && line.ms / full.ms > INCREMENTAL_TARGET)
          misses.push(
            `${line.label}: ${(line.ms / full.ms).toFixed(3)}× the full synchronization (target ≤ ${INCREMENTAL_TARGET})`,
          );
        if (best.created !== 250 || best.updated !== 751)
          misses.push(
            `${line.label}: ${best.created} created, ${best.updated} updated (expected 250 and 751)`,
          );
      }
      for (const result of line.runs) {
        if (result.status !== "succeeded")
          misses.push(`${line.label}: the run ${result.status}: ${result.error ?? ""}`);
      }
      if (driver !== "postgres") continue;
      if (line.target && line.ms / baseline > TARGETS[line.target]) {
        misses.push(
          `${line.label}: ${ratio(line.ms, baseline)} (target ≤ ${TARGETS[line.target].toFixed(2)}x)`,
        );
      }
      if ((line.rssMb ?? 0) > TARGETS.rssMb) {
        misses.push(
          `${line.label}: peak RSS ${Math.round(line.rssMb ?? 0)} MB (target ≤ ${TARGETS.rssMb} MB)`,
        );
      }
    }
    console.log("");
  }
  // The targets are PostgreSQL's: without its lines (not chosen, or not reachable) they were not measured.
  const postgresLines = measured.find((m) => m.driver === "postgres")?.lines ?? [];
  const unmeasured = (["fresh", "unchanged"] as const).filter(
    (target) => STEPS.includes(target) && !postgresLines.some((line) => line.target === target),
  );
  if (misses.length > 0) {
    console.log(`Targets missed:\n  ${misses.join("\n  ")}`);
    process.exitCode = 1;
  } else if (unmeasured.length > 0) {
    console.log(`Targets not measured (they are PostgreSQL's): ${unmeasured.join(", ")}.`);
    if (DRIVERS.includes("postgres")) process.exitCode = 1;
  } else {
    console.log("All targets met.");
  }
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
}

/**
 * 1% of the directory changes, differently for each run (`round`): 500 users get a new phone
 * number (its middle part below 100, where the fixture's never are), 250 are deleted (and taken out of the group, as the refint overlay would), 250 new users
 * join the group. With ldapmodify, as the directory's administrator.
 */
async function changeOnePercent(directory: SlapdServer, round: number): Promise<void> {
  const modified = Array.from({ length: 500 }, (_, i) => 1000 + round * 500 + i);
  const deleted = Array.from({ length: 250 }, (_, i) => Math.floor(USERS / 2) + round * 250 + i);
  const added = USERS + round * 250;
  const everyone = groupDn("everyone");
  // The group first (the memberof overlay takes a deleted user out of it by itself), then the rest.
  const ldif = [
    ...modified.map(
      (i) =>
        `dn: ${userDn(i)}\nchangetype: modify\nreplace: telephoneNumber\ntelephoneNumber: +1 555 0${String(round % 100).padStart(2, "0")} ${String(i % 10000).padStart(4, "0")}\n`,
    ),
    ...Array.from(userEntries(250, { start: added })).map((entry) =>
      entry.replace(/^(dn: [^\n]*\n)/, "$1changetype: add\n"),
    ),
    `dn: ${everyone}\nchangetype: modify\ndelete: member\n${deleted.map((i) => `member: ${userDn(i)}`).join("\n")}\n-\nadd: member\n${Array.from({ length: 250 }, (_, i) => `member: ${userDn(added + i)}`).join("\n")}\n`,
    ...deleted.map((i) => `dn: ${userDn(i)}\nchangetype: delete\n`),
  ].join("\n");
  const file = path.join(scratch, `changes-${round}.ldif`);
  await writeFile(file, ldif);
  await ldapmodify(directory, file);
}

/** Applies an LDIF file of changes, as the directory's administrator. */
async function ldapmodify(directory: SlapdServer, file: string): Promise<void> {
  const { url, rootDn, rootPassword } = directory;
  await run("ldapmodify", ["-x", "-H", url, "-D", rootDn, "-w", rootPassword, "-f", file]);
}

function chosenSteps(list: string): string[] {
  const steps = list.split(",").map((step) => step.trim());
  const unknown = steps.filter((step) => !STEP_NAMES.includes(step));
  if (unknown.length > 0)
    throw new Error(`BENCH_STEPS: unknown ${unknown.join(", ")} (known: ${STEP_NAMES.join(", ")})`);
  // A re-import of what was never imported would be an import, measured against the re-import's target.
  for (const [reimport, first] of [
    ["unchanged", "fresh"],
    ["group-unchanged", "group"],
    ["sync-full", "fresh"],
    ["sync-full", "group"],
    ["sync-incremental", "sync-full"],
    ["sync-incremental-timestamp", "sync-full"],
  ] as const) {
    if (steps.includes(reimport) && !steps.includes(first))
      throw new Error(`BENCH_STEPS: ${reimport} needs ${first} before it`);
  }
  return steps;
}

async function startDirectory(): Promise<SlapdServer> {
  const file = path.join(scratch, "directory.ldif");
  const everyone = groupDn("everyone");
  await writeLdif(
    file,
    (function* () {
      // Entries last changed long ago, as in a directory in use: a synchronization's watermark then
      // means what it would there (all entries loaded in the same few seconds would all be "new").
      yield* userEntries(USERS, { memberOf: [everyone], modifyTimestamp: LONG_AGO });
      yield groupEntry({
        cn: "everyone",
        dn: everyone,
        modifyTimestamp: GROUP_CHANGED,
        members: Array.from({ length: USERS }, (_, i) => userDn(i)),
      });
    })(),
  );
  // The bench reads every entry and searches by no name: without substring indexes slapadd loads
  // 1,000,000 users in about a minute instead of eight.
  // With a change log (accesslog), as delta-syncrepl directories have: an incremental run reads a
  // changed group's member changes there. A log in service holds writes from before any
  // synchronization (slapadd logs none): one is made here.
  const directory = await startSlapd({
    ldifFiles: [file],
    contentSync: true,
    changeLog: true,
    substringIndexes: false,
  });
  const history = path.join(scratch, "history.ldif");
  await writeFile(
    history,
    `dn: ${userDn(0)}\nchangetype: modify\nreplace: description\ndescription: in service\n`,
  );
  await ldapmodify(directory, history);
  return directory;
}

/** The same search Roster sends (filter, base, attributes, page size), by the C client; best of three after a warm-up. */
async function ldapsearchBaseline(directory: SlapdServer): Promise<number> {
  const filter = importFilter("user", "*", mapping);
  if (!filter.ok) throw new Error(filter.message);
  const args = [
    ...["-x", "-LLL", "-H", directory.url, "-D", directory.serviceDn, "-w", directory.servicePassword],
    ...["-b", resolveBase(mapping.userBase, directory.baseDn), "-s", "sub", "-E", `pr=${PAGE_SIZE}/noprompt`],
    filter.text,
    ...userAttributes(mapping),
  ];
  const once = () =>
    new Promise<number>((resolve, reject) => {
      const began = performance.now();
      const child = spawn("ldapsearch", args, { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (chunk) => {
        stderr += chunk;
      });
      child.on("error", reject);
      child.on("exit", (code) =>
        code === 0
          ? resolve(performance.now() - began)
          : reject(new Error(`ldapsearch exited ${code}: ${stderr}`)),
      );
    });
  await once();
  const times = [await once(), await once(), await once()];
  return Math.min(...times);
}

interface Target {
  env: Record<string, string>;
}

async function prepareDatabase(
  driver: "postgres" | "pglite",
  directory: SlapdServer,
  attempt: number,
): Promise<Target | null> {
  let database: Database;
  let env: Record<string, string>;
  if (driver === "postgres") {
    const admin = connectPostgres(POSTGRES_URL, { max: 1, onnotice: () => {}, connect_timeout: 3 });
    try {
      await admin`select 1`;
    } catch {
      console.log(`PostgreSQL is not reachable at ${POSTGRES_URL}: skipped.\n`);
      await admin.end();
      return null;
    }
    const name = `roster_bench_${randomBytes(5).toString("hex")}`;
    await admin.unsafe(`create database ${name}`);
    cleanups.push(async () => {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    });
    const url = new URL(POSTGRES_URL);
    url.pathname = `/${name}`;
    env = { BENCH_DATABASE_URL: url.toString() };
    database = await openDatabase({ databaseUrl: url.toString(), dataDir: null });
  } else {
    const dataDir = path.join(scratch, `pglite-${attempt}`);
    env = { BENCH_PGLITE_DIR: dataDir };
    database = await openDatabase({ databaseUrl: null, dataDir });
  }
  try {
    await database.migrate();
    await ensurePredefinedRoles(database.db);
    const [row] = await database.db
      .insert(directories)
      .values({
        name: "bench",
        position: 1,
        ...mapping,
        urls: [directory.url],
        baseDn: directory.baseDn,
        bindDn: directory.serviceDn,
        bindPasswordEncrypted: createSecretBox(key).encrypt(directory.servicePassword),
        operationTimeoutMs: 120_000,
      })
      .returning();
    return { env: { ...env, BENCH_DIRECTORY: String(row?.id), BENCH_KEY: key.toString("hex") } };
  } finally {
    await database.close();
  }
}

interface ChildResult {
  ms: number;
  status: string;
  error?: string;
  processed: number;
  created?: number;
  updated?: number;
  unchanged?: number;
  maxRssMb: number;
  cpuMs: number;
  machineBusyMs?: number;
  machineStealMs?: number;
  postgresMs?: number;
  slapdMs?: number;
}

async function measureImport(env: Record<string, string>, selection: Selection): Promise<ChildResult> {
  const args = [...CHILD_NODE_FLAGS, "--import", "tsx", path.join(here, "import-child.ts")];
  const { stdout } = await run(process.execPath, args, {
    env: { ...process.env, ...env, BENCH_SELECTION: JSON.stringify(selection), BENCH_TOTAL: String(USERS) },
    maxBuffer: 16 * 1024 * 1024,
  });
  const last = stdout.trim().split("\n").pop() ?? "{}";
  return JSON.parse(last) as ChildResult;
}

function print(line: Measured, baselineMs: number): void {
  const rate = Math.round(line.entries / (line.ms / 1000)).toLocaleString("en-US");
  const rss = line.rssMb === null ? "" : `${Math.round(line.rssMb)} MB`;
  // Peak RSS per directory user: flat memory shows as this figure falling tenfold with ten times the users.
  const perUser = line.rssMb === null ? "" : `  ${Math.round((line.rssMb * 1024 ** 2) / USERS)} B/user`;
  const machine =
    line.machineBusyMs === undefined
      ? ""
      : `, all processes ${seconds(line.machineBusyMs)} s${line.machineStealMs ? `, stolen ${seconds(line.machineStealMs)} s` : ""}`;
  // PGlite runs inside Roster's process: a PostgreSQL figure only where there is a server.
  const programs =
    line.postgresMs === undefined
      ? ""
      : `${line.label.endsWith("postgres") ? `, PostgreSQL ${seconds(line.postgresMs)} s` : ""}, slapd ${seconds(line.slapdMs ?? 0)} s`;
  const cpu = line.cpuMs === undefined ? "" : `  (CPU: Roster ${seconds(line.cpuMs)} s${programs}${machine})`;
  console.log(
    `${line.label.padEnd(40)} ${seconds(line.ms).padStart(6)} s  ${`${rate}/s`.padStart(10)}  ${rss.padStart(7)}${perUser}  ${ratio(line.ms, baselineMs)}${cpu}`,
  );
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

function ratio(ms: number, baselineMs: number): string {
  return `${(ms / baselineMs).toFixed(2)}x`;
}
