/**
 * One measured import, in a process of its own so that its peak RSS is the import's: opens the
 * database, queues a run, executes it, and prints one JSON line. Started by import.bench.ts.
 *
 *   BENCH_DATABASE_URL=… | BENCH_PGLITE_DIR=…, BENCH_KEY (hex), BENCH_DIRECTORY (id), BENCH_SELECTION (JSON)
 */
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
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
  await createRun(database.db, {
    directory: { id: directoryId, name: "bench" },
    actor: { id: null, name: "bench" },
    query: selection.mode === "query" ? selection.text : "",
    selection,
    copyRolesFrom: null,
    total: env.BENCH_TOTAL ? Number(env.BENCH_TOTAL) : null,
  });
  const claim = await claimNextRun(database.db, "bench", 60_000);
  if (!claim) throw new Error("no run to claim");
  const logger = pino({ level: "warn" }, new Writable({ write: (_c, _e, done) => done() }));
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const machineBefore = machineCpu();
  const ending = await executeRun(
    { db: database.db, secretBox: createSecretBox(Buffer.from(env.BENCH_KEY ?? "", "hex")), logger },
    claim,
    new AbortController(),
  );
  if (ending) await finishRun(database.db, claim, ending);
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const machine = machineCpu();
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
    }),
  );
} finally {
  await database.close();
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
