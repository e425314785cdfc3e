/**
 * Incremental synchronization: after a full synchronization, a run reads only what changed since.
 *
 * - A directory offering content synchronization (RFC 4533: OpenLDAP's syncprov overlay) tells it
 *   itself: each refresh with the cookie the last one left answers with the entries added or
 *   changed since, the entryUUIDs of those deleted or moved out of the search, and a new cookie.
 *   A full run takes the cookies before it reads.
 * - Active Directory numbers its writes: a run reads the entries whose uSNChanged is above the
 *   highest committed update sequence number the domain controller had when the last run began,
 *   and the tombstones of objects deleted since. The numbers are that controller's own: another
 *   one answering (or the same one restored from a backup, with a new invocationId) means a full run.
 * - Elsewhere, by change time: the entries whose modifyTimestamp (the directory's own clock) is at
 *   or after the newest change the last run read, less a margin for changes replicated late. A
 *   rename, a move within the base, a changed member list all update it. What it cannot see — an
 *   entry deleted, or moved out of the base — a presence pass finds: every so often the run also
 *   reads every entry's stable id alone (a few bytes each) and takes what is missing from that.
 *
 * A watermark is trusted only with the settings it was read with: another server, base, filter or
 * stable-id attribute makes the next run a full one, and the run says why.
 */
import { createHash } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Db } from "../../db/client.ts";
import { directories } from "../../db/schema.ts";
import type { DirectorySession } from "../../ldap/client.ts";
import { DirectoryError, stoppedAnswering } from "../../ldap/errors.ts";
import { firstText, guidOf } from "../../ldap/mapping.ts";
import type { Directory } from "../directories.ts";

/** Changes replicated to this server late may carry an older time: read this far back. */
export const WATERMARK_MARGIN_MS = 5 * 60_000;
/** How often an incremental run also looks for deleted entries (a presence pass). */
export const PRESENCE_EVERY_MS = 24 * 60 * 60_000;

export interface SyncCookies {
  /** The content-synchronization cookie of the user and the group search (base64). */
  user: string;
  group: string;
}

/** An Active Directory domain controller's write counter, from its root DSE. */
export interface UpdateSequence {
  /** Which controller: its dsServiceName, and its invocationId when readable. */
  server: string;
  /** Its highestCommittedUSN (decimal: 64 bits). */
  usn: string;
}

export interface SyncState {
  /** How incremental runs learn what changed: the directory's cookies, update numbers, or change times. */
  method: "timestamp" | "contentSync" | "usn";
  /** The newest modifyTimestamp read so far, ms since the epoch (null: no entry carried one). */
  highWater: number | null;
  /** What the watermark was read with (settingsKey). */
  settings: string;
  /** When every entry's presence was last checked (a full run, or a presence pass), ISO time. */
  presenceAt: string | null;
  /** With method "contentSync". */
  cookies?: SyncCookies;
  /** With method "usn": the controller's counter when the last run began. */
  sequence?: UpdateSequence;
}

export type SyncPlan =
  | { method: "full"; why: string }
  | { method: "incremental"; via: "timestamp"; since: number; presence: boolean; why: string }
  | { method: "incremental"; via: "contentSync"; cookies: SyncCookies; presence: boolean; why: string }
  | { method: "incremental"; via: "usn"; above: string; presence: boolean; why: string };

/** Everything that decides which entries a synchronization reads and how it knows them. */
export function settingsKey(directory: Directory): string {
  const parts = [
    directory.urls.join(" "),
    directory.baseDn,
    directory.userBase ?? "",
    directory.userFilter,
    directory.userScope,
    directory.groupBase ?? "",
    directory.groupFilter,
    directory.groupScope,
    directory.attrUniqueId,
    directory.attrMember,
    directory.memberValues,
  ];
  return createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 32);
}

export function readState(value: unknown): SyncState | null {
  if (typeof value !== "object" || value === null) return null;
  const state = value as Partial<SyncState>;
  if (typeof state.settings !== "string") return null;
  const common = {
    highWater: typeof state.highWater === "number" ? state.highWater : null,
    settings: state.settings,
    presenceAt: typeof state.presenceAt === "string" ? state.presenceAt : null,
  };
  if (state.method === "timestamp") return { method: "timestamp", ...common };
  if (state.method === "usn") {
    const sequence = state.sequence;
    if (
      typeof sequence?.server !== "string" ||
      typeof sequence.usn !== "string" ||
      !/^\d+$/.test(sequence.usn)
    )
      return null;
    return { method: "usn", ...common, sequence: { server: sequence.server, usn: sequence.usn } };
  }
  const cookies = state.cookies;
  if (
    state.method !== "contentSync" ||
    typeof cookies?.user !== "string" ||
    typeof cookies.group !== "string"
  )
    return null;
  return { method: "contentSync", ...common, cookies: { user: cookies.user, group: cookies.group } };
}

/** Full or incremental, and why — in words the run page shows. */
export function planSynchronization(
  directory: Directory,
  asked: "full" | "auto",
  options: { now?: number; marginMs?: number; sequence?: UpdateSequence | null } = {},
): SyncPlan {
  const now = options.now ?? Date.now();
  if (asked === "full") return { method: "full", why: "A full synchronization was asked for." };
  const state = readState(directory.syncState);
  if (!state)
    return { method: "full", why: "The first synchronization of this directory reads every entry." };
  if (state.settings !== settingsKey(directory)) {
    return {
      method: "full",
      why: "The directory's server, base, filters or stable-id attribute changed since the last synchronization: every entry is read again.",
    };
  }
  if (state.method === "contentSync" && state.cookies) {
    // The directory tells deletions itself; presence is checked again only after held removals.
    const presence = state.presenceAt === null;
    return {
      method: "incremental",
      via: "contentSync",
      cookies: state.cookies,
      presence,
      why: `What changed since the last synchronization, deletions included, as the directory's content synchronization (RFC 4533) tells it${presence ? ", and every entry's presence, to find deleted ones" : ""}.`,
    };
  }
  if (state.method === "usn" && state.sequence) {
    if (options.sequence?.server !== state.sequence.server) {
      return {
        method: "full",
        why: "Another domain controller answered than at the last synchronization (or it was restored): its update numbers are its own, so every entry is read again.",
      };
    }
    const presence = presenceDue(state.presenceAt, now);
    return {
      method: "incremental",
      via: "usn",
      above: state.sequence.usn,
      presence,
      why: `Entries the domain controller changed since its update ${state.sequence.usn}, and the objects deleted since${presence ? ", and every entry's presence, to find deleted ones" : ""}.`,
    };
  }
  if (state.highWater === null) {
    return { method: "full", why: "The directory's entries carry no modifyTimestamp: every entry is read." };
  }
  const presence = presenceDue(state.presenceAt, now);
  const since = state.highWater - (options.marginMs ?? WATERMARK_MARGIN_MS);
  return {
    method: "incremental",
    via: "timestamp",
    since,
    presence,
    why: `Entries changed since ${new Date(since).toISOString().replace("T", " ").slice(0, 19)} UTC (the directory's clock)${presence ? ", and every entry's presence, to find deleted ones" : ""}.`,
  };
}

function presenceDue(presenceAt: string | null, now: number): boolean {
  const at = presenceAt ? Date.parse(presenceAt) : Number.NaN;
  return !(at > now - PRESENCE_EVERY_MS);
}

export function nextState(
  directory: Directory,
  previous: SyncState | null,
  run: {
    highWater: number | null;
    presenceChecked: boolean;
    held: boolean;
    cookies: SyncCookies | null;
    sequence?: UpdateSequence | null;
  },
  now = new Date(),
): SyncState {
  const highWater =
    previous?.highWater !== undefined && previous.highWater !== null && run.highWater !== null
      ? Math.max(previous.highWater, run.highWater)
      : (run.highWater ?? previous?.highWater ?? null);
  const common = {
    highWater,
    settings: settingsKey(directory),
    // Held removals are recomputed by the next run: it looks for deleted entries again.
    presenceAt: run.held ? null : run.presenceChecked ? now.toISOString() : (previous?.presenceAt ?? null),
  };
  if (run.cookies) return { method: "contentSync", ...common, cookies: run.cookies };
  if (run.sequence) return { method: "usn", ...common, sequence: run.sequence };
  return { method: "timestamp", ...common };
}

/** Where a synchronization leaves off, saved with its last batch. */
export async function saveSyncState(tx: Db, directoryId: number, state: SyncState): Promise<void> {
  await tx.update(directories).set({ syncState: state }).where(eq(directories.id, directoryId));
}

/**
 * The answering domain controller's identity and highest committed update sequence number, or
 * null for a directory that has none (not Active Directory).
 */
export async function readUpdateSequence(session: DirectorySession): Promise<UpdateSequence | null> {
  try {
    const root = await session.readEntry("", ["highestCommittedUSN", "dsServiceName"]);
    const usn = root ? firstText(root, "highestCommittedUSN") : null;
    const service = root ? firstText(root, "dsServiceName") : null;
    if (!usn || !/^\d+$/.test(usn) || !service) return null;
    return { server: await controllerIdentity(session, service), usn };
  } catch (err) {
    if (stoppedAnswering(err) || !(err instanceof DirectoryError)) throw err;
    return null;
  }
}

/** A controller restored from a backup keeps its name but counts anew under a new invocationId. */
async function controllerIdentity(session: DirectorySession, service: string): Promise<string> {
  try {
    const settings = await session.readEntry(service, ["invocationId"], {
      bufferAttributes: ["invocationId"],
    });
    const invocation = settings ? guidOf(settings, "invocationId") : null;
    return invocation ? `${service} ${invocation}` : service;
  } catch (err) {
    if (stoppedAnswering(err) || !(err instanceof DirectoryError)) throw err;
    return service; // not readable by this account: the name alone
  }
}
