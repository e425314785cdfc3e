/**
 * A running import's checkpoint, kept in the database in the same transaction as each batch: which
 * entries the run has handled, and the report of each group it has imported so far. A worker that
 * takes the run over (the first one died, or its instance shut down) loads it and reads on: entries
 * already handled are skipped, so the counters, the report and the total stay exact.
 */
import { eq, sql } from "drizzle-orm";
import { type Db, queryRows } from "../../db/client.ts";
import { importRunGroups, importRunHandled } from "../../db/schema.ts";
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
  users: Map<string, number | null>;
  groups: Map<string, { id: number | null; progress: GroupProgress | null }>;
  /** `${groupDn}\n${memberValue}` of members already reported as not importable. */
  unresolved: Set<string>;
  /** Created entries already listed in the report (the list is capped). */
  createdListed: number;
}

/** Users (or invalid entries, with a null id) a batch handled, but for those handled before. */
export async function recordHandledUsers(
  tx: Db,
  runId: number,
  handled: Iterable<[string, number | null]>,
  before?: ReadonlyMap<string, unknown>,
): Promise<void> {
  const keys: string[] = [];
  const ids: (number | null)[] = [];
  for (const [key, id] of handled) {
    if (before?.has(key)) continue;
    keys.push(key);
    ids.push(id);
  }
  if (keys.length === 0) return;
  // One row for the batch: a tuple per entry would cost the database more than the batch's users.
  await tx.execute(
    sql`insert into import_run_handled (run_id, kind, keys, object_ids)
        values (${runId}, 'user', ${textArray(keys)}::text[], ${intArray(ids.map((id) => id ?? 0))}::int[])`,
  );
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
      ? sql`insert into import_run_handled (run_id, kind, keys) values (${runId}, 'user', ${textArray(ids)}::text[])`
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
    sql`select exists (select 1 from import_run_handled where run_id = ${runId})
            or exists (select 1 from import_run_groups where run_id = ${runId}) as found`,
  );
  return row?.found === true;
}

export async function loadCheckpoint(db: Db, runId: number): Promise<Checkpoint> {
  const checkpoint: Checkpoint = {
    users: new Map(),
    groups: new Map(),
    unresolved: new Set(),
    createdListed: 0,
  };
  const rows = await queryRows<{ kind: string; key: string; object_id: number | null }>(
    db,
    sql`select h.kind, t.key, nullif(t.object_id, 0) as object_id
        from import_run_handled h, unnest(h.keys, coalesce(h.object_ids, '{}')) as t(key, object_id)
        where h.run_id = ${runId}`,
  );
  for (const row of rows) {
    if (row.kind === "member") checkpoint.unresolved.add(row.key);
    else checkpoint.users.set(row.key, row.object_id === null ? null : Number(row.object_id));
  }
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
  await db.delete(importRunHandled).where(eq(importRunHandled.runId, runId));
  await db.delete(importRunGroups).where(eq(importRunGroups.runId, runId));
}
