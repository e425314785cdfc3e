/**
 * OpenLDAP's change log: the accesslog overlay, as delta-syncrepl directories have it, logs each
 * write under its own suffix (`cn=accesslog`), with the entry's entryUUID (reqEntryUUID), the
 * change's CSN (entryCSN) and each modification (`reqMod: member:+ uid=…`). An incremental
 * synchronization reads a changed group's member changes there instead of its whole member list:
 * a 1,000,000-member group with 500 changes costs 500 values, not 1,000,000.
 *
 * Only what the log proves is used. The log must reach back to the synchronization's starting
 * point (an entry no newer than it), and the group's latest change (its entryCSN now) must be in
 * it; a group added, deleted or whose members were replaced wholesale is read in full.
 */
import type { Entry } from "ldapts";
import { AndFilter, EqualityFilter, GreaterThanEqualsFilter, LessThanEqualsFilter } from "ldapts";
import type { DirectorySession } from "./client.ts";
import { DirectoryError, stoppedAnswering } from "./errors.ts";
import { memberAttributes } from "./mapping.ts";
import { dnMemberKey, type MemberList, plainValues, textValues } from "./members.ts";
import type { DirectoryMapping } from "./types.ts";

export interface ChangeLog {
  /** The log's suffix. */
  base: string;
  /** The CSN the synchronization starts from: changes at or after it are read. */
  since: string;
}

/** What a group's logged writes since a CSN did to its member list. */
export type MemberChanges =
  | { ok: true; added: MemberList; removed: MemberList; writes: number }
  | { ok: false; why: string };

/**
 * The oldest CSN a content-synchronization cookie covers (`rid=000,csn=…;…`), or null when it
 * holds none: the changes the next refresh reports are newer.
 */
export function cookieCsn(cookie: string | Buffer): string | null {
  const text = Buffer.isBuffer(cookie) ? cookie.toString("utf8") : cookie;
  const match = /(?:^|,)csn=([^,]+)/.exec(text);
  if (!match?.[1]) return null;
  const csns = match[1].split(";").filter((csn) => CSN.test(csn));
  if (csns.length === 0) return null;
  return csns.sort()[0] ?? null;
}

/** A CSN: `YYYYmmddHHMMSS.ffffffZ#count#sid#mod`. Ordered as text. */
const CSN = /^\d{14}\.\d{6}Z#[0-9a-f]{6}#[0-9a-f]{3}#[0-9a-f]{6}$/i;

/**
 * The directory's change log when it can say what changed since `since`: a naming context whose
 * entry is an auditContainer, readable by Roster's account, holding a write no newer than `since`
 * (so no write after it was purged). Null otherwise, or when anything about it is refused.
 */
export async function findChangeLog(session: DirectorySession, since: string): Promise<ChangeLog | null> {
  if (!CSN.test(since)) return null;
  try {
    const root = await session.readEntry("", ["namingContexts"]);
    const contexts = root ? textValues(plainValues(root, "namingContexts")) : [];
    for (const base of contexts) {
      const suffix = await session.readEntry(base, ["objectClass"]);
      const classes = suffix ? textValues(plainValues(suffix, "objectClass")) : [];
      if (!classes.some((name) => name.toLowerCase() === "auditcontainer")) continue;
      const older = new AndFilter({
        filters: [
          new EqualityFilter({ attribute: "objectClass", value: "auditWriteObject" }),
          new LessThanEqualsFilter({ attribute: "entryCSN", value: since }),
        ],
      });
      for await (const page of session.searchPages(base, older, "one", ["1.1"], { pageSize: 1 })) {
        if (page.length > 0) return { base, since };
      }
      return null;
    }
    return null;
  } catch (err) {
    // Refused or not there: the member lists are read in full. A directory gone quiet is not that.
    if (stoppedAnswering(err) || !(err instanceof DirectoryError)) throw err;
    return null;
  }
}

/**
 * A group's member changes since the log's starting point: its logged writes in CSN order, each
 * value's last operation kept (added, then removed: removed). `latestCsn`, the group's entryCSN
 * now, must be among them, or the log missed a write and the list is read in full.
 */
export async function readMemberChanges(
  session: DirectorySession,
  log: ChangeLog,
  group: { entryUuid: string; latestCsn: string | null },
  mapping: DirectoryMapping,
): Promise<MemberChanges> {
  if (group.latestCsn === null) return { ok: false, why: "the group entry has no entryCSN" };
  const filter = new AndFilter({
    filters: [
      new EqualityFilter({ attribute: "objectClass", value: "auditWriteObject" }),
      new EqualityFilter({ attribute: "reqEntryUUID", value: group.entryUuid }),
      new GreaterThanEqualsFilter({ attribute: "entryCSN", value: log.since }),
      new EqualityFilter({ attribute: "reqResult", value: "0" }),
    ],
  });
  const writes: { csn: string; type: string; mods: string[] }[] = [];
  for await (const page of session.searchPages(log.base, filter, "one", ["reqType", "reqMod", "entryCSN"])) {
    for (const entry of page) writes.push(logWrite(entry));
  }
  writes.sort((a, b) => (a.csn < b.csn ? -1 : a.csn > b.csn ? 1 : 0));
  if (!writes.some((write) => write.csn === group.latestCsn))
    return { ok: false, why: "the group's latest change is not in the change log" };
  const kinds = new Map(memberAttributes(mapping).map((a) => [a.name.toLowerCase(), a.kind]));
  // Each value's last operation, by its key (DNs compared as member lists compare them).
  const last = new Map<string, { kind: "dn" | "username"; value: string; present: boolean }>();
  for (const write of writes) {
    if (write.type === "add" || write.type === "delete")
      return { ok: false, why: `the group was ${write.type === "add" ? "added" : "deleted"} since` };
    if (write.type !== "modify") continue;
    for (const mod of write.mods) {
      const parsed = /^([^:;]+)(?:;[^:]*)?:([+\-=#])(?: (.*))?$/s.exec(mod);
      if (!parsed) return { ok: false, why: "a logged modification could not be read" };
      const [, name = "", op, value] = parsed;
      const kind = kinds.get(name.toLowerCase());
      if (kind === undefined) continue;
      if (op === "#") continue;
      if (op === "=" || !value)
        return { ok: false, why: "the group's members were replaced or cleared at once" };
      const key = kind === "dn" ? `d${dnMemberKey(value)}` : `u${value.trim().toLowerCase()}`;
      last.set(key, { kind, value, present: op === "+" });
    }
  }
  const added: MemberList = { dns: [], usernames: [] };
  const removed: MemberList = { dns: [], usernames: [] };
  for (const { kind, value, present } of last.values()) {
    const list = present ? added : removed;
    (kind === "dn" ? list.dns : list.usernames).push(value);
  }
  return { ok: true, added, removed, writes: writes.length };
}

function logWrite(entry: Entry): { csn: string; type: string; mods: string[] } {
  return {
    csn: textValues(plainValues(entry, "entryCSN"))[0] ?? "",
    type: (textValues(plainValues(entry, "reqType"))[0] ?? "").toLowerCase(),
    mods: textValues(plainValues(entry, "reqMod")),
  };
}
