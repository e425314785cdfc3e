/**
 * When directories are synchronized: each directory's schedule lives in its row (an interval and
 * the next time due). Any number of instances share it: a due directory is claimed with
 * FOR UPDATE SKIP LOCKED and its next time moved on in the same transaction, so each scheduled
 * synchronization is queued exactly once, and one missed while every instance was down is queued
 * once when one comes back. The run itself goes through the import queue (run-queue.ts).
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { directories, importRuns } from "../../db/schema.ts";
import { type Actor, recordAudit } from "../audit.ts";
import { createRun, type ImportRun } from "../import/run-queue.ts";
import { applyRemovals } from "./removals.ts";
import { directoryHoldings } from "./store.ts";

/** The choices the schedule setting offers, in minutes (null: only when asked), and the form's value. */
export const SYNC_INTERVALS: readonly { minutes: number | null; value: string; label: string }[] = (
  [
    [null, "Off: only when asked"],
    [15, "Every 15 minutes"],
    [30, "Every 30 minutes"],
    [60, "Every hour"],
    [180, "Every 3 hours"],
    [360, "Every 6 hours"],
    [720, "Every 12 hours"],
    [1440, "Every day"],
  ] as const
).map(([minutes, label]) => ({ minutes, value: intervalValue(minutes), label }));

/** How an interval is named in the schedule form ("off" for none). */
export function intervalValue(minutes: number | null): string {
  return minutes === null ? "off" : String(minutes);
}

export const SCHEDULE_ACTOR: Actor = { id: null, name: "Schedule" };

/** Queues the synchronizations that are due; returns the runs created. */
export async function queueDueSynchronizations(db: Db): Promise<ImportRun[]> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const due = await queryRows<{ id: number; name: string; sync_interval_minutes: number }>(
      tx,
      sql`select id, name, sync_interval_minutes from directories
          where enabled and sync_interval_minutes is not null and next_sync_at <= now()
          for update skip locked`,
    );
    const created: ImportRun[] = [];
    for (const directory of due) {
      const id = Number(directory.id);
      await tx
        .update(directories)
        .set({ nextSyncAt: sql`now() + make_interval(mins => ${Number(directory.sync_interval_minutes)})` })
        .where(eq(directories.id, id));
      if (await activeSynchronization(tx, id)) continue;
      const held = await directoryHoldings(tx, id);
      // Nothing imported from it yet: nothing to keep in sync.
      if (held.users + held.groups === 0) continue;
      created.push(await newSynchronization(tx, { id, name: directory.name }, SCHEDULE_ACTOR, "schedule"));
    }
    return created;
  });
}

/**
 * "Synchronize now": queues a synchronization of the directory, or answers the one already queued
 * or running (two at once would only do the same work twice).
 */
export async function requestSynchronization(
  db: Db,
  directory: { id: number; name: string },
  actor: Actor,
  options: { full?: boolean } = {},
): Promise<{ run: ImportRun; created: boolean }> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    await tx.execute(sql`select id from directories where id = ${directory.id} for update`);
    const active = await activeSynchronization(tx, directory.id);
    if (active) return { run: active, created: false };
    return {
      run: await newSynchronization(tx, directory, actor, "manual", options.full === true),
      created: true,
    };
  });
}

async function activeSynchronization(db: Db, directoryId: number): Promise<ImportRun | null> {
  const [run] = await db
    .select()
    .from(importRuns)
    .where(
      and(
        eq(importRuns.directoryId, directoryId),
        eq(importRuns.kind, "synchronization"),
        inArray(importRuns.status, ["queued", "running"]),
      ),
    )
    .limit(1);
  return run ?? null;
}

async function newSynchronization(
  db: Db,
  directory: { id: number; name: string },
  actor: Actor,
  trigger: "schedule" | "manual",
  full = false,
): Promise<ImportRun> {
  return createRun(db, {
    directory,
    actor,
    query: "",
    selection: { mode: "synchronize", trigger, ...(full ? { full: true } : {}) },
    copyRolesFrom: null,
    total: null,
  });
}

export interface ScheduleSettings {
  intervalMinutes: number | null;
  holdPercent: number;
  holdMinimum: number;
}

/** Saves a directory's schedule; a changed interval counts from now. */
export async function saveSchedule(
  db: Db,
  actor: Actor,
  directory: { id: number; name: string; syncIntervalMinutes: number | null },
  settings: ScheduleSettings,
): Promise<void> {
  await db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const changed = settings.intervalMinutes !== directory.syncIntervalMinutes;
    await tx
      .update(directories)
      .set({
        syncIntervalMinutes: settings.intervalMinutes,
        holdRemovalsPercent: settings.holdPercent,
        holdRemovalsMinimum: settings.holdMinimum,
        ...(changed
          ? {
              nextSyncAt:
                settings.intervalMinutes === null
                  ? null
                  : sql`now() + make_interval(mins => ${settings.intervalMinutes})`,
            }
          : {}),
        updatedAt: sql`now()`,
      })
      .where(eq(directories.id, directory.id));
    await recordAudit(tx, actor, {
      action: "directory.schedule_changed",
      targetType: "directory",
      targetId: directory.id,
      targetName: directory.name,
      details: { ...settings },
    });
  });
}

export type ReviewResult = "applied" | "discarded" | "not-held";

/**
 * An administrator's decision on a held synchronization: its removals applied (what still holds:
 * see applyRemovals) or discarded. Only the latest held run of a directory can be decided; an
 * earlier one was superseded by the synchronization after it.
 */
export async function reviewHeldRemovals(
  db: Db,
  runId: number,
  actor: Actor,
  decision: "apply" | "discard",
): Promise<ReviewResult> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const [run] = await tx.select().from(importRuns).where(eq(importRuns.id, runId)).for("update");
    if (run?.status !== "held" || run.review !== null) return "not-held";
    let applied = { updated: 0, lines: 0 };
    if (decision === "apply") applied = await applyRemovals(tx, runId);
    await tx
      .update(importRuns)
      .set({
        review: decision === "apply" ? "applied" : "discarded",
        reviewedBy: actor.name,
        reviewedAt: sql`now()`,
        updated: sql`${importRuns.updated} + ${applied.updated}`,
        processed: sql`${importRuns.processed} + ${applied.updated}`,
        total: sql`${importRuns.processed} + ${applied.updated}`,
      })
      .where(eq(importRuns.id, runId));
    await recordAudit(tx, actor, {
      action: decision === "apply" ? "synchronization.held_applied" : "synchronization.held_discarded",
      targetType: "directory",
      targetId: run.directoryId ?? "",
      targetName: run.directoryName,
      details: {
        run: run.id,
        held: run.heldCount,
        ...(decision === "apply" ? { changed: applied.lines } : {}),
      },
    });
    return decision === "apply" ? "applied" : "discarded";
  });
}

export interface SyncOverview {
  last: ImportRun | null;
  /** The latest held run nobody has decided on yet. */
  held: ImportRun | null;
  active: ImportRun | null;
}

export async function syncOverview(db: Db, directoryId: number): Promise<SyncOverview> {
  const runs = await db
    .select()
    .from(importRuns)
    .where(and(eq(importRuns.directoryId, directoryId), eq(importRuns.kind, "synchronization")))
    .orderBy(sql`${importRuns.createdAt} desc, ${importRuns.id} desc`)
    .limit(20);
  return {
    last: runs.find((r) => r.finishedAt !== null) ?? null,
    held: runs.find((r) => r.status === "held" && r.review === null) ?? null,
    active: runs.find((r) => r.status === "queued" || r.status === "running") ?? null,
  };
}
