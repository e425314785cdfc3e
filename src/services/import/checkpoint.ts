/**
 * A running import's checkpoint, kept in the database in the same transaction as each batch: which
 * entries the run has handled, and the report of each group it has imported so far. A worker that
 * takes the run over (the first one died, or its instance shut down) loads the groups and reads on:
 * entries already handled are skipped, so the counters, the report and the total stay exact. The
 * users handled are never loaded: each batch asks about its own (`handledUsers`), so neither the
 * run nor its taking over holds a set as large as the directory.
 */
import { eq, sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { importRunGroups, importRunHandled, importRunUsers } from "../../db/schema.ts";
import { intArray, jsonRows, textArray } from "../sync/store.ts";

/** What the report of a group imported by the run needs, saved while its members are read. */
export interface GroupProgress {
  dn: string;
  name: string;
  /** Set when the run imported (created or synchronized) the group; absent for a repeat. */
  outcome?: "created" | "updated" | "unchanged";
  changes?: string[];
  membersAdded: number;
  subgroupsAdded: number;
  /** Its member count was corrected once the members were read (see memberCountCorrection). */
  corrected: boolean;
  /** All its members were read and its report written. */
  finished: boolean;
}

export interface Checkpoint {
  groups: Map<string, { id: number | null; progress: GroupProgress | null }>;
  /** `${groupDn}\n${memberValue}` of members already reported as not importable. */
  unresolved: Set<string>;
  /** Created entries already listed in the report (the list is capped). */
  createdListed: number;
}

/**
 * Users (or invalid entries, with a null id) a batch handled. One handled before (by the run's other
 * writer, say) keeps its first row: the run's entries are each directory entry once.
 */
export async function recordHandledUsers(
  tx: Db,
  runId: number,
  handled: Iterable<[string, number | null]>,
): Promise<void> {
  const keys: string[] = [];
  const ids: (number | null)[] = [];
  for (const [key, id] of handled) {
    keys.push(key);
    ids.push(id);
  }
  if (keys.length === 0) return;
  await tx.execute(
    sql`insert into import_run_users (run_id, external_id, object_id)
        select ${runId}, t.key, nullif(t.id, 0)
        from unnest(${textArray(keys)}::text[], ${intArray(ids.map((id) => id ?? 0))}::int[]) as t(key, id)
        on conflict do nothing`,
  );
}

/**
 * Of these stable ids, those the run has handled already, with the Roster user each became (null:
 * skipped). A batch's question, answered by the run's keyed set: nothing of it is held in memory.
 */
export async function handledUsers(
  db: Db,
  runId: number,
  externalIds: readonly string[],
): Promise<Map<string, number | null>> {
  const handled = new Map<string, number | null>();
  if (externalIds.length === 0) return handled;
  const rows = await queryRows<{ external_id: string; object_id: number | null }>(
    db,
    sql`select external_id, object_id from import_run_users
        where run_id = ${runId} and external_id = any(${textArray(externalIds)}::text[])`,
  );
  for (const row of rows) handled.set(row.external_id, row.object_id === null ? null : Number(row.object_id));
  return handled;
}

/** Groups a batch handled, with their report so far (inserted, or replaced). */
export async function recordHandledGroups(
  tx: Db,
  runId: number,
  groups: readonly { key: string; id: number | null; progress: GroupProgress | null }[],
): Promise<void> {
  if (groups.length === 0) return;
  const rows = groups.map((g) => ({ k: g.key, i: g.id, s: g.progress }));
  await tx.execute(
    sql`insert into import_run_groups (run_id, external_id, object_id, state)
        select ${runId}, v.k, v.i, v.s
        from json_to_recordset(${jsonRows(rows)}::json) as v(k text, i int, s jsonb)
        on conflict (run_id, external_id) do update set object_id = excluded.object_id, state = excluded.state`,
  );
}

/**
 * A group's membership progress after one batch of its members: the counts are added to those
 * recorded (batches of one group commit concurrently, in any order), `corrected` is or-ed.
 */
export async function addGroupProgress(
  tx: Db,
  runId: number,
  group: { key: string; id: number; progress: GroupProgress },
): Promise<void> {
  await tx.execute(
    sql`insert into import_run_groups (run_id, external_id, object_id, state)
        values (${runId}, ${group.key}, ${group.id}, ${JSON.stringify(group.progress)}::jsonb)
        on conflict (run_id, external_id) do update set
          object_id = excluded.object_id,
          state = excluded.state || jsonb_build_object(
            'membersAdded', coalesce((import_run_groups.state->>'membersAdded')::int, 0)
              + (excluded.state->>'membersAdded')::int,
            'subgroupsAdded', coalesce((import_run_groups.state->>'subgroupsAdded')::int, 0)
              + (excluded.state->>'subgroupsAdded')::int,
            'corrected', coalesce((import_run_groups.state->>'corrected')::boolean, false)
              or (excluded.state->>'corrected')::boolean)`,
  );
}

/** Entries a synchronization's presence pass found (met, though not read in full). */
export async function recordPresent(
  db: Db,
  runId: number,
  kind: "user" | "group",
  ids: readonly string[],
): Promise<void> {
  if (ids.length === 0) return;
  await db.execute(
    kind === "user"
      ? sql`insert into import_run_handled (run_id, kind, keys) values (${runId}, 'present', ${textArray(ids)}::text[])`
      : sql`insert into import_run_groups (run_id, external_id)
            select ${runId}, k from unnest(${textArray(ids)}::text[]) as t(k)
            on conflict do nothing`,
  );
}

/** Members reported as not importable (so that a group read again does not report them twice). */
export async function recordUnresolved(tx: Db, runId: number, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  await tx.execute(
    sql`insert into import_run_handled (run_id, kind, keys) values (${runId}, 'member', ${textArray(keys)}::text[])`,
  );
}

/** Whether the run has a checkpoint to read on from (a database crash empties the table). */
export async function hasCheckpoint(db: Db, runId: number): Promise<boolean> {
  const [row] = await queryRows<{ found: boolean }>(
    db,
    sql`select exists (select 1 from import_run_users where run_id = ${runId})
            or exists (select 1 from import_run_handled where run_id = ${runId})
            or exists (select 1 from import_run_groups where run_id = ${runId}) as found`,
  );
  return row?.found === true;
}

export async function loadCheckpoint(db: Db, runId: number): Promise<Checkpoint> {
  const checkpoint: Checkpoint = { groups: new Map(), unresolved: new Set(), createdListed: 0 };
  // Users handled stay in the database: each batch read again asks which of its entries they are.
  const rows = await queryRows<{ key: string }>(
    db,
    sql`select unnest(keys) as key from import_run_handled where run_id = ${runId} and kind = 'member'`,
  );
  for (const row of rows) checkpoint.unresolved.add(row.key);
  const groups = await queryRows<{ external_id: string; object_id: number | null; state: unknown }>(
    db,
    sql`select external_id, object_id, state from import_run_groups where run_id = ${runId}`,
  );
  for (const row of groups) {
    const state = typeof row.state === "string" ? JSON.parse(row.state) : row.state;
    checkpoint.groups.set(row.external_id, {
      id: row.object_id === null ? null : Number(row.object_id),
      progress: (state as GroupProgress | null) ?? null,
    });
  }
  const [listed] = await queryRows<{ n: number }>(
    db,
    sql`select count(*)::int as n from import_run_entries where run_id = ${runId} and outcome = 'created'`,
  );
  checkpoint.createdListed = Number(listed?.n ?? 0);
  return checkpoint;
}

/** A finished run needs no checkpoint. */
export async function forgetCheckpoint(db: Db, runId: number): Promise<void> {
  await db.delete(importRunUsers).where(eq(importRunUsers.runId, runId));
  await db.delete(importRunHandled).where(eq(importRunHandled.runId, runId));
  await db.delete(importRunGroups).where(eq(importRunGroups.runId, runId));
}
