/**
 * Import runs and synchronizations: start, get, list, cancel, the report, and the review of held
 * removals. Both are runs of the same queue (services/import/run-queue.ts) and share their shape.
 */
import { and, desc, eq, lt, type SQL } from "drizzle-orm";
import type { Request } from "express";
import { z } from "zod";
import type { Db } from "../db/client.ts";
import { importRuns } from "../db/schema.ts";
import { dnEquals, parseDn } from "../ldap/dn.ts";
import { type Directory, getDirectory, mappingOf } from "../services/directories.ts";
import { findRoleSources, resolveRoleSource } from "../services/import/role-sources.ts";
import {
  createRun,
  getRun,
  type ImportRun,
  listRunEntries,
  requestCancellation,
} from "../services/import/run-queue.ts";
import { planSearch, searchDirectory } from "../services/import/search.ts";
import { describeEntries, MAX_CHOSEN_ENTRIES } from "../services/import/selection.ts";
import {
  IMPORT_KINDS,
  type ImportKind,
  OUTCOMES,
  type Outcome,
  type RoleSource,
  type SelectedEntry,
  type Selection,
} from "../services/import/types.ts";
import { PERMISSIONS } from "../services/permissions.ts";
import { requestSynchronization, reviewHeldRemovals } from "../services/sync/schedule.ts";
import type { FieldErrors } from "../web/forms/form.ts";
import { reviewForm } from "../web/forms/synchronization.ts";
import type { ApiDeps } from "./deps.ts";
import { cursorField, decodeOffset, encodeOffset, limitField, pageSchema, sendPage } from "./paging.ts";
import { ApiProblem, invalid, notFound, problemSchema } from "./problem.ts";
import { type ApiRoute, idParam, MAX_ID, route } from "./registry.ts";

export const runSchema = z
  .object({
    id: z.number().int(),
    kind: z.enum(["import", "synchronization"]),
    directory: z.object({ id: z.number().int().nullable(), name: z.string() }),
    startedBy: z.string(),
    query: z.string(),
    selection: z.string().describe("What the run imports, in words."),
    status: z.enum(["queued", "running", "succeeded", "failed", "cancelled", "held"]),
    finished: z.boolean(),
    cancelRequested: z.boolean(),
    progress: z.object({
      processed: z.number().int(),
      total: z.number().int().nullable().describe("Null until known; grows as groups' members are read."),
    }),
    counts: z.object({
      created: z.number().int(),
      updated: z.number().int(),
      unchanged: z.number().int(),
      skipped: z.number().int(),
      failed: z.number().int(),
    }),
    copyRolesFrom: z
      .object({ type: z.enum(["user", "group"]), id: z.number().int(), name: z.string() })
      .nullable(),
    error: z.string().nullable(),
    syncMethod: z.enum(["full", "incremental"]).nullable(),
    syncNote: z.string().nullable(),
    held: z
      .object({
        reason: z.string().nullable(),
        count: z.number().int().nullable(),
        review: z.enum(["applied", "discarded", "superseded"]).nullable(),
        reviewedBy: z.string().nullable(),
        reviewedAt: z.string().nullable(),
      })
      .nullable()
      .describe("A synchronization that held its removals for review."),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .meta({ id: "Run" });

const FINISHED = new Set(["succeeded", "failed", "cancelled", "held"]);

export function runJson(run: ImportRun): z.infer<typeof runSchema> {
  const selection = run.selection as Selection;
  return {
    id: run.id,
    kind: run.kind,
    directory: { id: run.directoryId, name: run.directoryName },
    startedBy: run.actorName,
    query: run.query,
    selection: selectionText(selection, run.query),
    status: run.status,
    finished: FINISHED.has(run.status),
    cancelRequested: run.cancelRequested,
    progress: { processed: run.processed, total: run.total },
    counts: {
      created: run.created,
      updated: run.updated,
      unchanged: run.unchanged,
      skipped: run.skipped,
      failed: run.failed,
    },
    copyRolesFrom: (run.copyRolesFrom as RoleSource | null) ?? null,
    error: run.error,
    syncMethod: run.syncMethod,
    syncNote: run.syncNote,
    held:
      run.heldReason !== null || run.review !== null
        ? {
            reason: run.heldReason,
            count: run.heldCount,
            review: run.review,
            reviewedBy: run.reviewedBy,
            reviewedAt: run.reviewedAt?.toISOString() ?? null,
          }
        : null,
    createdAt: run.createdAt.toISOString(),
    startedAt: run.startedAt?.toISOString() ?? null,
    finishedAt: run.finishedAt?.toISOString() ?? null,
  };
}

function selectionText(selection: Selection, query: string): string {
  if (selection.mode === "synchronize") return "Every user and group imported from the directory";
  if (selection.mode === "query")
    return `All ${selection.kind === "both" ? "users and groups" : selection.kind} matching “${selection.text}”`;
  return `${selection.entries.length} chosen entries: ${query}`;
}

const entrySpec = z.union([
  z
    .object({
      kind: z.enum(["user", "group"]),
      externalId: z.string().min(1).max(512),
      dn: z.string().max(4096),
      name: z.string().max(1024),
    })
    .describe("A match's `entry` as a directory search returned it."),
  z
    .object({ dn: z.string().min(1).max(4096) })
    .describe("An entry named by its DN: found by a search of the directory."),
]);

const startImportSchema = z
  .object({
    directoryId: z
      .number({ message: "Choose the directory to import from." })
      .int()
      .positive()
      .max(MAX_ID, "There is no directory with this id."),
    query: z
      .object({
        text: z
          .string()
          .trim()
          .min(1, "Type a name or an LDAP filter.")
          .max(1000, "Use at most 1000 characters."),
        kind: z.enum(IMPORT_KINDS as [ImportKind, ...ImportKind[]]).default("both"),
      })
      .optional()
      .describe("Import every match of this search."),
    entries: z
      .array(entrySpec)
      .min(1, "Choose at least one entry.")
      .max(
        MAX_CHOSEN_ENTRIES,
        `Choose at most ${MAX_CHOSEN_ENTRIES} entries one by one; use a query for more.`,
      )
      .optional()
      .describe("Import these entries."),
    copyRolesFrom: z
      .string()
      .trim()
      .min(1)
      .max(300)
      .optional()
      .describe(
        "Copy the roles of this user or group onto every imported user: `user:12`, `group:3`, or a username or group name.",
      ),
  })
  .refine((v) => (v.query === undefined) !== (v.entries === undefined), {
    message: "Give either `query` (all its matches) or `entries`, not both.",
    path: ["query"],
  })
  .meta({ id: "StartImport" });

const runParams = z.object({ runId: idParam });
const listQuery = z.object({
  directoryId: z.coerce
    .number()
    .int()
    .positive()
    .max(MAX_ID, "There is no directory with this id.")
    .optional(),
  limit: limitField,
  cursor: cursorField,
});
const entriesQuery = z.object({
  outcome: z
    .enum(OUTCOMES as [Outcome, ...Outcome[]])
    .optional()
    .describe("Only the entries with this outcome."),
  limit: limitField,
  cursor: cursorField,
});
const reportEntrySchema = z
  .object({
    outcome: z.enum(OUTCOMES as [Outcome, ...Outcome[]]),
    kind: z.string().describe("user, group, or a member that is neither (computer, contact, member)."),
    name: z.string(),
    dn: z.string(),
    reason: z.string(),
  })
  .meta({ id: "ReportEntry" });

const common = {
  401: { description: "No valid API token or session.", schema: problemSchema },
  403: { description: "The account lacks the permission.", schema: problemSchema },
};
const runNotFound = { 404: { description: "No such run.", schema: problemSchema } };

export function runRoutes(deps: ApiDeps): ApiRoute[] {
  const { db } = deps;
  const loadRun = async (id: number, kind?: ImportRun["kind"]) => {
    const run = await getRun(db, id);
    if (!run || (kind && run.kind !== kind)) throw notFound(kind ?? "run");
    return run;
  };
  const listOf =
    (kind: ImportRun["kind"]) =>
    async ({
      req,
      res,
      query,
    }: {
      req: Request;
      res: import("express").Response;
      query: z.infer<typeof listQuery>;
    }) => {
      const { runs, next } = await listRunsOf(db, kind, query, query.cursor);
      return { body: sendPage(req, res, runs.map(runJson), next) };
    };
  const entries =
    (kind: ImportRun["kind"]) =>
    async ({
      req,
      res,
      params,
      query,
    }: {
      req: Request;
      res: import("express").Response;
      params: { runId: number };
      query: z.infer<typeof entriesQuery>;
    }) => {
      await loadRun(params.runId, kind);
      const offset = decodeOffset(query.cursor);
      if (offset === null) throw invalid({ cursor: "This cursor is not one Roster gave." });
      const report = await listRunEntries(db, params.runId, {
        outcomes: query.outcome ? [query.outcome] : [...OUTCOMES],
        limit: query.limit,
        offset,
      });
      const end = offset + report.entries.length;
      return {
        body: {
          ...sendPage(req, res, report.entries, end < report.total ? encodeOffset(end) : null),
          total: report.total,
        },
      };
    };

  return [
    route({
      method: "post",
      path: "/imports",
      operationId: "startImport",
      summary: "Start an import",
      description:
        "Imports chosen entries (as a directory search returned them, or by DN), or every match of a query, optionally copying a user's or group's roles onto the imported users. The run goes on in the background: poll it until `finished`.",
      tag: "Imports",
      permission: PERMISSIONS.manageUsers,
      body: startImportSchema,
      responses: {
        202: { description: "The run, queued.", schema: runSchema },
        ...common,
        422: { description: "Invalid input, or an entry the directory doesn't have.", schema: problemSchema },
        502: {
          description: "The directory could not be searched for an entry named by DN.",
          schema: problemSchema,
        },
      },
      handler: async ({ body, actor }) => {
        const directory = await getDirectory(db, body.directoryId);
        if (!directory) throw invalid({ directoryId: "There is no directory with this id." });
        if (body.query) {
          // As the import page, which offers "all matches" only of a search that ran: a malformed
          // filter is refused now, not queued as a run bound to fail.
          const plan = planSearch(mappingOf(directory), body.query.text, body.query.kind);
          if (!plan.ok) throw invalid({ "query.text": plan.message });
        }
        const copyFrom = body.copyRolesFrom ? await roleSourceOf(db, body.copyRolesFrom) : null;
        const chosen = body.query
          ? {
              selection: { mode: "query", text: body.query.text, kind: body.query.kind } as Selection,
              query: body.query.text,
              total: null,
            }
          : await chosenEntries(deps, directory, body.entries ?? []);
        const run = await createRun(db, {
          directory: { id: directory.id, name: directory.name },
          actor,
          query: chosen.query,
          selection: chosen.selection,
          copyRolesFrom: copyFrom,
          total: chosen.total,
        });
        deps.wake?.();
        return { status: 202, body: runJson(run), location: `/api/v1/imports/${run.id}` };
      },
    }),
    route({
      method: "get",
      path: "/imports",
      operationId: "listImports",
      summary: "List import runs, newest first",
      tag: "Imports",
      permission: PERMISSIONS.manageUsers,
      query: listQuery,
      responses: { 200: { description: "A page of runs.", schema: pageSchema(runSchema) }, ...common },
      handler: listOf("import"),
    }),
    route({
      method: "get",
      path: "/imports/{runId}",
      operationId: "getImport",
      summary: "Get an import run: status, progress and counts",
      tag: "Imports",
      permission: PERMISSIONS.manageUsers,
      params: runParams,
      responses: { 200: { description: "The run.", schema: runSchema }, ...common, ...runNotFound },
      handler: async ({ params }) => ({ body: runJson(await loadRun(params.runId, "import")) }),
    }),
    route({
      method: "post",
      path: "/imports/{runId}/cancellation",
      operationId: "cancelImport",
      summary: "Cancel an import run",
      description: "A queued run is cancelled at once; a running one stops after the batch it is writing.",
      tag: "Imports",
      permission: PERMISSIONS.manageUsers,
      params: runParams,
      responses: {
        202: { description: "Cancelled or cancelling: the run as it is now.", schema: runSchema },
        ...common,
        ...runNotFound,
        409: { description: "The run had already ended.", schema: problemSchema },
      },
      handler: async ({ params }) => {
        const run = await loadRun(params.runId, "import");
        const result = await requestCancellation(db, run.id);
        if (result === "finished") throw new ApiProblem(409, "The import had already ended.");
        if (result === "missing") throw notFound("import");
        return { status: 202, body: runJson(await loadRun(run.id)) };
      },
    }),
    route({
      method: "get",
      path: "/imports/{runId}/entries",
      operationId: "listImportEntries",
      summary: "A run's report: what happened to each entry it did not simply create",
      tag: "Imports",
      permission: PERMISSIONS.manageUsers,
      params: runParams,
      query: entriesQuery,
      responses: {
        200: {
          description: "A page of report entries.",
          schema: pageSchema(reportEntrySchema).extend({ total: z.number().int() }),
        },
        ...common,
        ...runNotFound,
      },
      handler: entries("import"),
    }),
    route({
      method: "post",
      path: "/synchronizations",
      operationId: "startSynchronization",
      summary: "Synchronize a directory now",
      description:
        "Queues a synchronization of everything imported from the directory; when one is already queued or running, answers that one (200) instead of starting another.",
      tag: "Synchronizations",
      permission: PERMISSIONS.manageUsers,
      body: z
        .object({
          directoryId: z
            .number({ message: "Choose the directory to synchronize." })
            .int()
            .positive()
            .max(MAX_ID, "There is no directory with this id."),
          full: z.boolean().default(false).describe("Read every entry, not only what changed."),
        })
        .meta({ id: "StartSynchronization" }),
      responses: {
        202: { description: "The synchronization, queued.", schema: runSchema },
        200: { description: "The synchronization already under way.", schema: runSchema },
        ...common,
        409: { description: "The directory is disabled.", schema: problemSchema },
        422: { description: "Invalid input.", schema: problemSchema },
      },
      handler: async ({ body, actor }) => {
        const directory = await getDirectory(db, body.directoryId);
        if (!directory) throw invalid({ directoryId: "There is no directory with this id." });
        if (!directory.enabled)
          throw new ApiProblem(409, "This directory is disabled: enable it before synchronizing it.");
        const { run, created } = await requestSynchronization(db, directory, actor, { full: body.full });
        if (created) deps.wake?.();
        return {
          status: created ? 202 : 200,
          body: runJson(run),
          location: `/api/v1/synchronizations/${run.id}`,
        };
      },
    }),
    route({
      method: "get",
      path: "/synchronizations",
      operationId: "listSynchronizations",
      summary: "List synchronizations, newest first",
      tag: "Synchronizations",
      permission: PERMISSIONS.manageUsers,
      query: listQuery,
      responses: { 200: { description: "A page of runs.", schema: pageSchema(runSchema) }, ...common },
      handler: listOf("synchronization"),
    }),
    route({
      method: "get",
      path: "/synchronizations/{runId}",
      operationId: "getSynchronization",
      summary: "Get a synchronization: status, progress, counts and held removals",
      tag: "Synchronizations",
      permission: PERMISSIONS.manageUsers,
      params: runParams,
      responses: { 200: { description: "The run.", schema: runSchema }, ...common, ...runNotFound },
      handler: async ({ params }) => ({ body: runJson(await loadRun(params.runId, "synchronization")) }),
    }),
    route({
      method: "get",
      path: "/synchronizations/{runId}/entries",
      operationId: "listSynchronizationEntries",
      summary: "A synchronization's report",
      tag: "Synchronizations",
      permission: PERMISSIONS.manageUsers,
      params: runParams,
      query: entriesQuery,
      responses: {
        200: {
          description: "A page of report entries.",
          schema: pageSchema(reportEntrySchema).extend({ total: z.number().int() }),
        },
        ...common,
        ...runNotFound,
      },
      handler: entries("synchronization"),
    }),
    route({
      method: "post",
      path: "/synchronizations/{runId}/held-changes",
      operationId: "reviewHeldChanges",
      summary: "Apply or discard the removals a synchronization held",
      tag: "Synchronizations",
      permission: PERMISSIONS.manageUsers,
      params: runParams,
      body: reviewForm,
      responses: {
        200: { description: "Decided: the run as it is now.", schema: runSchema },
        ...common,
        ...runNotFound,
        409: {
          description: "Nothing is held, it was already decided, or a later run superseded it.",
          schema: problemSchema,
        },
        422: { description: "Invalid input.", schema: problemSchema },
      },
      handler: async ({ params, body, actor }) => {
        const run = await loadRun(params.runId, "synchronization");
        const result = await reviewHeldRemovals(db, run.id, actor, body.decision);
        if (result === "not-held") {
          const current = await loadRun(run.id);
          throw new ApiProblem(
            409,
            current.review === "superseded"
              ? "A later synchronization has looked at the directory again: decide on its held changes instead."
              : current.status === "held"
                ? "These changes were already decided on."
                : "This synchronization holds no changes.",
          );
        }
        return { body: runJson(await loadRun(run.id)) };
      },
    }),
  ];
}

/** Runs of one kind, newest first, keyset-paged on the id (ids grow with creation). */
async function listRunsOf(
  db: Db,
  kind: ImportRun["kind"],
  filter: { directoryId?: number | undefined; limit: number },
  cursor: string | undefined,
): Promise<{ runs: ImportRun[]; next: string | null }> {
  const before = decodeOffset(cursor);
  if (before === null || before > MAX_ID) throw invalid({ cursor: "This cursor is not one Roster gave." });
  const conditions: SQL[] = [eq(importRuns.kind, kind)];
  if (filter.directoryId !== undefined) conditions.push(eq(importRuns.directoryId, filter.directoryId));
  if (before > 0) conditions.push(lt(importRuns.id, before));
  const rows = await db
    .select()
    .from(importRuns)
    .where(and(...conditions))
    .orderBy(desc(importRuns.id))
    .limit(filter.limit + 1);
  const runs = rows.slice(0, filter.limit);
  const last = runs[runs.length - 1];
  return { runs, next: rows.length > filter.limit && last ? encodeOffset(last.id) : null };
}

/** `user:12`, `group:3`, or a username or group name (a user first) → the source of roles to copy. */
async function roleSourceOf(db: Db, value: string): Promise<RoleSource> {
  const byId = await resolveRoleSource(db, value);
  if (byId) return { type: byId.type, id: byId.id, name: byId.name };
  const wanted = value.normalize("NFC").toLowerCase();
  const found = (await findRoleSources(db, value)).filter(
    (o) => o.name.normalize("NFC").toLowerCase() === wanted,
  );
  const source = found.find((o) => o.type === "user") ?? found[0];
  if (!source) throw invalid({ copyRolesFrom: "There is no user or group with this id or name." });
  return { type: source.type, id: source.id, name: source.name };
}

type EntrySpec = z.infer<typeof entrySpec>;

/**
 * Chosen entries as a run takes them. An entry named only by its DN is looked up with a search for
 * its first RDN's value, the match with the same DN kept: the same query language the import page
 * uses, so an entry outside the directory's filters is refused the same way.
 */
async function chosenEntries(
  deps: ApiDeps,
  directory: Directory,
  specs: EntrySpec[],
): Promise<{ selection: Selection; query: string; total: number }> {
  const entries: SelectedEntry[] = [];
  const errors: FieldErrors = {};
  for (const [index, spec] of specs.entries()) {
    if ("externalId" in spec) {
      entries.push(spec);
      continue;
    }
    const found = await entryAtDn(deps, directory, spec.dn);
    if (typeof found === "string") errors[`entries.${index}.dn`] = found;
    else entries.push(found);
  }
  if (Object.keys(errors).length > 0)
    throw invalid(errors, "Some entries could not be found in the directory.");
  const unique = [...new Map(entries.map((e) => [`${e.kind}:${e.externalId}`, e])).values()];
  return {
    selection: { mode: "entries", entries: unique },
    query: describeEntries(unique),
    total: unique.length,
  };
}

async function entryAtDn(deps: ApiDeps, directory: Directory, dn: string): Promise<SelectedEntry | string> {
  let value: string | undefined;
  try {
    value = parseDn(dn)[0]?.[0]?.value;
  } catch {
    return "This is not a valid DN.";
  }
  if (!value) return "This is not a valid DN.";
  const searched = await searchDirectory(
    { db: deps.db, secretBox: deps.secretBox, logger: deps.directoryLogger },
    directory,
    value.replace(/[()]/g, " ").trim() || value,
    "both",
    { offset: 0, limit: 200 },
  );
  if (!searched.ok) {
    if (searched.field) return searched.message;
    throw new ApiProblem(502, searched.message, { title: "The directory could not be searched" });
  }
  const row = searched.results.rows.find((r) => dnEquals(r.dn, dn));
  if (!row) return "No user or group the directory's filters find has this DN.";
  return { kind: row.kind, externalId: row.externalId, dn: row.dn, name: row.name };
}
