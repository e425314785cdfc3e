import type { Request, Response } from "express";
import type { z } from "zod";
import type { Db } from "../../db/client.ts";
import type { DirectoryLogger } from "../../ldap/client.ts";
import { type Directory, getDirectory, listDirectories } from "../../services/directories.ts";
import {
  findRoleSources,
  type RoleSourceOption,
  resolveRoleSource,
} from "../../services/import/role-sources.ts";
import {
  createRun,
  getRun,
  type ImportRun,
  isFinished,
  listRunEntries,
  listRuns,
  requestCancellation,
} from "../../services/import/run-queue.ts";
import { type SearchResults, searchDirectory } from "../../services/import/search.ts";
import {
  applyPageChoices,
  clearSelection,
  emptySelection,
  entryKey,
  type SelectionState,
  selectAllMatches,
  selectedCount,
  selectionForRun,
  selectPage,
} from "../../services/import/selection.ts";
import {
  type ImportKind,
  OUTCOMES,
  type Outcome,
  type RoleSource,
  type RunStatus,
  type SelectedEntry,
} from "../../services/import/types.ts";
import type { SecretBox } from "../../services/secrets.ts";
import { listRemovals } from "../../services/sync/removals.ts";
import { redirectAfterPost, redirectWhenSaved } from "../flash.ts";
import type { FieldErrors } from "../forms/form.ts";
import { choicesSchema, entrySchema, one, type SearchParams, searchSchema } from "../forms/imports.ts";
import { loaded, paramLoader } from "../loaders.ts";
import { render, wantsPartial } from "../render.ts";

declare module "express-session" {
  interface SessionData {
    importSelection?: SelectionState;
    /** Where focus goes on the page a selection change redirects to (without JavaScript). */
    importFocus?: "selection" | "copy";
  }
}

export interface ImportRouteDeps {
  db: Db;
  secretBox: SecretBox;
  directoryLogger?: DirectoryLogger;
  /** Asks the import worker to look for the new run now rather than at its next poll. */
  wake?: () => void;
}

const RESULTS_PER_PAGE = 50;
const RUNS_PER_PAGE = 25;
const ENTRIES_PER_PAGE = 50;
/** Held removals listed on a run page (the count says how many there are in all). */
const HELD_SHOWN = 500;
const MAX_QUERY_LENGTH = 1000;
const STARTED_MESSAGE = "The import has started. It goes on in the background: you can leave this page.";
const RERUN_MESSAGE = "The import runs again in the background.";

export function importHandlers(deps: ImportRouteDeps) {
  const { db } = deps;

  const loadRun = paramLoader("run", (id) => getRun(db, id), notFound);

  const searchPage = async (req: Request, res: Response) => {
    const params = searchParams(req.query);
    const hint = req.session.importFocus;
    delete req.session.importFocus;
    const view = await searchView(deps, req, params, { focus: hint ?? (params.q.trim() ? "results" : null) });
    render(req, res, "imports/new", view, { partial: "imports/_import-search", status: view.status });
  };

  // Ticks, "select all", paging and the roles picker: the choices are kept, then the page is shown again.
  const changeSelection = async (req: Request, res: Response) => {
    const params = searchParams(req.body);
    const choices = choicesSchema.parse(req.body ?? {});
    const { state, error, copyError } = await applyChoices(deps, req, params, choices);
    req.session.importSelection = state;
    const page = choices.goto ?? params.page;
    const target = { ...params, page };
    const focus = choices.goto ? "results" : choices.action === "find-source" ? "copy" : "selection";
    const errors: FieldErrors = {
      ...(error ? { pick: error } : {}),
      ...(copyError ? { copyFrom: copyError } : {}),
    };
    const refused = Object.keys(errors).length > 0;
    if (!refused && !wantsPartial(req)) {
      if (focus !== "results") req.session.importFocus = focus;
      // The next page reads the selection and the focus hint: it must not load the session before they are saved.
      return redirectWhenSaved(req, res, searchUrl(target));
    }
    const view = await searchView(deps, req, target, { focus, errors });
    res.set(choices.goto ? "HX-Push-Url" : "HX-Replace-Url", searchUrl(target));
    render(req, res, "imports/new", view, {
      partial: "imports/_import-search",
      status: refused ? 422 : view.status,
    });
  };

  const start = async (req: Request, res: Response) => {
    const choices = choicesSchema.parse(req.body ?? {});
    const actor = currentActor(res);
    if (choices.rerun) {
      const previous = await getRun(db, choices.rerun);
      if (!previous || previous.directoryId === null) return notFound(req, res);
      const run = await createRun(db, {
        directory: { id: previous.directoryId, name: previous.directoryName },
        actor,
        query: previous.query,
        selection: previous.selection as ImportRun["selection"] as never,
        copyRolesFrom: (previous.copyRolesFrom as RoleSource | null) ?? null,
        total: null,
      });
      deps.wake?.();
      return redirectAfterPost(req, res, `/imports/${run.id}`, RERUN_MESSAGE);
    }
    const params = searchParams(req.body);
    const { state, error, copyError, directory } = await applyChoices(deps, req, params, choices);
    req.session.importSelection = state;
    const chosen = selectionForRun(state);
    if (error || copyError || !chosen || !directory) {
      const errors: FieldErrors = copyError
        ? { copyFrom: copyError }
        : error
          ? { pick: error }
          : !directory
            ? { directory: "Choose the directory to import from." }
            : { pick: "Choose at least one user or group to import, or select all matches." };
      const view = await searchView(deps, req, params, { errors });
      // A boosted form's address would become /imports (the runs list) for Reload and Back.
      res.set("HX-Replace-Url", searchUrl(params));
      return render(req, res, "imports/new", view, { status: 422 });
    }
    const run = await createRun(db, {
      directory: { id: directory.id, name: directory.name },
      actor,
      query: chosen.query,
      selection: chosen.selection,
      copyRolesFrom: state.copyFrom,
      total: chosen.total,
    });
    delete req.session.importSelection;
    deps.wake?.();
    redirectAfterPost(req, res, `/imports/${run.id}`, STARTED_MESSAGE);
  };

  const list = async (req: Request, res: Response) => {
    const page = pageOf(req.query.page);
    const { runs, total } = await listRuns(db, { limit: RUNS_PER_PAGE, offset: (page - 1) * RUNS_PER_PAGE });
    render(req, res, "imports/index", {
      title: "Imports",
      heading: "Imports",
      directory: null,
      runs,
      ...paging(page, total, RUNS_PER_PAGE, "/imports?"),
    });
  };

  const show = async (req: Request, res: Response) => {
    const run = loaded(res, "run");
    const counts = outcomeCounts(run);
    const outcome = outcomeOf(req.query.outcome, counts);
    const page = pageOf(req.query.page);
    const report = isFinished(run.status as RunStatus)
      ? await listRunEntries(db, run.id, {
          outcomes: [outcome],
          limit: ENTRIES_PER_PAGE,
          offset: (page - 1) * ENTRIES_PER_PAGE,
        })
      : null;
    const held =
      run.status === "held" ? await listRemovals(db, run.id, { limit: HELD_SHOWN, offset: 0 }) : null;
    // "Has started" is untrue once the run has ended (a small import ends before its page loads).
    if (isFinished(run.status as RunStatus) && isStartedFlash(res.locals.flash)) delete res.locals.flash;
    render(
      req,
      res,
      "imports/show",
      {
        title: `${run.kind === "synchronization" ? "Synchronization" : "Import"} #${run.id}`,
        run,
        held,
        heldShown: HELD_SHOWN,
        counts,
        outcome,
        report,
        reportPaging: report
          ? paging(page, report.total, ENTRIES_PER_PAGE, `/imports/${run.id}?outcome=${outcome}&`)
          : null,
        selectionText: selectionText(run),
        timing: runTiming(run, new Date()),
        // Polling stops when the run ends: the last poll also brings the report in.
        finalPoll: wantsPartial(req) && isFinished(run.status as RunStatus),
        pollUrl: req.originalUrl,
        // Browsers without JavaScript never send HX-Request; they reload the page while it runs.
        refreshWithoutScript: req.get("HX-Request") !== "true",
      },
      { partial: "imports/_import-progress" },
    );
  };

  const cancel = async (req: Request, res: Response) => {
    const run = loaded(res, "run");
    const result = await requestCancellation(db, run.id);
    const message =
      result === "cancelled"
        ? "The import was cancelled before it started."
        : result === "requested"
          ? "Cancelling: the import stops after the batch it is writing."
          : "The import had already ended.";
    redirectAfterPost(req, res, `/imports/${run.id}`, message);
  };

  // Loads its directory itself: a missing one gets this module's "no such import" page.
  const directoryRuns = async (req: Request, res: Response) => {
    const id = Number(req.params.id);
    const directory = Number.isSafeInteger(id) ? await getDirectory(db, id) : null;
    if (!directory) return notFound(req, res);
    const page = pageOf(req.query.page);
    const { runs, total } = await listRuns(db, {
      directoryId: directory.id,
      limit: RUNS_PER_PAGE,
      offset: (page - 1) * RUNS_PER_PAGE,
    });
    render(req, res, "imports/index", {
      title: `Imports from ${directory.name}`,
      heading: `Imports from ${directory.name}`,
      directory,
      runs,
      ...paging(page, total, RUNS_PER_PAGE, `/settings/directories/${directory.id}/imports?`),
    });
  };

  return { loadRun, searchPage, changeSelection, start, list, show, cancel, directoryRuns };
}

// ——— the search page ———

interface ViewOptions {
  focus?: "results" | "selection" | "copy" | null;
  errors?: FieldErrors;
}

async function searchView(deps: ImportRouteDeps, req: Request, params: SearchParams, options: ViewOptions) {
  const directories = await listDirectories(deps.db);
  const errors: FieldErrors = { ...(options.errors ?? {}) };
  const directoryId = params.directory ?? (directories.length === 1 ? directories[0]?.id : undefined);
  const directory = directories.find((d) => d.id === directoryId) ?? null;
  if (params.directory !== undefined && !directory)
    errors.directory = "That directory does not exist any more: choose another.";
  const state = selectionOf(req, directory?.id);
  const q = params.q.trim();
  let status = 200;
  let results: (SearchResults & { page: number; pages: number; from: number; to: number }) | null = null;
  let searchError: string | null = null;

  if (q.length > MAX_QUERY_LENGTH) errors.q = `Use at most ${MAX_QUERY_LENGTH} characters.`;
  else if (q !== "" && !directory && !errors.directory) errors.directory = "Choose the directory to search.";
  if (q !== "" && directory && !errors.q) {
    const outcome = await search(deps, directory, q, params);
    if ("error" in outcome) {
      if (outcome.field) errors.q = outcome.error;
      else searchError = outcome.error;
    } else {
      results = outcome.results;
    }
  }
  if (Object.keys(errors).length > 0) status = 422;
  else if (searchError) status = 502;

  const copy = await copyView(deps.db, state);
  return {
    title: "Import users & groups",
    directories,
    directory,
    values: { directory: directory?.id ?? "", kind: params.kind, q: params.q },
    kinds: [
      { value: "both", label: "Users and groups" },
      { value: "users", label: "Users" },
      { value: "groups", label: "Groups" },
    ],
    errors,
    results,
    searchError,
    selection: selectionView(state, q, params.kind),
    copy,
    focus: Object.keys(errors).length > 0 ? null : (options.focus ?? null),
    urls: {
      page: (page: number) => searchUrl({ ...params, directory: directory?.id, page }),
    },
    status,
  };
}

type SearchOutcome =
  | { results: SearchResults & { page: number; pages: number; from: number; to: number } }
  | { error: string; field: boolean };

async function search(
  deps: ImportRouteDeps,
  directory: Directory,
  q: string,
  params: SearchParams,
): Promise<SearchOutcome> {
  const offset = (params.page - 1) * RESULTS_PER_PAGE;
  const searched = await searchDirectory(
    { db: deps.db, secretBox: deps.secretBox, logger: deps.directoryLogger },
    directory,
    q,
    params.kind,
    { offset, limit: RESULTS_PER_PAGE },
  );
  if (!searched.ok) return { error: searched.message, field: searched.field };
  const results = searched.results;
  return {
    results: {
      ...results,
      page: params.page,
      pages: Math.max(1, Math.ceil(results.total / RESULTS_PER_PAGE)),
      from: results.rows.length > 0 ? offset + 1 : 0,
      to: offset + results.rows.length,
    },
  };
}

function selectionView(state: SelectionState, q: string, kind: ImportKind) {
  return {
    count: selectedCount(state),
    query: state.query,
    /** The whole current search is selected: every row shows ticked. */
    allOfThisSearch: state.query !== null && state.query.text === q && state.query.kind === kind,
    keys: new Set(state.entries.map(entryKey)),
    entries: state.entries,
  };
}

async function copyView(db: Db, state: SelectionState) {
  const options: RoleSourceOption[] = await findRoleSources(db, state.copyQuery);
  const chosen = state.copyFrom
    ? await resolveRoleSource(db, `${state.copyFrom.type}:${state.copyFrom.id}`)
    : null;
  const listed =
    chosen && !options.some((o) => o.type === chosen.type && o.id === chosen.id)
      ? [chosen, ...options]
      : options;
  return { query: state.copyQuery, options: listed, chosen, searched: state.copyQuery.trim() !== "" };
}

/** Applies a submitted page of choices to the session's selection. */
async function applyChoices(
  deps: ImportRouteDeps,
  req: Request,
  params: SearchParams,
  choices: z.infer<typeof choicesSchema>,
): Promise<{
  state: SelectionState;
  error: string | null;
  copyError: string | null;
  directory: Directory | null;
}> {
  const directory = params.directory === undefined ? null : await getDirectory(deps.db, params.directory);
  if (!directory)
    return {
      state: req.session.importSelection ?? emptySelection(0),
      error: null,
      copyError: null,
      directory: null,
    };
  let state = selectionOf(req, directory.id);
  const shown = choices.shown.flatMap((value) => parseEntry(value));
  const picked = new Set(choices.pick);
  let error: string | null = null;
  const applied = applyPageChoices(state, shown, picked);
  state = applied.state;
  if (!applied.ok) error = applied.message;
  if (choices.action === "select-page") {
    const all = selectPage(state, shown);
    state = all.state;
    if (!all.ok) error = all.message;
  } else if (choices.action === "select-matches") {
    state = selectAllMatches(state, { text: params.q.trim(), kind: params.kind, total: choices.total });
  } else if (choices.action === "clear") {
    state = clearSelection(state);
  }
  if (choices.copyQ !== undefined) state = { ...state, copyQuery: choices.copyQ.trim() };
  let copyError: string | null = null;
  if (choices.copyFrom !== undefined) {
    const source = choices.copyFrom === "" ? null : await resolveRoleSource(deps.db, choices.copyFrom);
    // Chosen, but gone since (deleted meanwhile): never quietly import without the roles asked for.
    if (choices.copyFrom !== "" && !source) {
      copyError =
        "The user or group chosen to copy roles from no longer exists. Choose another, or “Don’t copy roles”.";
    }
    state = { ...state, copyFrom: source ? { type: source.type, id: source.id, name: source.name } : null };
  }
  return { state, error, copyError, directory };
}

function parseEntry(value: string): SelectedEntry[] {
  try {
    const parsed = entrySchema.safeParse(JSON.parse(value));
    return parsed.success ? [parsed.data] : [];
  } catch {
    return [];
  }
}

function selectionOf(req: Request, directoryId: number | undefined): SelectionState {
  const stored = req.session.importSelection;
  if (directoryId === undefined) return emptySelection(0);
  return stored && stored.directoryId === directoryId ? stored : emptySelection(directoryId);
}

function searchParams(source: unknown): SearchParams {
  const parsed = searchSchema.parse(source ?? {});
  return { directory: parsed.directory, kind: parsed.kind, q: parsed.q, page: parsed.page };
}

export function searchUrl(params: {
  directory?: number | undefined;
  kind: ImportKind;
  q: string;
  page: number;
}): string {
  const query = new URLSearchParams();
  if (params.directory !== undefined) query.set("directory", String(params.directory));
  query.set("kind", params.kind);
  query.set("q", params.q);
  if (params.page > 1) query.set("page", String(params.page));
  return `/imports/new?${query.toString()}`;
}

// ——— runs ———

function currentActor(res: Response) {
  const user = res.locals.currentUser;
  return { id: user?.id ?? null, name: user?.username ?? "unknown" };
}

function outcomeCounts(run: ImportRun): Record<Outcome, number> {
  return {
    created: run.created,
    updated: run.updated,
    unchanged: run.unchanged,
    skipped: run.skipped,
    failed: run.failed,
  };
}

/** The report tab asked for, else the most telling one that has entries. */
function outcomeOf(raw: unknown, counts: Record<Outcome, number>): Outcome {
  if (typeof raw === "string" && (OUTCOMES as readonly string[]).includes(raw)) return raw as Outcome;
  return (["failed", "skipped", "updated", "created"] as const).find((o) => counts[o] > 0) ?? "created";
}

function selectionText(run: ImportRun): string {
  const selection = run.selection as {
    mode: string;
    text?: string;
    kind?: ImportKind;
    entries?: unknown[];
    trigger?: string;
  };
  if (selection.mode === "synchronize") {
    return `Every user and group imported from the directory (${selection.trigger === "schedule" ? "on its schedule" : "asked for"})`;
  }
  if (selection.mode === "query") {
    const what =
      selection.kind === "users" ? "users" : selection.kind === "groups" ? "groups" : "users and groups";
    return `All ${what} matching “${selection.text ?? ""}”`;
  }
  const n = selection.entries?.length ?? 0;
  return `${n.toLocaleString("en-US")} chosen ${n === 1 ? "entry" : "entries"}: ${run.query}`;
}

/** A flash that says a run has just begun (here, or for a synchronization asked for in Settings). */
function isStartedFlash(flash: { kind: string; message: string } | undefined): boolean {
  if (flash?.kind !== "success") return false;
  return (
    flash.message === STARTED_MESSAGE ||
    flash.message === RERUN_MESSAGE ||
    flash.message.startsWith("The synchronization has started.")
  );
}

export interface RunTiming {
  /** How long it ran (until now while it runs), in milliseconds; null before it started. */
  elapsedMs: number | null;
  /** Entries a second since it started (or since another server took it over). */
  rate: number | null;
  /** While it runs with a known total: the time left at that rate. */
  remainingMs: number | null;
}

/** Speed and duration from the run's own row: no more than what its progress bar shows. */
export function runTiming(run: ImportRun, now: Date): RunTiming {
  if (!run.startedAt) return { elapsedMs: null, rate: null, remainingMs: null };
  const end = run.finishedAt ?? now;
  const elapsedMs = Math.max(0, end.getTime() - run.startedAt.getTime());
  // After a take-over, only what the new worker read counts, over the time since it took over.
  const from = run.resumedAt ?? run.startedAt;
  const done = run.processed - (run.resumedAt ? (run.resumedFrom ?? 0) : 0);
  const seconds = (end.getTime() - from.getTime()) / 1000;
  const rate = seconds >= 1 && done > 0 ? done / seconds : null;
  const left = run.total === null ? null : Math.max(0, run.total - run.processed);
  const remainingMs = !run.finishedAt && rate && left !== null ? (left / rate) * 1000 : null;
  return { elapsedMs, rate, remainingMs };
}

function pageOf(raw: unknown): number {
  const page = Number(one(raw));
  return Number.isSafeInteger(page) && page >= 1 ? page : 1;
}

function paging(page: number, total: number, perPage: number, base: string) {
  const pages = Math.max(1, Math.ceil(total / perPage));
  return {
    page,
    pages,
    total,
    previousHref: page > 1 ? `${base}page=${page - 1}` : null,
    nextHref: page < pages ? `${base}page=${page + 1}` : null,
  };
}

function notFound(req: Request, res: Response): void {
  render(
    req,
    res,
    "errors/error",
    {
      title: "Page not found",
      heading: "Page not found",
      message: "There is no such import. It may have been removed with its directory.",
    },
    { status: 404 },
  );
}
