/**
 * One measured import, in a process of its own so that its peak RSS is the import's: opens the
 * database, queues a run, executes it, and prints one JSON line. Started by import.bench.ts.
 *
 *   BENCH_DATABASE_URL=… | BENCH_PGLITE_DIR=…, BENCH_KEY (hex), BENCH_DIRECTORY (id), BENCH_SELECTION (JSON)
 *
 * BENCH_WATERMARK (ms): the directory is synchronized by change time from there, as if the last
 * synchronization had read changes up to that moment (its content-synchronization cookies dropped).
 */
import { readdirSync, readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { sql } from "drizzle-orm";
import { pino } from "pino";
import { openDatabase } from "../../src/db/client.ts";
import { executeRun } from "../../src/services/import/importer.ts";
import { claimNextRun, createRun, finishRun, getRun } from "../../src/services/import/run-queue.ts";
import type { Selection } from "../../src/services/import/types.ts";
import { createSecretBox } from "../../src/services/secrets.ts";

const env = process.env;
const database = await openDatabase({
  databaseUrl: env.BENCH_DATABASE_URL || null,
  dataDir: env.BENCH_PGLITE_DIR || null,
});
try {
  const selection = JSON.parse(env.BENCH_SELECTION ?? "") as Selection;
  const directoryId = Number(env.BENCH_DIRECTORY);
  if (env.BENCH_WATERMARK) {
    await database.db.execute(
      sql`update directories set sync_state = jsonb_build_object('method', 'timestamp',
            'highWater', ${Number(env.BENCH_WATERMARK)}::bigint, 'settings', sync_state->'settings',
            'presenceAt', sync_state->'presenceAt')
          where id = ${directoryId}`,
    );
  }
  await createRun(database.db, {
    directory: { id: directoryId, name: "bench" },
    actor: { id: null, name: "bench" },
    query: selection.mode === "query" ? selection.text : "",
    selection,
    copyRolesFrom: null,
    // A synchronization knows its own total (the entries Roster holds of the directory).
    total: env.BENCH_TOTAL && selection.mode !== "synchronize" ? Number(env.BENCH_TOTAL) : null,
  });
  const claim = await claimNextRun(database.db, "bench", 60_000);
  if (!claim) throw new Error("no run to claim");
  const logger = pino({ level: "warn" }, new Writable({ write: (_c, _e, done) => done() }));
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const machineBefore = machineCpu();
  const programsBefore = programCpu();
  const ending = await executeRun(
    {
      db: database.db,
      secretBox: createSecretBox(Buffer.from(env.BENCH_KEY ?? "", "hex")),
      logger,
      watermarkMarginMs: Number(env.BENCH_MARGIN_MS ?? 0),
    },
    claim,
    new AbortController(),
  );
  if (ending) await finishRun(database.db, claim, ending);
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const machine = machineCpu();
  const programs = programCpu();
  const run = await getRun(database.db, claim.run.id);
  console.log(
    JSON.stringify({
      ms,
      status: run?.status,
      error: run?.error,
      processed: run?.processed,
      created: run?.created,
      updated: run?.updated,
      unchanged: run?.unchanged,
      skipped: run?.skipped,
      failed: run?.failed,
      maxRssMb: process.resourceUsage().maxRSS / 1024,
      cpuMs: (cpu.user + cpu.system) / 1000,
      ...(machine && machineBefore
        ? {
            machineBusyMs: machine.busyMs - machineBefore.busyMs,
            machineStealMs: machine.stealMs - machineBefore.stealMs,
          }
        : {}),
      ...(programs && programsBefore
        ? {
            postgresMs: programs.postgres - programsBefore.postgres,
            slapdMs: programs.slapd - programsBefore.slapd,
          }
        : {}),
    }),
  );
} finally {
  await database.close();
}

/**
 * CPU time so far of every PostgreSQL process (server, backends, autovacuum) and of slapd, from
 * /proc/<pid>/stat; null where there is no /proc. A process that ends during the import takes its
 * time with it (none does: the backends live as long as the connections).
 */
function programCpu(): { postgres: number; slapd: number } | null {
  try {
    const totals = { postgres: 0, slapd: 0 };
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      } catch {
        continue; // ended meanwhile
      }
      // pid (comm) state … utime stime: fields 14 and 15, counted after the closing parenthesis.
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const program = comm === "postgres" ? "postgres" : comm === "slapd" ? "slapd" : null;
      if (!program) continue;
      const fields = stat.slice(close + 2).split(" ");
      totals[program] += (Number(fields[11]) + Number(fields[12])) * 10;
    }
    return totals;
  } catch {
    return null;
  }
}

/**
 * CPU time of the whole machine so far (Roster, PostgreSQL, slapd and anything else), and the time
 * the hypervisor gave to other guests (steal), from /proc/stat; null where there is none.
 */
function machineCpu(): { busyMs: number; stealMs: number } | null {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    // cpu  user nice system idle iowait irq softirq steal …, in clock ticks (USER_HZ = 100 on Linux).
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    const tick = 10;
    return {
      busyMs: ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) * tick,
      stealMs: (steal ?? 0) * tick,
    };
  } catch {
    return null;
  }
}
