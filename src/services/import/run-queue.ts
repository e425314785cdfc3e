/**
 * Import runs as a queue in the database. Any number of Roster instances may share it: a run is
 * claimed with FOR UPDATE SKIP LOCKED, its worker keeps a heartbeat, and a run whose heartbeat
 * went stale (the worker died) is claimed again and reads on from its checkpoint (checkpoint.ts):
 * every batch it wrote is complete, and what it handled is not counted again.
 */
import { and, asc, count, desc, eq, inArray, isNull, type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { importRunEntries, importRuns } from "../../db/schema.ts";
import type { Actor } from "../audit.ts";
import { recordAudit } from "../audit.ts";
import { forgetCheckpoint, hasCheckpoint } from "./checkpoint.ts";
import type {
  Outcome,
  OutcomeCounts,
  ReportedEntry,
  ReportedKind,
  RoleSource,
  RunStatus,
  Selection,
} from "./types.ts";

export type ImportRun = typeof importRuns.$inferSelect;

/** A run is given up after its worker died this many times. */
export const MAX_ATTEMPTS = 3;

export class LostClaimError extends Error {
  constructor(runId: number) {
    super(`Import run ${runId} is no longer claimed by this worker`);
    this.name = "LostClaimError";
  }
}

export interface NewRun {
  directory: { id: number; name: string };
  actor: Actor;
  query: string;
  selection: Selection;
  copyRolesFrom: RoleSource | null;
  /** How many entries the search said it would import, when known (the progress bar's first total). */
  total: number | null;
}

export async function createRun(db: Db, input: NewRun): Promise<ImportRun> {
  const [run] = await db
    .insert(importRuns)
    .values({
      kind: input.selection.mode === "synchronize" ? "synchronization" : "import",
      directoryId: input.directory.id,
      directoryName: input.directory.name,
      actorId: input.actor.id,
      actorName: input.actor.name,
      query: input.query,
      selection: input.selection,
      copyRolesFrom: input.copyRolesFrom,
      total: input.total,
    })
    .returning();
  if (!run) throw new Error("insert returned no run");
  return run;
}

export interface Claim {
  run: ImportRun;
  workerId: string;
}

/**
 * Claims the oldest queued run, or a running one whose worker stopped sending heartbeats. A run
 * with a checkpoint keeps its counters and report and reads on; any other starts afresh.
 */
export async function claimNextRun(db: Db, workerId: string, staleAfterMs: number): Promise<Claim | null> {
  const staleSeconds = staleAfterMs / 1000;
  await giveUpAbandonedRuns(db, staleSeconds);
  return db.transaction(async (tx) => {
    const [run] = await queryRows<{ id: number; processed: number }>(
      tx as unknown as Db,
      sql`select id, processed from import_runs
          where not cancel_requested and (
            status = 'queued'
            or (status = 'running' and heartbeat_at < now() - make_interval(secs => ${staleSeconds}))
          )
          order by created_at, id
          limit 1
          for update skip locked`,
    );
    if (!run) return null;
    const id = Number(run.id);
    const txDb = tx as unknown as Db;
    // A run taken over reads on from its checkpoint; without one (it wrote nothing yet, or a
    // database crash emptied the unlogged table) it starts afresh.
    const resume = run.processed > 0 && (await hasCheckpoint(txDb, id));
    if (!resume) {
      await tx.delete(importRunEntries).where(eq(importRunEntries.runId, id));
      await forgetCheckpoint(txDb, id);
    }
    const [claimed] = await tx
      .update(importRuns)
      .set({
        status: "running",
        claimedBy: workerId,
        heartbeatAt: sql`now()`,
        attempts: sql`${importRuns.attempts} + 1`,
        error: null,
        ...(resume
          ? { resumedAt: sql`now()`, resumedFrom: sql`${importRuns.processed}` }
          : {
              startedAt: sql`coalesce(${importRuns.startedAt}, now())`,
              processed: 0,
              resumedAt: null,
              resumedFrom: null,
              // An earlier attempt's groups made the total grow by their members: it starts afresh too.
              // Chosen entries are known; matches of a query are counted again by the worker.
              total: sql`case when ${importRuns.selection}->>'mode' = 'entries' then jsonb_array_length(${importRuns.selection}->'entries')
                        when ${importRuns.attempts} = 0 then ${importRuns.total} end`,
              created: 0,
              updated: 0,
              unchanged: 0,
              skipped: 0,
              failed: 0,
            }),
      })
      .where(eq(importRuns.id, id))
      .returning();
    return claimed ? { run: claimed, workerId } : null;
  });
}

/** Runs whose worker died too often, and cancelled runs nobody holds, are closed. */
async function giveUpAbandonedRuns(db: Db, staleSeconds: number): Promise<void> {
  const stale = sql`${importRuns.status} = 'running' and ${importRuns.heartbeatAt} < now() - make_interval(secs => ${staleSeconds})`;
  const given = await db
    .update(importRuns)
    .set({
      status: "failed",
      finishedAt: sql`now()`,
      error: `The import stopped responding ${MAX_ATTEMPTS} times (the Roster server running it stopped). What it imported is consistent; run it again to complete it.`,
    })
    .where(and(stale, sql`${importRuns.attempts} >= ${MAX_ATTEMPTS}`, eq(importRuns.cancelRequested, false)))
    .returning();
  const cancelled = await db
    .update(importRuns)
    .set({ status: "cancelled", finishedAt: sql`now()` })
    .where(and(stale, eq(importRuns.cancelRequested, true)))
    .returning();
  for (const run of [...given, ...cancelled]) await auditRun(db, run);
}

/** Keeps the claim alive; false when the claim was lost. Also reports a requested cancellation. */
export async function heartbeat(db: Db, claim: Claim): Promise<{ held: boolean; cancelRequested: boolean }> {
  const [row] = await db
    .update(importRuns)
    .set({ heartbeatAt: sql`now()` })
    .where(claimedBy(claim))
    .returning({ cancelRequested: importRuns.cancelRequested });
  return row ? { held: true, cancelRequested: row.cancelRequested } : { held: false, cancelRequested: false };
}

export interface Progress {
  processed: number;
  counts: OutcomeCounts;
  /** Entries newly known to be part of the run (members of a group just read). */
  totalGrowth?: number;
  entries: ReportedEntry[];
}

/**
 * Adds a batch's counts and report lines to the run, inside the batch's transaction: counters always
 * match what was written. Throws LostClaimError when another worker took the run over.
 */
export async function recordProgress(
  tx: Db,
  claim: Claim,
  progress: Progress,
): Promise<{ cancelRequested: boolean }> {
  const { counts } = progress;
  const [row] = await tx
    .update(importRuns)
    .set({
      processed: sql`${importRuns.processed} + ${progress.processed}`,
      created: sql`${importRuns.created} + ${counts.created}`,
      updated: sql`${importRuns.updated} + ${counts.updated}`,
      unchanged: sql`${importRuns.unchanged} + ${counts.unchanged}`,
      skipped: sql`${importRuns.skipped} + ${counts.skipped}`,
      failed: sql`${importRuns.failed} + ${counts.failed}`,
      ...(progress.totalGrowth
        ? {
            // Without a total yet, what is known: the entries processed, this batch's included. Never
            // below that (a group read on after a takeover finds members handled before as repeats).
            total: sql`greatest(coalesce(${importRuns.total}, ${importRuns.processed} + ${progress.processed}) + ${progress.totalGrowth}, ${importRuns.processed} + ${progress.processed})`,
          }
        : {}),
      heartbeatAt: sql`now()`,
    })
    .where(claimedBy(claim))
    .returning({ cancelRequested: importRuns.cancelRequested });
  if (!row) throw new LostClaimError(claim.run.id);
  if (progress.entries.length > 0) {
    const rows = progress.entries.map((e) => ({ o: e.outcome, k: e.kind, n: e.name, d: e.dn, r: e.reason }));
    await tx.execute(
      sql`insert into import_run_entries (run_id, outcome, entry_kind, name, dn, reason)
          select ${claim.run.id}, v.o, v.k, v.n, v.d, v.r
          from json_to_recordset(${JSON.stringify(rows)}::json) as v(o text, k text, n text, d text, r text)`,
    );
  }
  return { cancelRequested: row.cancelRequested };
}

/** Says on the run whether the synchronization reads everything or what changed, and why. */
export async function recordSyncPlan(
  db: Db,
  claim: Claim,
  plan: { method: "full" | "incremental"; why: string },
): Promise<void> {
  await db.update(importRuns).set({ syncMethod: plan.method, syncNote: plan.why }).where(claimedBy(claim));
}

/** Sets the total once it is known (counted by the worker when the run did not bring one). */
export async function setTotal(db: Db, claim: Claim, total: number): Promise<void> {
  await db
    .update(importRuns)
    .set({ total: sql`greatest(${total}, ${importRuns.processed})` })
    .where(claimedBy(claim));
}

export type Ending =
  | { status: "succeeded" }
  | { status: "cancelled" }
  | { status: "failed"; error: string }
  | { status: "held"; reason: string; count: number };

/** Closes the run and writes its audit-log entry; nothing happens when the claim was lost. */
export async function finishRun(db: Db, claim: Claim, ending: Ending): Promise<ImportRun | null> {
  return db.transaction(async (tx) => {
    const [run] = await tx
      .update(importRuns)
      .set({
        status: ending.status,
        error: ending.status === "failed" ? ending.error : null,
        finishedAt: sql`now()`,
        claimedBy: null,
        // A finished run's bar is full: the total is what was actually processed.
        ...(ending.status === "succeeded" || ending.status === "held"
          ? { total: sql`${importRuns.processed}` }
          : {}),
        ...(ending.status === "held" ? { heldReason: ending.reason, heldCount: ending.count } : {}),
      })
      .where(claimedBy(claim))
      .returning();
    if (run) {
      await forgetCheckpoint(tx as unknown as Db, run.id);
      if (
        run.kind === "synchronization" &&
        run.directoryId !== null &&
        ending.status !== "failed" &&
        ending.status !== "cancelled"
      ) {
        // A later synchronization has looked again: what an earlier one held is out of date.
        await tx
          .update(importRuns)
          .set({ review: "superseded", reviewedAt: sql`now()` })
          .where(
            and(
              eq(importRuns.directoryId, run.directoryId),
              eq(importRuns.status, "held"),
              isNull(importRuns.review),
              sql`${importRuns.id} <> ${run.id}`,
            ),
          );
      }
      await auditRun(tx as unknown as Db, run);
    }
    return run ?? null;
  });
}

/** Puts a claimed run back in the queue (this instance is shutting down), to be resumed elsewhere. */
export async function releaseRun(db: Db, claim: Claim): Promise<void> {
  await db
    .update(importRuns)
    .set({ status: "queued", claimedBy: null, heartbeatAt: null })
    .where(claimedBy(claim));
}

export type CancelResult = "cancelled" | "requested" | "finished" | "missing";

/** A queued run is cancelled at once; a running one is asked to stop after its current batch. */
export async function requestCancellation(db: Db, runId: number): Promise<CancelResult> {
  return db.transaction(async (tx) => {
    const [run] = await tx.select().from(importRuns).where(eq(importRuns.id, runId)).for("update");
    if (!run) return "missing";
    if (run.status === "queued") {
      const [cancelled] = await tx
        .update(importRuns)
        .set({ status: "cancelled", cancelRequested: true, finishedAt: sql`now()` })
        .where(eq(importRuns.id, runId))
        .returning();
      if (cancelled) await auditRun(tx as unknown as Db, cancelled);
      return "cancelled";
    }
    if (run.status !== "running") return "finished";
    await tx.update(importRuns).set({ cancelRequested: true }).where(eq(importRuns.id, runId));
    return "requested";
  });
}

export async function getRun(db: Db, id: number): Promise<ImportRun | null> {
  const [run] = await db.select().from(importRuns).where(eq(importRuns.id, id));
  return run ?? null;
}

export async function listRuns(
  db: Db,
  options: { directoryId?: number; limit: number; offset: number },
): Promise<{ runs: ImportRun[]; total: number }> {
  const where =
    options.directoryId === undefined ? undefined : eq(importRuns.directoryId, options.directoryId);
  const runs = await db
    .select()
    .from(importRuns)
    .where(where)
    .orderBy(desc(importRuns.createdAt), desc(importRuns.id))
    .limit(options.limit)
    .offset(options.offset);
  const [row] = await db.select({ n: count() }).from(importRuns).where(where);
  return { runs, total: Number(row?.n ?? 0) };
}

export interface RunEntry {
  outcome: Outcome;
  kind: ReportedKind;
  name: string;
  dn: string;
  reason: string;
}

export async function listRunEntries(
  db: Db,
  runId: number,
  options: { outcomes: Outcome[]; limit: number; offset: number },
): Promise<{ entries: RunEntry[]; total: number }> {
  const where: SQL | undefined = and(
    eq(importRunEntries.runId, runId),
    inArray(importRunEntries.outcome, options.outcomes),
  );
  const entries = await db
    .select({
      outcome: importRunEntries.outcome,
      kind: importRunEntries.entryKind,
      name: importRunEntries.name,
      dn: importRunEntries.dn,
      reason: importRunEntries.reason,
    })
    .from(importRunEntries)
    .where(where)
    .orderBy(asc(importRunEntries.id))
    .limit(options.limit)
    .offset(options.offset);
  const [row] = await db.select({ n: count() }).from(importRunEntries).where(where);
  return { entries, total: Number(row?.n ?? 0) };
}

export function isFinished(status: RunStatus): boolean {
  return status === "succeeded" || status === "failed" || status === "cancelled" || status === "held";
}

function claimedBy(claim: Claim): SQL | undefined {
  return and(
    eq(importRuns.id, claim.run.id),
    eq(importRuns.claimedBy, claim.workerId),
    eq(importRuns.status, "running"),
  );
}

async function auditRun(db: Db, run: ImportRun): Promise<void> {
  await recordAudit(
    db,
    { id: run.actorId, name: run.actorName },
    {
      action: `${run.kind === "synchronization" ? "synchronization" : "import"}.${run.status}`,
      targetType: "directory",
      targetId: run.directoryId ?? "",
      targetName: run.directoryName,
      details: {
        run: run.id,
        query: run.query,
        created: run.created,
        updated: run.updated,
        unchanged: run.unchanged,
        skipped: run.skipped,
        failed: run.failed,
        ...(run.error ? { error: run.error } : {}),
        ...(run.heldReason ? { held: run.heldCount, reason: run.heldReason } : {}),
        ...(run.copyRolesFrom ? { copyRolesFrom: run.copyRolesFrom } : {}),
      },
    },
  );
}
