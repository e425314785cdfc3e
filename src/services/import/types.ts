/** Shapes of import runs, shared by the import services, the worker and the web routes. */
import type { EntryKind } from "../sync/outcomes.ts";

export type {
  EntryKind,
  Outcome,
  OutcomeCounts,
  ReportedEntry,
  ReportedKind,
  RoleSource,
} from "../sync/outcomes.ts";
export { emptyCounts, OUTCOMES } from "../sync/outcomes.ts";

export type ImportKind = "users" | "groups" | "both";

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
  | { mode: "entries"; entries: SelectedEntry[] }
  /** A synchronization: every user and group imported from the directory (see sync/removals.ts). */
  | { mode: "synchronize"; trigger: "schedule" | "manual"; full?: boolean };

/** held: a synchronization that applied its additions and updates and holds its removals for review. */
export type RunStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "held";
