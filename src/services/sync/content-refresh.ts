/**
 * A synchronization through the directory's content synchronization (RFC 4533, OpenLDAP's
 * syncprov): a full run takes a cookie for the user and the group search before it reads; an
 * incremental one refreshes from them and gets only what changed — and what was deleted — since.
 * Any answer that can't be trusted makes the run a full one, saying why.
 */
import type { ContentSyncResult, DirectorySession } from "../../ldap/client.ts";
import { SYNC_REFRESH_REQUIRED } from "../../ldap/content-sync.ts";
import { DirectoryError, stoppedAnswering } from "../../ldap/errors.ts";
import { bufferAttributes, changedAtAttribute, memberAttributes } from "../../ldap/mapping.ts";
import type { DirectoryMapping } from "../../ldap/types.ts";
import { importFilter, placeOf } from "./directory-reads.ts";
import type { SyncCookies } from "./incremental.ts";

/** Matches no entry, through the entryUUID index: a refresh with it answers with the cookie alone. */
const NO_ENTRY = "(entryUUID=00000000-0000-0000-0000-000000000000)";

export interface Refreshed {
  /** What each refreshed search answered (null: that kind was not asked for). */
  user: ContentSyncResult | null;
  group: ContentSyncResult | null;
  /** The cookies to refresh from next time. */
  cookies: SyncCookies;
}

export type RefreshOutcome = { ok: true; refreshed: Refreshed } | { ok: false; why: string };

/** Content synchronization names entries by entryUUID: it serves only directories keyed by it. */
export function keyedByEntryUuid(mapping: DirectoryMapping): boolean {
  return mapping.attrUniqueId.toLowerCase() === "entryuuid";
}

/**
 * The directory's current cookies for the user and the group search, or null when it offers no
 * content synchronization (then incremental runs read by change time).
 */
export async function startingCookies(
  session: DirectorySession,
  mapping: DirectoryMapping,
): Promise<SyncCookies | null> {
  if (!keyedByEntryUuid(mapping)) return null;
  const cookies: Partial<SyncCookies> = {};
  for (const kind of ["user", "group"] as const) {
    const place = placeOf(kind, session, mapping);
    const filter = importFilter(kind, NO_ENTRY, mapping);
    if (!filter.ok) return null;
    try {
      const answer = await session.contentSync(place.base, filter.filter, place.scope, ["1.1"], {
        cookie: null,
      });
      if (!answer.done || !answer.cookie) return null;
      cookies[kind] = answer.cookie.toString("base64");
    } catch (err) {
      // Refused (no syncprov, not allowed): this directory is read by change time.
      if (stoppedAnswering(err) || !(err instanceof DirectoryError)) throw err;
      return null;
    }
  }
  return cookies as SyncCookies;
}

/** What changed since the cookies, for the kinds Roster holds entries of. */
export async function refreshFromCookies(
  session: DirectorySession,
  mapping: DirectoryMapping,
  cookies: SyncCookies,
  kinds: readonly ("user" | "group")[],
  options: { membersFromLog?: boolean } = {},
): Promise<RefreshOutcome> {
  const refreshed: Refreshed = { user: null, group: null, cookies: { ...cookies } };
  for (const kind of kinds) {
    const place = placeOf(kind, session, mapping);
    const filter = importFilter(kind, "", mapping);
    if (!filter.ok) throw new Error(`The directory's ${kind} filter is not valid: ${filter.message}`);
    let answer: ContentSyncResult;
    try {
      // The change time too: the state keeps the newest one read, whatever the method.
      let attributes = [...place.attributes, changedAtAttribute(mapping)];
      // Member changes come from the change log: a changed group's entry without its member list,
      // with the CSN of its latest change, which the log must hold.
      if (kind === "group" && options.membersFromLog) {
        const members = new Set(memberAttributes(mapping).map((a) => a.name.toLowerCase()));
        attributes = [...attributes.filter((name) => !members.has(name.toLowerCase())), "entryCSN"];
      }
      answer = await session.contentSync(place.base, filter.filter, place.scope, attributes, {
        cookie: Buffer.from(cookies[kind], "base64"),
        bufferAttributes: bufferAttributes(mapping),
      });
    } catch (err) {
      if (stoppedAnswering(err) || !(err instanceof DirectoryError)) throw err;
      return { ok: false, why: fallbackReason(err) };
    }
    if (!answer.done) {
      return {
        ok: false,
        why: "The directory's content-synchronization answer ended without saying what it covered: every entry is read again.",
      };
    }
    refreshed[kind] = answer;
    // No cookie: nothing changed since the last one, which stays good.
    if (answer.cookie) refreshed.cookies[kind] = answer.cookie.toString("base64");
  }
  return { ok: true, refreshed };
}

function fallbackReason(err: DirectoryError): string {
  if (err.classified.ldapCode === SYNC_REFRESH_REQUIRED) {
    return "The directory no longer knows what changed since the last synchronization (it asked for a full refresh): every entry is read again.";
  }
  if (err.classified.kind === "size_limit") {
    return "More entries changed since the last synchronization than the directory's size limit lets it send in one answer: every entry is read again, page by page.";
  }
  return `The directory refused its content synchronization (${err.classified.message}): every entry is read again.`;
}
