/** Shapes shared by the import services, the worker and the web routes. */

export type ImportKind = "users" | "groups" | "both";
export type EntryKind = "user" | "group";

export const IMPORT_KINDS: readonly ImportKind[] = ["users", "groups", "both"];

/** One entry chosen by ticking its row: found again at import time by its stable id. */
export interface SelectedEntry {
  kind: EntryKind;
  externalId: string;
  dn: string;
  name: string;
}

/**
 * What a run imports, stored in `import_runs.selection`. "All N matches" keeps the query itself, so
 * the worker streams the search again instead of carrying 50,000 ids around.
 */
export type Selection =
  | { mode: "query"; text: string; kind: ImportKind }
  | { mode: "entries"; entries: SelectedEntry[] };

/** Whose roles and assignments are copied onto every imported user (`import_runs.copy_roles_from`). */
export interface RoleSource {
  type: "user" | "group";
  id: number;
  name: string;
}

export type Outcome = "created" | "updated" | "unchanged" | "skipped" | "failed";

export interface OutcomeCounts {
  created: number;
  updated: number;
  unchanged: number;
  skipped: number;
  failed: number;
}

export const OUTCOMES: readonly Outcome[] = ["created", "updated", "unchanged", "skipped", "failed"];

export function emptyCounts(): OutcomeCounts {
  return { created: 0, updated: 0, unchanged: 0, skipped: 0, failed: 0 };
}

/** One line of a run's report: an entry that was not simply left alone, and why. */
export interface ReportedEntry {
  outcome: Outcome;
  kind: EntryKind;
  name: string;
  dn: string;
  reason: string;
}

export type RunStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";
