/** What the sync core reports for each directory entry it handled: shared by every kind of run. */

export type EntryKind = "user" | "group";

/**
 * What a report line is about: a user or group, or a group member that is neither and was not
 * imported (a computer account, a contact, or a value no entry answers to).
 */
export type ReportedKind = EntryKind | "computer" | "contact" | "member";

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
  kind: ReportedKind;
  name: string;
  dn: string;
  reason: string;
}
