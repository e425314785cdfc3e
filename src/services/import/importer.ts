/**
 * Executes one claimed import run: streams directory pages into batched upserts (each batch one
 * transaction, counters included), then imports each chosen group with all its members, nested
 * groups kept as subgroups. Memory holds the batches in flight; what the run has handled is kept in
 * the database with each batch (import_run_users), so it does not grow with the directory.
 */
import { setTimeout as delay } from "node:timers/promises";
import { sql } from "drizzle-orm";
import { Control } from "ldapts";
import type { Logger } from "pino";
import { type Db, isConnectionLost, sqlState } from "../../db/client.ts";
import { type ChangeLog, cookieCsn, findChangeLog, readMemberChanges } from "../../ldap/change-log.ts";
import type { DirectorySession, Entry } from "../../ldap/client.ts";
import { leafValue, normalizeDn, tryNormalizeDn } from "../../ldap/dn.ts";
import { DirectoryError, stoppedAnswering } from "../../ldap/errors.ts";
import {
  bufferAttributes,
  changedAtAttribute,
  changedAtOf,
  firstText,
  generalizedTime,
  isActiveDirectory,
  mapGroup,
  mapUser,
  stableIdOf,
} from "../../ldap/mapping.ts";
import {
  allMembers,
  completeMemberList,
  dnMemberKey,
  expandGroup,
  type MemberBatch,
  type MemberList,
  memberCount,
  memberListHash,
  resolveMemberValues,
  stripOptionalUid,
} from "../../ldap/members.ts";
import type { DirectoryMapping, LdapGroup } from "../../ldap/types.ts";
import { type Directory, StoredSecretError } from "../directories.ts";
import { withStoredDirectory } from "../directory-session.ts";
import { nameKey } from "../names.ts";
import type { SecretBox } from "../secrets.ts";
import { type Refreshed, refreshFromCookies, startingCookies } from "../sync/content-refresh.ts";
import { listInWords } from "../sync/decide.ts";
import {
  entriesByStableId,
  importFilter,
  placeOf,
  searchEntries,
  userIdsInDirectory,
} from "../sync/directory-reads.ts";
import {
  nextState,
  planSynchronization,
  readState,
  readUpdateSequence,
  type SyncCookies,
  type SyncPlan,
  saveSyncState,
  type UpdateSequence,
} from "../sync/incremental.ts";
import {
  applyRemovals,
  collectGoneGroups,
  collectGoneUsers,
  collectMembershipRemovals,
  collectMissing,
  collectNamedRemovals,
  countRemovals,
  guardVerdict,
  totalRemovals,
} from "../sync/removals.ts";
import {
  compareMemberList,
  directoryHasUsers,
  directoryHoldings,
  importedExternalIds,
  linkedMembersNamed,
  membersNotHandled,
  storedMemberListHash,
} from "../sync/store.ts";
import {
  type GroupBatchResult,
  linkMembers,
  pruneMembers,
  rememberMemberList,
  type UpsertContext,
  upsertGroups,
  upsertUsers,
} from "../sync/write.ts";
import {
  addGroupProgress,
  type GroupProgress,
  handledUsers,
  loadCheckpoint,
  recordHandledGroups,
  recordHandledUsers,
  recordPresent,
  recordUnresolved,
} from "./checkpoint.ts";
import { IdList } from "./id-list.ts";
import {
  type Claim,
  type Ending,
  LostClaimError,
  type Progress,
  recordProgress,
  recordSyncPlan,
  setTotal,
} from "./run-queue.ts";
import { forEachConcurrently, type MappedBatch, mapBatches, readAhead, WorkPool } from "./stream.ts";
import {
  emptyCounts,
  type OutcomeCounts,
  type ReportedEntry,
  type RoleSource,
  type SelectedEntry,
  type Selection,
} from "./types.ts";

/** Active Directory's LDAP_SERVER_SHOW_DELETED_OID: tombstones are returned by searches. */
const SHOW_DELETED_CONTROL = "1.2.840.113556.1.4.417";

/** Users per upsert statement: large enough to amortize round trips, small enough to keep memory flat. */
export const DEFAULT_BATCH_SIZE = 2000;
/** Member values a synchronization keeps from the group entries it read (≈ 50 bytes each). */
const MEMBER_VALUES_KEPT = 1_000_000;
/** Entries of a content-synchronization answer handed on at a time (they arrive all at once). */
const REFRESH_PAGE = 1000;
export const DEFAULT_WRITERS = 2;
/** Transient database conflicts (deadlock, serialization, a unique key taken meanwhile) retried per batch. */
const BATCH_ATTEMPTS = 5;
const RETRYABLE = new Set(["40P01", "40001", "23505"]);
/** A batch whose database connection was lost is tried again for about a minute (0.25 s … 8 s apart). */
const RECONNECT_ATTEMPTS = 12;
const DIRECTORY_RETRY_MS = 120_000;
const reconnectDelayMs = (attempt: number) => Math.min(8000, 250 * 2 ** (attempt - 1));
/**
 * Created entries listed in a run's report (the count is always exact). Updated, skipped and failed
 * entries are always listed: they carry a reason; a 100,000-user import lists its first creations.
 */
export const CREATED_REPORT_LIMIT = 5000;

export interface ImportHooks {
  /** Called after each batch is committed (tests use it to interrupt a run at a known point). */
  afterBatch?: (claim: Claim) => Promise<void> | void;
}

export interface ExecuteDeps {
  db: Db;
  secretBox: SecretBox;
  logger: Logger;
  batchSize?: number;
  /** Batches written at once by one run (default 2). */
  writers?: number;
  hooks?: ImportHooks;
  /**
   * How long a run waits for a directory that stopped answering (paused, restarted, network down)
   * before it fails: it reconnects with backoff and reads on from what it has committed (default 2 min).
   */
  directoryRetryMs?: number;
  /** How far before the last synchronization's newest change an incremental one reads (default 5 min). */
  watermarkMarginMs?: number;
}

/** Why a run stopped early: asked to (cancel), the instance is stopping, or another worker has it. */
export type StopReason = "cancel" | "shutdown" | "lost";

/** The directory did not come back within the run's retry window. */
export class DirectoryOutage extends Error {
  constructor(
    message: string,
    override readonly cause: DirectoryError,
  ) {
    super(message, { cause });
  }
}

export class RunStopped extends Error {
  constructor(readonly reason: StopReason) {
    super(`Import stopped: ${reason}`);
    this.name = "RunStopped";
  }
}

/** Runs the claimed import to its end; returns how it ended (null when the claim was lost). */
export async function executeRun(
  deps: ExecuteDeps,
  claim: Claim,
  controller: AbortController,
): Promise<Ending | null> {
  const { run } = claim;
  const log = deps.logger.child({ importRun: run.id });
  try {
    if (run.directoryId === null) return { status: "failed", error: "The directory was deleted." };
    const done = await withStoredDirectory({ ...deps, logger: log }, run.directoryId, (session, loaded) =>
      new RunImporter(
        deps,
        claim,
        session,
        loaded.mapping,
        loaded.directory.id,
        controller,
        loaded.directory,
      ).run(run.selection as Selection),
    );
    if (!done.ok) {
      // An error the directory answered mid-run is judged below like any other (a cancel may explain it).
      if (done.problem === "answered") throw done.cause;
      const error =
        done.problem === "unreachable"
          ? `Roster could not reach the directory: ${done.error.message}`
          : done.message;
      return { status: "failed", error };
    }
    return done.value;
  } catch (err) {
    const stopped = stopReason(err, controller);
    if (stopped === "cancel") return { status: "cancelled" };
    if (stopped === "lost" || err instanceof LostClaimError) return null;
    if (stopped === "shutdown") throw new RunStopped("shutdown");
    log.error({ err }, "import run failed");
    return { status: "failed", error: failureMessage(err) };
  }
}

function stopReason(err: unknown, controller: AbortController): StopReason | null {
  if (err instanceof RunStopped) return err.reason;
  if (controller.signal.aborted) {
    const reason = controller.signal.reason;
    return reason instanceof RunStopped ? reason.reason : "cancel";
  }
  return null;
}

/** Directory errors that mean the directory went away, rather than answered with an error. */

/** How a run that stopped on an error says why, on its page and in the audit log. */
export function failureMessage(err: unknown): string {
  if (err instanceof DirectoryOutage) return err.message;
  if (err instanceof DirectoryError) {
    const gone = stoppedAnswering(err);
    return `${gone ? "The directory stopped answering" : "Reading the directory failed"}: ${err.classified.message}`;
  }
  if (err instanceof StoredSecretError) return err.message;
  if (isConnectionLost(err)) {
    return "The database stopped answering: Roster lost its connection to PostgreSQL and could not reconnect within a minute. Check that the database server is running, then run the import again.";
  }
  const code = sqlState(err);
  if (code !== undefined || isDatabaseError(err)) {
    const detail = (err as { cause?: { message?: string } })?.cause?.message ?? (err as Error).message;
    return `A database error stopped the import${code ? ` (${code})` : ""}: ${firstLine(detail)}`;
  }
  return `The import stopped on an unexpected error: ${firstLine(err instanceof Error ? err.message : String(err))}`;
}

function firstLine(text: string): string {
  return text.split("\n")[0]?.slice(0, 300) ?? "";
}

function isDatabaseError(err: unknown): boolean {
  return err instanceof Error && /^Failed query|ECONNREFUSED|CONNECTION_|connection/i.test(err.message);
}

interface GroupState {
  id: number;
  externalId: string;
  name: string;
  dn: string;
  outcome: "created" | "updated" | "unchanged";
  changes: string[];
  /** Its members and subgroups linked by this run (a 1,000,000-member group: 4 MB, see IdList). */
  members: IdList;
  children: Set<number>;
  membersAdded: number;
  subgroupsAdded: number;
  /** The fingerprint of the member list read for it (stored when it is finished). */
  memberHash: string | null;
  /**
   * A synchronization that compared the member lists: the members and subgroups Roster has that
   * the directory's list did not name (leaving, unless resolved again under another name).
   */
  leaving?: { users: number[]; groups: number[] };
  /** Its member changes came from the change log: the stored fingerprint no longer holds. */
  forgetMemberList?: boolean;
}

class RunImporter {
  /*
   * The users this run has handled are not held here: they are in import_run_users, written with
   * each batch, and each batch asks it about its own entries (memory stays flat however many).
   */
  private readonly importedGroups = new Map<string, number | null>();
  /** Normalized DN → group id (null: skipped), for the groups this run has met. */
  private readonly groupIds = new Map<string, number | null>();
  /** Groups imported but not yet expanded: their report waits for their members. */
  private readonly pendingGroups = new Map<number, GroupState>();
  private readonly finishedGroups = new Set<number>();
  /** Normalized DN → members the total was given for the group when it was met. */
  private readonly membersCounted = new Map<string, number>();
  /** Groups whose member count was corrected, and unresolved members reported: once each, re-read or not. */
  private readonly countCorrected = new Set<string>();
  private readonly unresolvedReported = new Set<string>();
  /** Readings of users begun (importUsers calls): only the first meets every entry for the first time. */
  private usersPhases = 0;
  /** Groups whose members this run has begun to walk (expand). */
  private groupsWalked = 0;
  /** Entries processed by the run's committed batches, an earlier attempt's included. */
  private processed: number;
  /** Set once a phase is read again after the directory came back: batches then skip what was handled. */
  private readAgain = false;
  /** A synchronization: only what was imported before is refreshed, and removals are collected. */
  private syncing = false;
  /** User entries a synchronization read (imported or not): the guard's evidence of a sound answer. */
  private usersRead = 0;
  /** When this synchronization began reading (ms): the next one reads changes from there at the latest. */
  private syncStartedAt = 0;
  /** An incremental synchronization: changed groups are compared with what Roster has (expandChanged). */
  private changedOnly = false;
  /** Group DN → its complete member list, as a synchronization read the group entry. */
  private readonly memberValuesRead = new Map<string, MemberList>();
  private memberValuesHeld = 0;
  /** The directory's change log, when an incremental run reads member changes there. */
  private changeLog: ChangeLog | null = null;
  /** Group DN → the CSN of its latest change, as a refresh without member lists read it. */
  private readonly groupCsns = new Map<string, string>();
  /** The newest modifyTimestamp a synchronization read, ms since the epoch. */
  private highWater: number | null = null;
  /** The run's total as last known here (counted alongside when the run began without one). */
  private total: number | null;
  private createdReported = 0;
  /** Stable ids of users in batches being written right now (by this run's other writer). */
  private readonly usersInFlight = new Set<string>();
  /** Whether the last batch of users was mostly new: the next one is then inserted before any lookup. */
  private mostlyNew = false;
  private readonly writers: number;
  private readonly batchSize: number;
  private readonly copyRolesFrom: RoleSource | null;

  constructor(
    private readonly deps: ExecuteDeps,
    private readonly claim: Claim,
    private readonly session: DirectorySession,
    private readonly mapping: DirectoryMapping,
    private readonly directoryId: number,
    private readonly controller: AbortController,
    private readonly directory: Directory,
  ) {
    this.batchSize = deps.batchSize ?? DEFAULT_BATCH_SIZE;
    this.writers = Math.max(1, deps.writers ?? DEFAULT_WRITERS);
    this.copyRolesFrom = (claim.run.copyRolesFrom as RoleSource | null) ?? null;
    this.total = claim.run.total;
    this.processed = claim.run.processed;
  }

  private get signal(): AbortSignal {
    return this.controller.signal;
  }

  async run(selection: Selection): Promise<Ending> {
    if (this.claim.run.resumedAt !== null) await this.resume();
    if (selection.mode === "synchronize") return this.synchronize(selection.full === true);
    if (selection.mode === "query") {
      const kinds =
        selection.kind === "both"
          ? (["user", "group"] as const)
          : selection.kind === "users"
            ? (["user"] as const)
            : (["group"] as const);
      // Never rejects. Groups wait for it: their members add to the total, which must be there first.
      const counted = this.claim.run.total === null ? this.countInBackground(selection.text, kinds) : null;
      for (const kind of kinds) {
        const filter = importFilter(kind, selection.text, this.mapping);
        if (!filter.ok) throw new Error(`The search is not valid any more: ${filter.message}`);
        const pages = () =>
          searchEntries(this.session, this.mapping, kind, filter.filter, { signal: this.signal });
        if (kind === "user") await this.readingOn(() => this.importUsers(pages()));
        else {
          await counted;
          await this.readingOn(() => this.importGroups(pages()));
        }
      }
      await counted;
    } else {
      const users = selection.entries.filter((e) => e.kind === "user");
      const groups = selection.entries.filter((e) => e.kind === "group");
      const ids = (list: typeof users) => list.map((e) => e.externalId);
      if (users.length > 0) {
        await this.readingOn(() =>
          this.importUsers(entriesByStableId(this.session, this.mapping, "user", ids(users), this.signal)),
        );
      }
      if (groups.length > 0) {
        await this.readingOn(() =>
          this.importGroups(entriesByStableId(this.session, this.mapping, "group", ids(groups), this.signal)),
        );
      }
      await this.reportMissing(selection.entries);
    }
    await this.finishPendingGroups();
    return { status: "succeeded" };
  }

  /**
   * A synchronization: every user and group imported from the directory is read again and
   * refreshed, imported groups gain their new members (imported as a group import would), and what
   * the directory no longer has is removed at the end — unless the safety guard holds it.
   */
  private async synchronize(askedFull: boolean): Promise<Ending> {
    this.syncing = true;
    this.syncStartedAt = Date.now();
    const changedAt = changedAtAttribute(this.mapping);
    // Active Directory: where its write counter stands before anything is read.
    const sequence = isActiveDirectory(this.mapping)
      ? await this.readingOn(() => readUpdateSequence(this.session))
      : null;
    let plan = planSynchronization(this.directory, askedFull ? "full" : "auto", {
      ...(this.deps.watermarkMarginMs !== undefined ? { marginMs: this.deps.watermarkMarginMs } : {}),
      sequence,
    });
    const held = await directoryHoldings(this.deps.db, this.directoryId);
    const kinds = (["user", "group"] as const).filter(
      (kind) => (kind === "user" ? held.users : held.groups) > 0,
    );
    // Content synchronization: both answers are in before anything is written, so that one that
    // can't be used turns the run into a full one cleanly.
    let refreshed: Refreshed | null = null;
    if (plan.method === "incremental" && plan.via === "contentSync") {
      const cookies = plan.cookies;
      // A change log reaching back to the group cookie: changed groups' member changes are read there.
      const since = kinds.includes("group") ? cookieCsn(Buffer.from(cookies.group, "base64")) : null;
      const log = since === null ? null : await this.readingOn(() => findChangeLog(this.session, since));
      const answered = await this.readingOn(() =>
        refreshFromCookies(this.session, this.mapping, cookies, kinds, { membersFromLog: log !== null }),
      );
      if (answered.ok) {
        refreshed = answered.refreshed;
        this.changeLog = log;
        if (log) plan = { ...plan, why: `${plan.why} ${changeLogNote(log)}` };
      } else plan = { method: "full", why: answered.why };
    }
    await recordSyncPlan(this.deps.db, this.claim, plan);
    this.changedOnly = plan.method === "incremental";
    if (plan.method === "full" && this.claim.run.total === null) {
      await setTotal(this.deps.db, this.claim, held.users + held.groups);
      this.total = held.users + held.groups;
    }
    // Taken before a full run reads: what changes while it reads is told to the next run.
    const cookies =
      plan.method === "full"
        ? await this.readingOn(() => startingCookies(this.session, this.mapping))
        : (refreshed?.cookies ?? null);
    let presenceChecked = plan.method === "full";
    if (refreshed) {
      presenceChecked = await this.importRefreshed(refreshed, kinds);
    } else {
      const changed = changedSince(plan, changedAt);
      for (const kind of kinds) {
        const text = changed ?? "";
        const filter = importFilter(kind, text, this.mapping);
        if (!filter.ok) throw new Error(`The directory's ${kind} filter is not valid: ${filter.message}`);
        const attributes = [...placeOf(kind, this.session, this.mapping).attributes, changedAt];
        const pages = () =>
          searchEntries(this.session, this.mapping, kind, filter.filter, { signal: this.signal, attributes });
        if (kind === "user") await this.readingOn(() => this.importUsers(pages()));
        else await this.readingOn(() => this.importGroups(pages()));
      }
      await this.finishPendingGroups();
    }
    // Active Directory keeps deleted objects as tombstones: those deleted since are gone now.
    const deletedSince =
      plan.method === "incremental" && changedAt === "whenChanged" ? changedSince(plan, changedAt) : null;
    if (deletedSince !== null) await this.readingOn(() => this.readTombstones(deletedSince));
    if (plan.method === "incremental" && plan.presence && !presenceChecked && kinds.length > 0) {
      await this.readingOn(() => this.readPresence(held.users > 0, held.groups > 0));
      presenceChecked = true;
    }
    return this.settleRemovals(held.usersPresent, plan, presenceChecked, { cookies, sequence });
  }

  /**
   * What a content-synchronization refresh answered: the changed entries imported as a change-time
   * run reads them, the deleted ones taken away. Returns whether the answer covered every entry
   * (the present phase: what it neither listed as present nor changed is gone).
   */
  private async importRefreshed(
    refreshed: Refreshed,
    kinds: readonly ("user" | "group")[],
  ): Promise<boolean> {
    const answers = kinds.flatMap((kind) => refreshed[kind] ?? []);
    // The present phase: the answer lists every entry there is.
    const everyEntry = answers.every((answer) => !answer.refreshDeletes);
    // Each search tells what left it: an entry changed in the user search has left the group search.
    const received = new Set(
      answers.flatMap((answer) => answer.entries.map((e) => stableIdOf(e, this.mapping))),
    );
    const told = [...new Set(answers.flatMap((answer) => answer.deleted))].filter((id) => !received.has(id));
    for (const kind of kinds) {
      const answer = refreshed[kind];
      if (!answer) continue;
      const entries = answer.entries;
      const pages = async function* () {
        for (let at = 0; at < entries.length; at += REFRESH_PAGE) yield entries.slice(at, at + REFRESH_PAGE);
      };
      if (kind === "user") await this.readingOn(() => this.importUsers(pages()));
      else await this.readingOn(() => this.importGroups(pages()));
      if (everyEntry) {
        await recordPresent(this.deps.db, this.claim.run.id, kind, answer.present);
        if (kind === "user") this.usersRead += answer.present.length;
      }
      await this.readingOn(() => this.takeAwayTold(kind, told));
    }
    await this.finishPendingGroups();
    // One search answered with deletions, the other with what is present: that one's deletions are
    // found by a presence pass.
    if (!everyEntry && answers.some((answer) => !answer.refreshDeletes)) {
      await this.readingOn(() => this.readPresence(refreshed.user !== null, refreshed.group !== null));
      return true;
    }
    return everyEntry;
  }

  /**
   * Entries the directory told deleted, or gone out of the search: those Roster holds are looked up
   * by stable id first. OpenLDAP tells an entry moved to another branch as deleted and does not
   * send it again; one still there is read in full, the others are gone.
   */
  private async takeAwayTold(kind: "user" | "group", told: readonly string[]): Promise<void> {
    if (told.length === 0) return;
    const held = [...(await importedExternalIds(this.deps.db, kind, this.directoryId, told))];
    if (held.length === 0) return;
    const found = new Set<string>();
    const mapping = this.mapping;
    const lookups = entriesByStableId(this.session, mapping, kind, held, this.signal);
    const pages = async function* () {
      for await (const page of lookups) {
        for (const entry of page) {
          const id = stableIdOf(entry, mapping);
          if (id !== null) found.add(id);
        }
        yield page;
      }
    };
    if (kind === "user") await this.importUsers(pages());
    else await this.importGroups(pages());
    const gone = held.filter((id) => !found.has(id));
    if (kind === "user") await collectGoneUsers(this.deps.db, this.claim.run.id, this.directoryId, gone);
    else await collectGoneGroups(this.deps.db, this.claim.run.id, this.directoryId, gone);
  }

  /**
   * The presence pass of an incremental synchronization: every user and group entry's stable id,
   * nothing else, recorded as met; what Roster holds beyond that is gone from the directory.
   */
  private async readPresence(users: boolean, groups: boolean): Promise<void> {
    this.usersRead = 0;
    const kinds = [...(users ? (["user"] as const) : []), ...(groups ? (["group"] as const) : [])];
    for (const kind of kinds) {
      const filter = importFilter(kind, "", this.mapping);
      if (!filter.ok) throw new Error(`The directory's ${kind} filter is not valid: ${filter.message}`);
      for await (const page of searchEntries(this.session, this.mapping, kind, filter.filter, {
        signal: this.signal,
        attributes: [this.mapping.attrUniqueId],
      })) {
        const ids = page.flatMap((entry) => stableIdOf(entry, this.mapping) ?? []);
        if (kind === "user") this.usersRead += page.length;
        await recordPresent(this.deps.db, this.claim.run.id, kind, ids);
      }
    }
  }

  /**
   * Active Directory's tombstones of objects deleted since `since` (Show Deleted control): users
   * of this directory among them are disabled by this run, groups marked missing, without waiting
   * for the presence pass.
   */
  private async readTombstones(changed: string): Promise<void> {
    const filter = `(&(isDeleted=TRUE)${changed})`;
    const gone: string[] = [];
    try {
      await this.searchTombstones(filter, gone);
    } catch (err) {
      // Not allowed to list them (a plain service account on Active Directory): the daily presence
      // pass finds deletions instead. A directory that stopped answering is waited for as always.
      if (stoppedAnswering(err) || !(err instanceof DirectoryError)) throw err;
      this.deps.logger.info(
        { importRun: this.claim.run.id, reason: err.classified.kind },
        "deleted objects not readable: deletions wait for the presence pass",
      );
      return;
    }
    await collectGoneUsers(this.deps.db, this.claim.run.id, this.directoryId, gone);
    await collectGoneGroups(this.deps.db, this.claim.run.id, this.directoryId, gone);
  }

  private async searchTombstones(filter: string, gone: string[]): Promise<void> {
    for await (const page of this.session.searchPages(
      deletedObjectsOf(this.session.connection.baseDn),
      filter,
      "one",
      [this.mapping.attrUniqueId],
      {
        controls: [new Control(SHOW_DELETED_CONTROL, { critical: true })],
        bufferAttributes: bufferAttributes(this.mapping),
        signal: this.signal,
      },
    )) {
      for (const entry of page) {
        const id = stableIdOf(entry, this.mapping);
        if (id !== null) gone.push(id);
      }
    }
  }

  /** The guard decides: the removals the run collected are applied with its last batch, or held. */
  private async settleRemovals(
    usersHeld: number,
    plan: SyncPlan,
    presenceChecked: boolean,
    marks: { cookies: SyncCookies | null; sequence: UpdateSequence | null },
  ): Promise<Ending> {
    let ending: Ending = { status: "succeeded" };
    const runId = this.claim.run.id;
    await this.commit(
      async (tx) => {
        // Entries not met are gone only when every entry was looked for (a full run, a presence pass).
        if (presenceChecked) await collectMissing(tx, runId, this.directoryId);
        const removals = await countRemovals(tx, runId);
        const verdict = guardVerdict({
          removals,
          usersHeld,
          usersRead: presenceChecked ? this.usersRead : null,
          percent: this.directory.holdRemovalsPercent,
          minimum: this.directory.holdRemovalsMinimum,
        });
        const state = nextState(
          this.directory,
          plan.method === "full" ? null : readState(this.directory.syncState),
          {
            // Never past the run's start: an entry changed after the run had read it carries an older
            // time than entries changed later and read later (Roster's clock; the margin covers skew).
            highWater: this.highWater === null ? null : Math.min(this.highWater, this.syncStartedAt),
            presenceChecked,
            held: verdict !== null,
            ...marks,
          },
        );
        await saveSyncState(tx, this.directoryId, state);
        if (verdict !== null) {
          ending = { status: "held", reason: verdict, count: totalRemovals(removals) };
          return { processed: 0, counts: emptyCounts(), entries: [] };
        }
        const applied = await applyRemovals(tx, runId);
        return {
          processed: applied.updated,
          counts: addCounts(emptyCounts(), { updated: applied.updated }),
          entries: [],
        };
      },
      () => {},
    );
    return ending;
  }

  /** The newest change time a synchronization read (the next one reads from there). */
  private noteChange(entry: Entry): void {
    const at = changedAtOf(entry, this.mapping);
    if (at !== null && (this.highWater === null || at > this.highWater)) this.highWater = at;
  }

  /** Of a batch of users a synchronization read, the unreadable entries of users imported before. */
  private async onlyImportedInvalid<T extends { externalId: string }>(
    batch: MappedBatch<T>,
  ): Promise<MappedBatch<T>> {
    const ids = batch.invalid.flatMap((i) => (i.externalId === undefined ? [] : [i.externalId]));
    const known =
      ids.length > 0 ? await importedExternalIds(this.deps.db, "user", this.directoryId, ids) : new Set();
    const invalid = batch.invalid.filter((i) => i.externalId !== undefined && known.has(i.externalId));
    return { values: batch.values, invalid, size: batch.values.length + invalid.length };
  }

  /** Of a batch a synchronization read, the entries imported before (the others are not its business). */
  private async onlyImported<T extends { externalId: string }>(
    kind: "user" | "group",
    batch: MappedBatch<T>,
  ): Promise<MappedBatch<T>> {
    const known = await importedExternalIds(this.deps.db, kind, this.directoryId, stableIdsOf(batch));
    const values = batch.values.filter((v) => known.has(v.externalId));
    // An imported entry that can't be read any more is reported (and not taken for gone).
    const invalid = batch.invalid.filter((i) => i.externalId !== undefined && known.has(i.externalId));
    return { values, invalid, size: values.length + invalid.length };
  }

  /** Of a batch read again, the users no committed batch of this run has handled. */
  private async unhandledUsers<T extends { externalId: string }>(
    batch: MappedBatch<T>,
  ): Promise<MappedBatch<T>> {
    return unhandled(batch, await handledUsers(this.deps.db, this.claim.run.id, stableIdsOf(batch)));
  }

  /**
   * Taken over from a worker that stopped: what its committed batches handled is loaded from the
   * checkpoint, and every phase reads on as after a directory outage, skipping it.
   */
  private async resume(): Promise<void> {
    const checkpoint = await loadCheckpoint(this.deps.db, this.claim.run.id);
    for (const [externalId, { id, progress }] of checkpoint.groups) {
      this.importedGroups.set(externalId, id);
      if (progress === null) continue;
      const key = normalizeDn(progress.dn);
      this.groupIds.set(key, id);
      if (progress.corrected) this.countCorrected.add(key);
      if (id === null || progress.outcome === undefined) continue;
      if (progress.finished) this.finishedGroups.add(id);
      else {
        // Its members are read again from the first: those handled before are linked, not counted.
        this.pendingGroups.set(id, {
          id,
          externalId,
          name: progress.name,
          dn: progress.dn,
          outcome: progress.outcome,
          changes: progress.changes ?? [],
          members: new IdList(),
          children: new Set(),
          membersAdded: progress.membersAdded,
          subgroupsAdded: progress.subgroupsAdded,
          memberHash: null,
        });
      }
    }
    for (const key of checkpoint.unresolved) this.unresolvedReported.add(key);
    this.createdReported = checkpoint.createdListed;
    this.readAgain = true;
    this.deps.logger.info(
      { importRun: this.claim.run.id, processed: this.processed },
      "import taken over: reading on from its checkpoint",
    );
  }

  /**
   * Runs a reading phase again while the directory has stopped answering (paused, restarted, the
   * network down), waiting 1 s … 15 s between tries, for `directoryRetryMs` without progress. What
   * the phase committed is in this run's imported sets, so reading again skips it: the counters
   * stay exact. The session opens a new connection for each search after a broken one.
   */
  private async readingOn<T>(phase: () => Promise<T>): Promise<T> {
    const window = this.deps.directoryRetryMs ?? DIRECTORY_RETRY_MS;
    let since: number | null = null;
    let processedAtFailure = -1;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await phase();
      } catch (err) {
        if (this.signal.aborted || !stoppedAnswering(err)) throw err;
        if (this.processed !== processedAtFailure) since = null; // it got further: a new outage
        processedAtFailure = this.processed;
        since ??= Date.now();
        const waited = Date.now() - since;
        if (waited >= window) throw this.gaveUp(err, waited);
        this.deps.logger.warn(
          { importRun: this.claim.run.id, attempt, kind: err.classified.kind },
          "the directory stopped answering: reading on after a pause",
        );
        this.readAgain = true;
        await delay(Math.min(15_000, 1000 * 2 ** Math.min(attempt - 1, 4), window - waited), undefined, {
          signal: this.signal,
        });
      }
    }
  }

  private gaveUp(err: DirectoryError, waitedMs: number): DirectoryOutage {
    const total = this.total;
    const at = `${(this.processed + 1).toLocaleString("en")}${total ? ` of ${total.toLocaleString("en")}` : ""}`;
    return new DirectoryOutage(
      `The directory stopped answering for ${durationInWords(waitedMs)} at entry ${at}: ${err.classified.message} Roster kept trying to reconnect; check the directory server, then run the import again (what was imported is kept).`,
      err,
    );
  }

  /** A run created without a total (re-run, or started elsewhere) counts its matches alongside. */
  private async countInBackground(text: string, kinds: readonly ("user" | "group")[]): Promise<void> {
    try {
      let total = 0;
      for (const kind of kinds) {
        const filter = importFilter(kind, text, this.mapping);
        if (!filter.ok) return;
        for await (const page of searchEntries(this.session, this.mapping, kind, filter.filter, {
          signal: this.signal,
          attributes: ["1.1"],
        })) {
          total += page.length;
        }
      }
      await setTotal(this.deps.db, this.claim, total);
      this.total = total;
    } catch {
      // Only the progress bar's total is missing; the import itself reports its own failures.
    }
  }

  // ——— users ———

  /**
   * Up to `writers` batches are written at once (each its own transaction, so the database can use
   * more than one core) while the next page is read from the directory.
   */
  /** A directory's first import is nearly all new users: its first batches insert before any lookup. */
  private async insertFirstIfNew(): Promise<void> {
    if (!(await directoryHasUsers(this.deps.db, this.directoryId))) this.mostlyNew = true;
  }

  private async importUsers(pages: AsyncIterable<Entry[]>): Promise<void> {
    // The run's first reading of users meets each entry once: its batches need not ask which of
    // their entries the run handled (a phase read again, or a later one, does ask).
    const firstMeeting = this.usersPhases === 0 && !this.readAgain;
    this.usersPhases += 1;
    await this.insertFirstIfNew();
    const batches = readAhead(
      mapBatches(pages, this.batchSize, (e) => {
        if (this.syncing) this.noteChange(e);
        return mapUser(e, this.mapping);
      }),
      1,
    );
    await forEachConcurrently(batches, this.writers, async (read) => {
      if (this.syncing) this.usersRead += read.size;
      // Read again after the directory came back: what a committed batch wrote is not counted twice.
      const fresh = this.readAgain ? await this.unhandledUsers(read) : read;
      // A synchronization refreshes only users imported before: upsertUsers leaves out the others.
      const batch = this.syncing ? await this.onlyImportedInvalid(fresh) : fresh;
      if (batch.size === 0) return;
      const ids = batch.values.map((user) => user.externalId);
      for (const id of ids) this.usersInFlight.add(id);
      try {
        await this.commit(
          async (tx) => {
            const context = {
              ...this.context(tx),
              insertFirst: this.mostlyNew,
              existingOnly: this.syncing,
              firstMeeting,
            };
            const result = await upsertUsers(tx, context, batch.values);
            this.mostlyNew = result.counts.created * 2 > batch.values.length;
            await recordHandledUsers(tx, this.claim.run.id, [...result.ids, ...invalidIds(batch.invalid)]);
            return {
              processed: batch.size - result.leftOut,
              counts: addCounts(result.counts, { skipped: batch.invalid.length }),
              entries: [...batch.invalid.map((i) => invalidEntry("user", i)), ...result.entries],
              result,
            };
          },
          () => {},
        );
      } finally {
        for (const id of ids) this.usersInFlight.delete(id);
      }
    });
  }

  // ——— groups ———

  private async importGroups(pages: AsyncIterable<Entry[]>): Promise<void> {
    const roots: { id: number; dn: string }[] = [];
    const batches = readAhead(
      mapBatches(pages, this.batchSize, (e) => {
        if (this.syncing) {
          this.noteChange(e);
          // A refresh without member lists (their changes are in the change log) brings the CSN.
          const csn = this.changeLog ? firstText(e, "entryCSN") : null;
          if (csn !== null) this.groupCsns.set(e.dn, csn);
          else this.keepMemberValues(e);
        }
        return mapGroup(e, this.mapping);
      }),
      1,
    );
    for await (const read of batches) {
      // While groups a first reading wrote have members it had not all read, the groups it wrote
      // are walked again (a root may be finished while its nested groups are not): finished groups
      // are passed over, the others read on.
      if (this.readAgain && this.pendingGroups.size > 0) {
        for (const group of read.values) {
          const id = this.importedGroups.get(group.externalId);
          if (id !== undefined && id !== null) roots.push({ id, dn: group.dn });
        }
      }
      const fresh = this.readAgain ? unhandled(read, this.importedGroups) : read;
      const batch = this.syncing ? await this.onlyImported("group", fresh) : fresh;
      if (batch.size === 0) continue;
      await this.commit(
        async (tx) => {
          const result = await upsertGroups(tx, this.context(tx), batch.values);
          await this.recordGroups(tx, batch.values, result, batch.invalid);
          return {
            processed: batch.size,
            counts: addCounts(result.counts, { skipped: batch.invalid.length }),
            // An incremental synchronization reads only the members that changed: its total is unknown.
            totalGrowth: this.syncing ? 0 : this.newMemberCount(result, batch.values),
            entries: [...batch.invalid.map((i) => invalidEntry("group", i)), ...result.entries],
            result,
          };
        },
        ({ result }) => {
          for (const group of batch.values) {
            const id = this.rememberGroup(group, result);
            if (id !== null) roots.push({ id, dn: group.dn });
          }
          markHandled(this.importedGroups, batch.invalid);
        },
      );
    }
    for (const root of roots) {
      if (this.syncing && !this.readAgain) await this.expandChanged(root);
      else if (!this.finishedGroups.has(root.id) || this.pendingGroups.size > 0) await this.expand(root.dn);
    }
    this.memberValuesRead.clear();
    this.memberValuesHeld = 0;
  }

  /** A synchronization keeps the member lists its group entries brought, up to a bound, not to read them twice. */
  private keepMemberValues(entry: Entry): void {
    if (this.memberValuesHeld >= MEMBER_VALUES_KEPT) return;
    const values = completeMemberList(entry, this.mapping);
    if (values === null) return;
    this.memberValuesRead.set(entry.dn, values);
    this.memberValuesHeld += memberCount(values);
  }

  /**
   * A group a synchronization reads: its member list is compared with the members Roster has (by
   * DN, or username for memberUid groups), and only the new values are resolved and imported;
   * members no longer listed are collected for removal. A 100,000-member group with 250 new members
   * costs 250 lookups, not 100,000; an unchanged one, none. New subgroups are expanded whole.
   */
  private async expandChanged(root: { id: number; dn: string }): Promise<void> {
    const group = this.pendingGroups.get(root.id);
    if (!group || this.finishedGroups.has(root.id)) return;
    const latestCsn = this.groupCsns.get(root.dn);
    if (this.changeLog && latestCsn !== undefined && group.outcome !== "created") {
      const changes = await readMemberChanges(
        this.session,
        this.changeLog,
        { entryUuid: group.externalId, latestCsn },
        this.mapping,
      );
      if (changes.ok) return this.applyMemberChanges(group, changes);
      this.deps.logger.info(
        { runId: this.claim.run.id, group: root.dn, why: changes.why },
        "member list read in full: the change log does not cover it",
      );
    }
    const kept = this.memberValuesRead.get(root.dn);
    this.memberValuesRead.delete(root.dn);
    const values = await allMembers(this.session, root.dn, this.mapping, kept);
    const hash = memberListHash(values);
    if (hash === (await storedMemberListHash(this.deps.db, root.id))) {
      await this.keepMembers(group, values);
      return;
    }
    // Members listed by DN (member, uniqueMember) match a member's DN; by username (memberUid), its
    // username. The database answers which match as text; those that don't are compared parsed,
    // against the values no member matched (spacing, case of attribute names, escapes): a few.
    // A full run also asks which members it met: one its users phase did not is resolved again.
    const diff = await compareMemberList(
      this.deps.db,
      root.id,
      values,
      { dnKey: (value) => dnMemberKey(value), nameKey: memberNameKey },
      this.changedOnly ? null : this.claim.run.id,
    );
    const addedDns = new Set(diff.dns);
    const addedNames = new Set(diff.usernames);
    const left: string[] = [];
    const leaving: { users: number[]; groups: number[] } = { users: [], groups: [] };
    group.leaving = leaving;
    const parsed = new Map<string, number>();
    if (diff.users.length + diff.groups.length > 0) {
      for (const i of addedDns) {
        const value = values.dns[i] as string;
        parsed.set(tryNormalizeDn(stripOptionalUid(value)) ?? dnMemberKey(value), i);
      }
    }
    const names = new Map<string, number>();
    if (diff.users.length > 0)
      for (const i of addedNames) names.set(memberNameKey(values.usernames[i] as string), i);
    const parsedAt = (dn: string | null) =>
      dn ? parsed.get(tryNormalizeDn(dn) ?? dnMemberKey(dn)) : undefined;
    for (const user of diff.users) {
      const at = parsedAt(user.dn);
      const nameAt = names.get(memberNameKey(user.username));
      if (at === undefined && nameAt === undefined) {
        leaving.users.push(user.id);
        if (user.externalId !== null) left.push(user.externalId);
      } else if (!this.changedOnly && user.externalId !== null && !user.handled) {
        // Listed, but its entry not met by the users phase (deleted, its DN left in the group; or
        // outside the user search base): its value is resolved again; found, or it is gone.
        leaving.users.push(user.id);
      } else {
        if (at !== undefined) addedDns.delete(at);
        if (nameAt !== undefined) addedNames.delete(nameAt);
        group.members.add(user.id);
      }
    }
    for (const child of diff.groups) {
      const at = parsedAt(child.dn);
      if (at === undefined) leaving.groups.push(child.id);
      else {
        addedDns.delete(at);
        group.children.add(child.id);
      }
    }
    // A member who left may have left the directory too: those whose entries are gone are disabled
    // now, without waiting for the presence pass (a few lookups by stable id).
    await this.collectGoneMembers(left);
    group.memberHash = hash;
    await this.linkMemberValues(group, {
      dns: [...addedDns].sort((a, b) => a - b).map((i) => values.dns[i] as string),
      usernames: [...addedNames].sort((a, b) => a - b).map((i) => values.usernames[i] as string),
    });
  }

  /** Resolves and links a changed group's new member values, finishes it, then expands new subgroups. */
  private async linkMemberValues(group: GroupState, added: MemberList): Promise<void> {
    const subgroups: string[] = [];
    const batches = readAhead(
      coalesceMembers(resolveMemberValues(this.session, this.mapping, group.dn, added), this.batchSize),
      1,
    );
    // One group's batches are disjoint: they are written concurrently, as a users import's are.
    await forEachConcurrently(batches, this.writers, async (batch) => {
      await this.importMemberBatch(batch, group);
      for (const child of batch.groups) subgroups.push(child.dn);
    });
    await this.finishGroup(group);
    for (const dn of subgroups) {
      const id = this.groupIds.get(normalizeDn(dn));
      if (id !== undefined && id !== null && !this.finishedGroups.has(id)) await this.expand(dn);
    }
  }

  /**
   * A changed group's member changes, as the change log told them: the members whose values were
   * removed leave (collected for the guard), the values added are resolved and linked. The stored
   * fingerprint is dropped (the list was not read): the next full run compares the whole list.
   */
  private async applyMemberChanges(
    group: GroupState,
    changes: { added: MemberList; removed: MemberList },
  ): Promise<void> {
    const leaving: { users: number[]; groups: number[] } = { users: [], groups: [] };
    group.leaving = leaving;
    const named = await linkedMembersNamed(this.deps.db, group.id, {
      dnKeys: changes.removed.dns.flatMap((value) => {
        const bare = stripOptionalUid(value);
        return [dnMemberKey(value), tryNormalizeDn(bare) ?? bare.toLowerCase()];
      }),
      leafKeys: changes.removed.dns.flatMap((value) => {
        const leaf = leafValue(stripOptionalUid(value));
        return leaf === null ? [] : [nameKey(leaf.trim())];
      }),
      nameKeys: changes.removed.usernames.map(memberNameKey),
    });
    const left: string[] = [];
    for (const user of named.users) {
      leaving.users.push(user.id);
      if (user.externalId !== null) left.push(user.externalId);
    }
    for (const child of named.groups) leaving.groups.push(child.id);
    await this.collectGoneMembers(left);
    group.memberHash = null;
    group.forgetMemberList = true;
    await this.linkMemberValues(group, changes.added);
  }

  /**
   * A group whose member list is the one Roster stored: its members stay, without comparing them
   * one by one (a 1,000,000-member group costs one anti-join, not a million strings in memory). A
   * full run still resolves again the members its users phase did not meet: those found stay, the
   * others leave (their entries deleted, with their DNs left in the group).
   */
  private async keepMembers(group: GroupState, values: MemberList): Promise<void> {
    const leaving: { users: number[]; groups: number[] } = { users: [], groups: [] };
    group.leaving = leaving;
    if (!this.changedOnly) {
      const unmet = await membersNotHandled(this.deps.db, group.id, this.claim.run.id);
      for (const user of unmet) leaving.users.push(user.id);
      const again: MemberList = {
        dns: values.dns.length > 0 ? unmet.flatMap((user) => (user.dn ? [user.dn] : [])) : [],
        usernames: values.usernames.length > 0 ? unmet.map((user) => user.username) : [],
      };
      if (memberCount(again) > 0) {
        const batches = coalesceMembers(
          resolveMemberValues(this.session, this.mapping, group.dn, again),
          this.batchSize,
        );
        for await (const batch of batches) await this.importMemberBatch(batch, group);
      }
    }
    await this.finishGroup(group);
  }

  private async collectGoneMembers(externalIds: string[]): Promise<void> {
    const met = await handledUsers(this.deps.db, this.claim.run.id, externalIds);
    const unseen = externalIds.filter((id) => !met.has(id));
    if (unseen.length === 0) return;
    const present = await userIdsInDirectory(this.session, this.mapping, unseen, this.signal);
    const gone = unseen.filter((id) => !present.has(id));
    await collectGoneUsers(this.deps.db, this.claim.run.id, this.directoryId, gone);
  }

  /** Imports a group's members, its nested groups' members, and so on; cycles end (see expandGroup). */
  private async expand(rootDn: string): Promise<void> {
    let current: GroupState | null = null;
    let currentKey: string | null = null;
    let alreadyDone = false;
    const members = readAhead(
      coalesceMembers(expandGroup(this.session, rootDn, this.mapping), this.batchSize),
      1,
    );
    // Batches of one group are disjoint and written concurrently; a group is finished (and the
    // next begun) once all of its batches are in.
    const writes = new WorkPool(this.writers);
    // The run's first group, when no users phase came before it: its batches (disjoint) meet each
    // user once, and need not ask which the run handled (unless read again after an outage).
    let firstMeeting = false;
    if (this.usersPhases === 0 && this.groupsWalked === 0) await this.insertFirstIfNew();
    for await (const batch of members) {
      this.signal.throwIfAborted();
      const key = normalizeDn(batch.groupDn);
      if (key !== currentKey) {
        await writes.drain();
        if (current) await this.finishGroup(current);
        firstMeeting = this.usersPhases === 0 && this.groupsWalked === 0;
        this.groupsWalked += 1;
        currentKey = key;
        const id = this.groupIds.get(key) ?? null;
        // A group expanded earlier in this run (as another group's subgroup) is not imported twice.
        alreadyDone = id !== null && this.finishedGroups.has(id);
        current = id === null || alreadyDone ? null : (this.pendingGroups.get(id) ?? null);
      }
      if (current && batch.memberHash !== undefined) current.memberHash = batch.memberHash;
      const parent = current;
      const meeting = firstMeeting && !this.readAgain;
      if (!alreadyDone) await writes.add(() => this.importMemberBatch(batch, parent, meeting));
    }
    await writes.drain();
    if (current) await this.finishGroup(current);
  }

  private async importMemberBatch(
    batch: MemberBatch,
    parent: GroupState | null,
    firstMeeting = false,
  ): Promise<void> {
    const ids = batch.users.map((user) => user.externalId);
    for (const id of ids) this.usersInFlight.add(id);
    try {
      await this.writeMemberBatch(batch, parent, firstMeeting);
    } finally {
      for (const id of ids) this.usersInFlight.delete(id);
    }
  }

  private async writeMemberBatch(
    batch: MemberBatch,
    parent: GroupState | null,
    firstMeeting: boolean,
  ): Promise<void> {
    await this.commit(
      async (tx) => {
        const context = { ...this.context(tx), firstMeeting, insertFirst: this.mostlyNew };
        const users = await upsertUsers(tx, context, batch.users);
        if (batch.users.length > 0) this.mostlyNew = users.counts.created * 2 > batch.users.length;
        const groups = await upsertGroups(tx, context, batch.groups);
        const userIds = definedIds(batch.users.map((u) => users.ids.get(u.externalId)));
        const childIds = definedIds(batch.groups.map((g) => groups.ids.get(g.externalId)));
        const linked = parent ? await linkMembers(tx, parent.id, userIds, childIds) : null;
        const unresolvedOnce = batch.unresolved.filter(
          (member) => !this.unresolvedReported.has(`${batch.groupDn}\n${member.value}`),
        );
        await recordHandledUsers(tx, this.claim.run.id, users.ids);
        await this.recordGroups(tx, batch.groups, groups, []);
        await recordUnresolved(
          tx,
          this.claim.run.id,
          unresolvedOnce.map((member) => `${batch.groupDn}\n${member.value}`),
        );
        if (parent && linked) {
          await addGroupProgress(
            tx,
            this.claim.run.id,
            this.groupCheckpoint(parent, {
              membersAdded: linked.membersAdded,
              subgroupsAdded: linked.subgroupsAdded,
              corrected: batch.memberValues !== undefined || this.countCorrected.has(normalizeDn(parent.dn)),
              finished: false,
            }),
          );
        }
        const unresolved: ReportedEntry[] = unresolvedOnce.map((member) => ({
          outcome: "skipped",
          kind: member.kind,
          name: leafValue(member.value) ?? member.value,
          dn: member.value,
          reason: `Listed as a member of ${batch.groupDn}, but not imported: ${member.reason}`,
        }));
        // A member this run has already handled (chosen itself, or in another group) is linked, not
        // counted again: the run's entries are each directory entry once, as its outcomes are.
        const repeats = users.repeats + repeatedEntries(batch.groups, this.importedGroups);
        return {
          processed: batch.users.length + batch.groups.length + unresolvedOnce.length - repeats,
          counts: addCounts(addCounts(users.counts, groups.counts), { skipped: unresolved.length }),
          totalGrowth:
            this.newMemberCount(groups, batch.groups) - repeats + this.memberCountCorrection(batch),
          entries: [...users.entries, ...groups.entries, ...unresolved],
          users,
          groups,
          userIds,
          childIds,
          linked,
        };
      },
      ({ users, groups, userIds, childIds, linked }) => {
        for (const member of batch.unresolved)
          this.unresolvedReported.add(`${batch.groupDn}\n${member.value}`);
        for (const group of batch.groups) this.rememberGroup(group, groups);
        if (parent) {
          for (const id of userIds) parent.members.add(id);
          for (const id of childIds) if (id !== parent.id) parent.children.add(id);
          parent.membersAdded += linked?.membersAdded ?? 0;
          parent.subgroupsAdded += linked?.subgroupsAdded ?? 0;
        }
      },
    );
  }

  /** Members all read: drops the links the directory no longer has, and reports the group. */
  private async finishGroup(group: GroupState): Promise<void> {
    await this.commit(
      async (tx) => {
        // A synchronization collects what left, for the guard; an import removes it at once.
        const leaving = group.leaving;
        // A group this run created has only the links this run made: nothing to prune.
        const pruned = !this.syncing
          ? group.outcome === "created"
            ? { membersRemoved: 0, subgroupsRemoved: 0 }
            : await pruneMembers(tx, group.id, group.members, group.children)
          : await (leaving
              ? collectNamedRemovals(
                  tx,
                  this.claim.run.id,
                  group.id,
                  leaving.users.filter((id) => !group.members.has(id)),
                  leaving.groups.filter((id) => !group.children.has(id)),
                )
              : collectMembershipRemovals(tx, this.claim.run.id, group.id, group.members, group.children)
            ).then(() => ({ membersRemoved: 0, subgroupsRemoved: 0 }));
        if (group.memberHash !== null || group.forgetMemberList)
          await rememberMemberList(tx, group.id, group.memberHash, this.syncing ? this.claim.run.id : null);
        await recordHandledGroups(tx, this.claim.run.id, [
          this.groupCheckpoint(group, {
            membersAdded: group.membersAdded,
            subgroupsAdded: group.subgroupsAdded,
            corrected: true,
            finished: true,
          }),
        ]);
        const report = groupReport(group, pruned);
        return {
          processed: 0,
          counts: addCounts(emptyCounts(), { [report.outcome]: 1 }),
          entries: report.entry ? [report.entry] : [],
        };
      },
      () => {
        this.pendingGroups.delete(group.id);
        this.finishedGroups.add(group.id);
      },
    );
  }

  /** Nested groups the expansion never reached (already expanded elsewhere): reported as they are. */
  private async finishPendingGroups(): Promise<void> {
    const left = [...this.pendingGroups.values()];
    if (left.length === 0) return;
    await this.commit(
      async (tx) => {
        await recordHandledGroups(
          tx,
          this.claim.run.id,
          left.map((group) =>
            this.groupCheckpoint(group, {
              membersAdded: group.membersAdded,
              subgroupsAdded: group.subgroupsAdded,
              corrected: true,
              finished: true,
            }),
          ),
        );
        const counts = emptyCounts();
        const entries: ReportedEntry[] = [];
        for (const group of left) {
          const report = groupReport(group, { membersRemoved: 0, subgroupsRemoved: 0 });
          counts[report.outcome] += 1;
          if (report.entry) entries.push(report.entry);
        }
        return { processed: 0, counts, entries };
      },
      () => this.pendingGroups.clear(),
    );
  }

  /** Groups this batch handled for the first time go into the run's checkpoint. */
  private async recordGroups(
    tx: Db,
    groups: readonly LdapGroup[],
    result: GroupBatchResult,
    invalid: readonly { externalId?: string }[],
  ): Promise<void> {
    const fresh = new Map<string, { key: string; id: number | null; progress: GroupProgress | null }>();
    for (const group of groups) {
      if (this.importedGroups.has(group.externalId) || fresh.has(group.externalId)) continue;
      const decision = result.decisions.get(group.externalId);
      fresh.set(group.externalId, {
        key: group.externalId,
        id: result.ids.get(group.externalId) ?? null,
        progress: {
          dn: group.dn,
          name: group.name,
          ...(decision ? { outcome: decision.outcome, changes: decision.changes } : {}),
          membersAdded: 0,
          subgroupsAdded: 0,
          corrected: false,
          finished: false,
        },
      });
    }
    for (const { externalId } of invalid) {
      if (externalId !== undefined && !fresh.has(externalId))
        fresh.set(externalId, { key: externalId, id: null, progress: null });
    }
    await recordHandledGroups(tx, this.claim.run.id, [...fresh.values()]);
  }

  private groupCheckpoint(
    group: GroupState,
    progress: Pick<GroupProgress, "membersAdded" | "subgroupsAdded" | "corrected" | "finished">,
  ): { key: string; id: number; progress: GroupProgress } {
    return {
      key: group.externalId,
      id: group.id,
      progress: {
        dn: group.dn,
        name: group.name,
        outcome: group.outcome,
        changes: group.changes,
        ...progress,
      },
    };
  }

  private rememberGroup(group: LdapGroup, result: GroupBatchResult): number | null {
    const id = result.ids.get(group.externalId) ?? null;
    this.importedGroups.set(group.externalId, id);
    this.groupIds.set(normalizeDn(group.dn), id);
    const decision = result.decisions.get(group.externalId);
    if (id !== null && decision && !this.pendingGroups.has(id) && !this.finishedGroups.has(id)) {
      this.pendingGroups.set(id, {
        id,
        externalId: group.externalId,
        name: group.name,
        dn: group.dn,
        outcome: decision.outcome,
        changes: decision.changes,
        members: new IdList(),
        children: new Set(),
        membersAdded: 0,
        subgroupsAdded: 0,
        memberHash: null,
      });
    }
    return id;
  }

  /** Members of groups met for the first time: the progress bar's total grows by them. */
  private newMemberCount(result: GroupBatchResult, groups: readonly LdapGroup[]): number {
    let growth = 0;
    for (const group of groups) {
      if (!result.decisions.has(group.externalId)) continue;
      growth += group.memberCount;
      this.membersCounted.set(normalizeDn(group.dn), group.memberCount);
    }
    return growth;
  }

  /**
   * A group's first member batch knows how many members it really has: the total grows by those
   * it did not count yet (all past the first 1,500 of an Active Directory group; all of a group
   * skipped whose members are still imported).
   */
  private memberCountCorrection(batch: MemberBatch): number {
    if (batch.memberValues === undefined) return 0;
    const key = normalizeDn(batch.groupDn);
    // A group read again after the directory came back was corrected the first time.
    if (this.countCorrected.has(key)) return 0;
    this.countCorrected.add(key);
    return batch.memberValues - (this.membersCounted.get(key) ?? 0);
  }

  /** Entries chosen one by one that the directory no longer has. */
  private async reportMissing(selected: readonly SelectedEntry[]): Promise<void> {
    const users = selected.flatMap((entry) => (entry.kind === "user" ? [entry.externalId] : []));
    const met = await handledUsers(this.deps.db, this.claim.run.id, users);
    const missing = selected.filter((entry) =>
      entry.kind === "user" ? !met.has(entry.externalId) : !this.importedGroups.has(entry.externalId),
    );
    if (missing.length === 0) return;
    await this.commit(
      async () => ({
        processed: missing.length,
        counts: addCounts(emptyCounts(), { failed: missing.length }),
        entries: missing.map((entry) => ({
          outcome: "failed" as const,
          kind: entry.kind,
          name: entry.name,
          dn: entry.dn,
          reason: `The entry is no longer in the directory (or no longer matches the directory's ${entry.kind} filter).`,
        })),
      }),
      () => {},
    );
  }

  private limitCreated(entries: ReportedEntry[]): ReportedEntry[] {
    let room = CREATED_REPORT_LIMIT - this.createdReported;
    return entries.filter((entry) => entry.outcome !== "created" || room-- > 0);
  }

  /** What a batch's writes need of the run; `tx` is the batch's transaction. */
  private context(tx: Db): UpsertContext {
    return {
      directoryId: this.directoryId,
      handledUsers: (ids) => handledUsers(tx, this.claim.run.id, ids),
      importedGroups: this.importedGroups,
      usersInFlight: this.usersInFlight,
      copyRolesFrom: this.copyRolesFrom,
      findInDirectory: (ids) => userIdsInDirectory(this.session, this.mapping, ids, this.signal),
    };
  }

  /**
   * One batch, one transaction: the writes and the run's counters commit together, so a run stopped
   * at any point has written whole batches only. Transient conflicts with another run are retried.
   */
  private async commit<R extends Progress>(
    work: (tx: Db) => Promise<R>,
    committed: (result: R) => void,
  ): Promise<void> {
    this.signal.throwIfAborted();
    let result: R | undefined;
    let cancelRequested = false;
    let createdListed = 0;
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.deps.db.transaction(async (tx) => {
          const db = tx as unknown as Db;
          // A batch need not wait for its WAL to reach disk: a crash can lose the last batches'
          // commits (never half of one, never corrupt), and the re-claimed run writes them again.
          await db.execute(sql`set local synchronous_commit = off`);
          result = await work(db);
          const entries = this.limitCreated(result.entries);
          createdListed = entries.filter((e) => e.outcome === "created").length;
          ({ cancelRequested } = await recordProgress(db, this.claim, { ...result, entries }));
        });
        this.createdReported += createdListed;
        break;
      } catch (err) {
        if (isConnectionLost(err) && attempt < RECONNECT_ATTEMPTS) {
          // The transaction died with its connection, so nothing of the batch was written; the
          // pool opens a new connection for the next try once the server answers again.
          this.deps.logger.warn(
            { importRun: this.claim.run.id, attempt, code: (err as { code?: string }).code },
            "database connection lost: import batch retried",
          );
          await delay(reconnectDelayMs(attempt), undefined, { signal: this.signal });
          continue;
        }
        const code = sqlState(err);
        if (attempt >= BATCH_ATTEMPTS || code === undefined || !RETRYABLE.has(code)) throw err;
        this.deps.logger.debug({ importRun: this.claim.run.id, code, attempt }, "import batch retried");
      }
    }
    if (result) {
      this.processed += result.processed;
      committed(result);
    }
    await this.deps.hooks?.afterBatch?.(this.claim);
    if (cancelRequested) this.controller.abort(new RunStopped("cancel"));
    this.signal.throwIfAborted();
  }
}

/**
 * The directory layer resolves members a few hundred at a time; consecutive slices of the same
 * group are written together, so a 100,000-member group costs ~50 transactions, not 400.
 */
async function* coalesceMembers(
  batches: AsyncIterable<MemberBatch>,
  size: number,
): AsyncGenerator<MemberBatch> {
  const sizeOf = (b: MemberBatch) => b.users.length + b.groups.length + b.unresolved.length;
  let pending: MemberBatch | null = null;
  let pendingKey = "";
  for await (const batch of batches) {
    const key = normalizeDn(batch.groupDn);
    if (pending && key === pendingKey && sizeOf(pending) + sizeOf(batch) <= size) {
      pending.users.push(...batch.users);
      pending.groups.push(...batch.groups);
      pending.unresolved.push(...batch.unresolved);
      continue;
    }
    if (pending) yield pending;
    pending = {
      groupDn: batch.groupDn,
      users: [...batch.users],
      groups: [...batch.groups],
      unresolved: [...batch.unresolved],
      ...(batch.memberValues === undefined ? {} : { memberValues: batch.memberValues }),
      ...(batch.memberHash === undefined ? {} : { memberHash: batch.memberHash }),
    };
    pendingKey = key;
  }
  if (pending) yield pending;
}

/** The entries of a batch this run has not handled yet (all of them, unless it is read again). */
function unhandled<T extends { externalId: string }>(
  batch: MappedBatch<T>,
  handled: ReadonlyMap<string, number | null>,
): MappedBatch<T> {
  if (handled.size === 0) return batch;
  const values = batch.values.filter((v) => !handled.has(v.externalId));
  const invalid = batch.invalid.filter((i) => i.externalId === undefined || !handled.has(i.externalId));
  if (values.length === batch.values.length && invalid.length === batch.invalid.length) return batch;
  return { values, invalid, size: values.length + invalid.length };
}

/** The stable ids of a batch's entries, those that could not be imported included (when they have one). */
function stableIdsOf(batch: MappedBatch<{ externalId: string }>): string[] {
  return [
    ...batch.values.map((v) => v.externalId),
    ...batch.invalid.flatMap((i) => (i.externalId === undefined ? [] : [i.externalId])),
  ];
}

/** What the run's note says when member changes come from the change log. */
function changeLogNote(log: ChangeLog): string {
  return `Changed groups' member changes are read from the directory's change log (${log.base}), not their whole member lists.`;
}

/** How a memberUid value and a username are compared. */
function memberNameKey(value: string): string {
  return value.trim().toLowerCase();
}

/** The filter term an incremental run reads changed entries with (null: a full run reads all). */
function changedSince(plan: SyncPlan, changedAt: string): string | null {
  if (plan.method !== "incremental") return null;
  // uSNChanged is an integer attribute: >= is all LDAP offers, hence the one above.
  if (plan.via === "usn") return `(uSNChanged>=${BigInt(plan.above) + 1n})`;
  if (plan.via === "timestamp")
    return `(${changedAt}>=${generalizedTime(plan.since, changedAt === "whenChanged")})`;
  return null;
}

/**
 * Where Active Directory keeps the tombstones of a domain: CN=Deleted Objects under the domain's
 * root (the DC= part of the base DN), whatever OU the directory's base names.
 */
export function deletedObjectsOf(baseDn: string): string {
  const domain = /(?:^|,)\s*(DC=.*)$/i.exec(baseDn)?.[1] ?? baseDn;
  return `CN=Deleted Objects,${domain}`;
}

function durationInWords(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 90) return `${seconds} seconds`;
  const minutes = Math.round(seconds / 60);
  return `${minutes} minute${minutes === 1 ? "" : "s"}`;
}

function invalidEntry(kind: "user" | "group", invalid: { dn: string; reason: string }): ReportedEntry {
  return {
    outcome: "skipped",
    kind,
    name: invalid.dn,
    dn: invalid.dn,
    reason: `Can't be imported: ${invalid.reason}`,
  };
}

function groupReport(
  group: GroupState,
  pruned: { membersRemoved: number; subgroupsRemoved: number },
): { outcome: "created" | "updated" | "unchanged"; entry: ReportedEntry | null } {
  const membership = membershipWords(group, pruned);
  if (group.outcome === "created") {
    const reason = `With ${plural(group.members.size, "member")}${group.children.size > 0 ? ` and ${plural(group.children.size, "subgroup")}` : ""}.`;
    return {
      outcome: "created",
      entry: { outcome: "created", kind: "group", name: group.name, dn: group.dn, reason },
    };
  }
  const parts = [
    ...(group.changes.length > 0 ? [`Changed: ${listInWords(group.changes)}`] : []),
    ...membership,
  ];
  if (parts.length === 0) return { outcome: "unchanged", entry: null };
  return {
    outcome: "updated",
    entry: {
      outcome: "updated",
      kind: "group",
      name: group.name,
      dn: group.dn,
      reason: `${parts.join("; ")}.`,
    },
  };
}

function membershipWords(
  group: GroupState,
  pruned: { membersRemoved: number; subgroupsRemoved: number },
): string[] {
  const words: string[] = [];
  if (group.membersAdded > 0) words.push(`${plural(group.membersAdded, "member")} added`);
  if (pruned.membersRemoved > 0) words.push(`${plural(pruned.membersRemoved, "member")} removed`);
  if (group.subgroupsAdded > 0) words.push(`${plural(group.subgroupsAdded, "subgroup")} added`);
  if (pruned.subgroupsRemoved > 0) words.push(`${plural(pruned.subgroupsRemoved, "subgroup")} removed`);
  return words;
}

function plural(n: number, noun: string): string {
  return `${n.toLocaleString("en-US")} ${noun}${n === 1 ? "" : "s"}`;
}

function addCounts(a: OutcomeCounts, b: Partial<OutcomeCounts>): OutcomeCounts {
  return {
    created: a.created + (b.created ?? 0),
    updated: a.updated + (b.updated ?? 0),
    unchanged: a.unchanged + (b.unchanged ?? 0),
    skipped: a.skipped + (b.skipped ?? 0),
    failed: a.failed + (b.failed ?? 0),
  };
}

/** Entries of a batch this run has handled before, or that the batch lists twice. */
function repeatedEntries(
  entries: readonly { externalId: string }[],
  handled: ReadonlyMap<string, number | null>,
): number {
  const seen = new Set<string>();
  let repeats = 0;
  for (const { externalId } of entries) {
    if (handled.has(externalId) || seen.has(externalId)) repeats += 1;
    else seen.add(externalId);
  }
  return repeats;
}

/** Entries reported as not importable are handled too: not looked for again, not reported twice. */
function markHandled(handled: Map<string, number | null>, invalid: readonly { externalId?: string }[]): void {
  for (const { externalId } of invalid) if (externalId !== undefined) handled.set(externalId, null);
}

function invalidIds(invalid: readonly { externalId?: string }[]): [string, null][] {
  return invalid.flatMap(({ externalId }) =>
    externalId === undefined ? [] : [[externalId, null] as [string, null]],
  );
}

function definedIds(ids: (number | null | undefined)[]): number[] {
  return ids.filter((id): id is number => typeof id === "number");
}
