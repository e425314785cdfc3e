/**
 * What the administrator has chosen on the import page, kept between pages (in the session) so a
 * selection survives paging and new searches, with and without JavaScript.
 */
import type { ImportKind, RoleSource, SelectedEntry, Selection } from "./types.ts";

/** Entries chosen one by one; beyond this, "Select all N matches" is the way (it stores the query). */
export const MAX_CHOSEN_ENTRIES = 2000;

export interface SelectionState {
  directoryId: number;
  /** "All N matches" of this search; when set, entries chosen one by one are not used. */
  query: { text: string; kind: ImportKind; total: number } | null;
  entries: SelectedEntry[];
  copyFrom: RoleSource | null;
  /** What was typed in the copy-roles picker. */
  copyQuery: string;
}

export function emptySelection(directoryId: number): SelectionState {
  return { directoryId, query: null, entries: [], copyFrom: null, copyQuery: "" };
}

export function entryKey(entry: { kind: string; externalId: string }): string {
  return `${entry.kind}:${entry.externalId}`;
}

export type ChoiceResult =
  | { ok: true; state: SelectionState }
  | { ok: false; state: SelectionState; message: string };

/**
 * The rows shown on a page, and which of them were ticked: ticked rows join the selection, the
 * others shown leave it; rows of other pages stay as they were.
 */
export function applyPageChoices(
  state: SelectionState,
  shown: readonly SelectedEntry[],
  ticked: ReadonlySet<string>,
): ChoiceResult {
  if (state.query) return { ok: true, state };
  const shownKeys = new Set(shown.map(entryKey));
  const kept = state.entries.filter(
    (entry) => !shownKeys.has(entryKey(entry)) || ticked.has(entryKey(entry)),
  );
  const keptKeys = new Set(kept.map(entryKey));
  const added = shown.filter((entry) => ticked.has(entryKey(entry)) && !keptKeys.has(entryKey(entry)));
  return limited(state, [...kept, ...added]);
}

export function selectPage(state: SelectionState, shown: readonly SelectedEntry[]): ChoiceResult {
  if (state.query) return { ok: true, state };
  const keys = new Set(state.entries.map(entryKey));
  return limited(state, [...state.entries, ...shown.filter((entry) => !keys.has(entryKey(entry)))]);
}

export function selectAllMatches(
  state: SelectionState,
  query: { text: string; kind: ImportKind; total: number },
): SelectionState {
  return { ...state, query, entries: [] };
}

export function clearSelection(state: SelectionState): SelectionState {
  return { ...state, query: null, entries: [] };
}

export function selectedCount(state: SelectionState): number {
  return state.query ? state.query.total : state.entries.length;
}

/** The run's selection, or null when nothing is chosen. */
export function selectionForRun(
  state: SelectionState,
): { selection: Selection; query: string; total: number } | null {
  if (state.query) {
    return {
      selection: { mode: "query", text: state.query.text, kind: state.query.kind },
      query: state.query.text,
      total: state.query.total,
    };
  }
  if (state.entries.length === 0) return null;
  return {
    selection: { mode: "entries", entries: state.entries },
    query: describeEntries(state.entries),
    total: state.entries.length,
  };
}

/** “alice, bob and 3 more”: how a run of chosen entries is listed. */
export function describeEntries(entries: readonly SelectedEntry[]): string {
  const names = entries.slice(0, 3).map((entry) => entry.name);
  const more = entries.length - names.length;
  return more > 0 ? `${names.join(", ")} and ${more.toLocaleString("en-US")} more` : names.join(", ");
}

function limited(state: SelectionState, entries: SelectedEntry[]): ChoiceResult {
  if (entries.length > MAX_CHOSEN_ENTRIES) {
    return {
      ok: false,
      state,
      message: `Choose at most ${MAX_CHOSEN_ENTRIES.toLocaleString("en-US")} entries one by one. To import more, use “Select all matches”.`,
    };
  }
  return { ok: true, state: { ...state, entries } };
}
