/**
 * Group membership: every direct member of a group however large (Active Directory hands out
 * `member` 1500 values at a time), and the full tree of nested groups, cycles included.
 */
import { createHash } from "node:crypto";
import type { Entry } from "ldapts";
import { AndFilter, EqualityFilter, ExtensibleFilter, OrFilter } from "ldapts";
import type { DirectorySession } from "./client.ts";
import { childrenWithinSearch, DnCache, parentDn, resolveBase, tryNormalizeDn } from "./dn.ts";
import { DirectoryError } from "./errors.ts";
import { compileDirectoryFilter, type Filter } from "./filter.ts";
import {
  bufferAttributes,
  groupAttributes,
  isActiveDirectory,
  type MapResult,
  mapGroup,
  mapUser,
  memberAttributes,
  userAttributes,
} from "./mapping.ts";
import type { DirectoryMapping, LdapGroup, LdapUser } from "./types.ts";

/** Active Directory's default MaxValRange; the server may use a smaller window, which is followed too. */
export const RANGE_WINDOW = 1500;
/** Members resolved per search: `(|(uid=a)(uid=b)…)` with this many terms, never an unbounded filter. */
export const RESOLVE_BATCH = 250;
/** Lookups in flight at once on the session's connection (the server answers them in parallel). */
const CONCURRENT_LOOKUPS = 4;
/**
 * A group listing at least this many members, and at least a quarter of the directory's users, is
 * resolved by reading the user search once (as a users import does) and keeping its members: far
 * less work for the server than looking 100,000 members up 250 at a time.
 */
const SCAN_MIN_MEMBERS = 2000;
const SCAN_SHARE = 4;

/** What a member that is not imported turned out to be, so the report can say so. */
export type MemberKind = "user" | "group" | "computer" | "contact" | "member";

export interface UnresolvedMember {
  /** The member value as the group holds it (a DN or a username). */
  value: string;
  reason: string;
  /** "member" when the directory has no entry for it, or nothing says what it is. */
  kind: MemberKind;
}

/**
 * The direct members of one group, in slices of at most RESOLVE_BATCH. A user who belongs to
 * several of the nested groups appears once for each of them.
 */
export interface MemberBatch {
  /** The group these are direct members of. */
  groupDn: string;
  users: LdapUser[];
  /** Direct member groups; each is expanded once, in later batches. */
  groups: LdapGroup[];
  /** Values that are neither a user nor a group under the mapping's filters (or could not be mapped). */
  unresolved: UnresolvedMember[];
  /**
   * On a group's first batch: how many member values it has, every range read (a search result
   * of Active Directory holds only the first 1,500).
   */
  memberValues?: number;
  /** On a group's first batch: the fingerprint of its member list (memberListHash). */
  memberHash?: string;
}

/** The group at `dn`, or null when there is no such entry or it does not match the group filter. */
export async function readGroup(
  session: DirectorySession,
  dn: string,
  mapping: DirectoryMapping,
): Promise<MapResult<LdapGroup> | null> {
  const entry = await firstEntry(
    session,
    dn,
    compileDirectoryFilter(mapping.groupFilter),
    groupAttributes(mapping),
    mapping,
  );
  return entry === null ? null : mapGroup(entry, mapping);
}

/**
 * Every value of a group's member attribute. Active Directory returns big attributes in windows
 * (`member;range=0-1499`, then `member;range=1500-2999`, …, the last ending in `-*`), so the
 * windows are requested explicitly until the last one; other servers return all values at once
 * under the plain name and ignore the ranged request.
 */
export async function readMemberValues(
  session: DirectorySession,
  groupDn: string,
  attribute: string,
): Promise<string[]> {
  const values: string[] = [];
  let start = 0;
  let requested = [attribute, rangedName(attribute, start)];
  for (;;) {
    // A one-entry paged search: the session decodes its entries itself, several times faster than
    // ldapts does a 100,000-value attribute.
    const entry = await firstEntry(session, groupDn, "(objectClass=*)", requested);
    if (entry === null) throw groupMissing(groupDn);
    const window = rangedWindow(entry, attribute);
    if (window === null) {
      // All at once (not Active Directory): the entry's own array, not a copy of 1,000,000 values.
      return start === 0 ? textValues(plainValues(entry, attribute)) : values;
    }
    append(values, window.values);
    if (window.high === null || window.high < start) return values;
    start = window.high + 1;
    requested = [rangedName(attribute, start)];
  }
}

/** An attribute's values into the list: taken as they are when it has none of that kind yet (no copy of 1,000,000). */
function addValues(list: MemberList, kind: "dn" | "username", values: string[]): void {
  const key = kind === "dn" ? "dns" : "usernames";
  if (list[key].length === 0) list[key] = values;
  else append(list[key], values);
}

/** Adds the values one by one: `push(...values)` passes them as arguments, past the stack at ~120,000. */
function append<T>(target: T[], values: readonly T[]): void {
  for (const value of values) target.push(value);
}

/**
 * A group's member values, by how they name a member: DNs (member, uniqueMember) or usernames
 * (memberUid). One group may list members both ways.
 */
export interface MemberList {
  dns: string[];
  usernames: string[];
}

export function memberCount(list: MemberList): number {
  return list.dns.length + list.usernames.length;
}

/** Every member value of a group, from each of the directory's membership attributes. */
export async function readMemberList(
  session: DirectorySession,
  groupDn: string,
  mapping: DirectoryMapping,
): Promise<MemberList> {
  const list: MemberList = { dns: [], usernames: [] };
  for (const { name, kind } of memberAttributes(mapping)) {
    const values = await readMemberValues(session, groupDn, name);
    addValues(list, kind, values);
  }
  return list;
}

/**
 * The member values a group entry already holds, when it holds them all (no range window, as
 * Active Directory sends for large groups); null otherwise: read them with readMemberList.
 */
export function completeMemberList(entry: Entry, mapping: DirectoryMapping): MemberList | null {
  const list: MemberList = { dns: [], usernames: [] };
  for (const { name, kind } of memberAttributes(mapping)) {
    const ranged = `${name.toLowerCase()};range=`;
    for (const key of Object.keys(entry)) if (key.toLowerCase().startsWith(ranged)) return null;
    addValues(list, kind, textValues(plainValues(entry, name)));
  }
  return list;
}

/**
 * Active Directory does not list a user in the `member` attribute of the user's primary group
 * (Domain Users, for nearly everyone): the user's `primaryGroupID` holds the group's RID, the last
 * part of its objectSid. These are the DNs of such users within the user search; none elsewhere.
 */
export async function primaryGroupMembers(
  session: DirectorySession,
  groupDn: string,
  mapping: DirectoryMapping,
): Promise<string[]> {
  if (!isActiveDirectory(mapping)) return [];
  const group = await session.readEntry(groupDn, ["objectSid"], {
    bufferAttributes: ["objectSid", "objectsid"],
  });
  const raw = group ? plainValues(group, "objectSid") : [];
  const sid = Array.isArray(raw) ? raw[0] : raw;
  // A SID ends with its 32-bit RID, little-endian; a group's is at least 12 bytes.
  if (!Buffer.isBuffer(sid) || sid.length < 12) return [];
  const rid = sid.readUInt32LE(sid.length - 4);
  const filter = and(
    compileDirectoryFilter(mapping.userFilter),
    new EqualityFilter({ attribute: "primaryGroupID", value: String(rid) }),
  );
  const base = resolveBase(mapping.userBase, session.connection.baseDn);
  const dns: string[] = [];
  for await (const page of session.searchPages(base, filter, mapping.userScope, ["1.1"], {
    pageSize: mapping.pageSize,
  })) {
    for (const entry of page) dns.push(entry.dn);
  }
  return dns;
}

/** Every member value of a group: its membership attributes, and on Active Directory its primary-group members. */
export async function allMembers(
  session: DirectorySession,
  groupDn: string,
  mapping: DirectoryMapping,
  listed?: MemberList,
): Promise<MemberList> {
  const list = listed ?? (await readMemberList(session, groupDn, mapping));
  const primary = await primaryGroupMembers(session, groupDn, mapping);
  return primary.length === 0 ? list : { dns: [...list.dns, ...primary], usernames: list.usernames };
}

export async function countMembers(
  session: DirectorySession,
  groupDn: string,
  mapping: DirectoryMapping,
): Promise<number> {
  return memberCount(await allMembers(session, groupDn, mapping));
}

/** How many members a group lists, and the fingerprint of the list (memberListHash). */
export async function memberSummary(
  session: DirectorySession,
  groupDn: string,
  mapping: DirectoryMapping,
): Promise<{ count: number; hash: string }> {
  const list = await allMembers(session, groupDn, mapping);
  return { count: memberCount(list), hash: memberListHash(list) };
}

/**
 * A fingerprint of a member list that ignores order and case: DNs compared case-insensitively (and
 * parsed when escaped: `\2C` or `\,`), usernames NFC and case-insensitively. Equal lists, equal
 * fingerprints.
 */
export function memberListHash(list: MemberList, lowerCasedDns?: readonly string[]): string {
  // A DN without escapes is compared in lower case (parsing 100,000 of them took 0.4 s); one with
  // escapes (`\2C` or `\,`) parsed. `lowerCasedDns`: the DNs in lower case, when the caller has them.
  const keys = list.dns.map((value, i) => dnMemberKey(value, lowerCasedDns?.[i]));
  // Usernames are marked only beside DNs: a list of one kind hashes as it always did.
  const mark = keys.length > 0 ? "\u0001" : "";
  for (const value of list.usernames) keys.push(`${mark}${usernameKey(value.trim())}`);
  // The distinct keys, sorted, joined by newlines: sorted in place and hashed a slice at a time, so
  // a 1,000,000-member list costs no set, no copy and no joined string of its own.
  keys.sort();
  const hash = createHash("sha256");
  let slice: string[] = [];
  let previous: string | undefined;
  let separator = "";
  for (const key of keys) {
    if (key === previous) continue;
    previous = key;
    slice.push(key);
    if (slice.length === 10_000) {
      hash.update(separator + slice.join("\n"));
      separator = "\n";
      slice = [];
    }
  }
  if (slice.length > 0) hash.update(separator + slice.join("\n"));
  return hash.digest("base64url");
}

/**
 * How a DN member value is compared: lower case, its optional uniqueMember UID (`#'0101'B`)
 * dropped, parsed when escaped. `lowerCased`: the value in lower case, when the caller has it.
 */
export function dnMemberKey(value: string, lowerCased?: string): string {
  const bare = value.endsWith("'B") ? stripOptionalUid(value) : value;
  if (bare.includes("\\")) return tryNormalizeDn(bare) ?? bare.toLowerCase();
  return bare === value ? (lowerCased ?? value.toLowerCase()) : bare.toLowerCase();
}

/** Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: matches through nested groups, server-side. */
export const MATCHING_RULE_IN_CHAIN = "1.2.840.113556.1.4.1941";

/**
 * Every user in a group, directly or through nested groups (cycles included), in one paged search
 * that the server evaluates: `(memberOf:1.2.840.113556.1.4.1941:=<group DN>)`. Active Directory
 * and Samba only; each user comes once, without saying through which group. Other servers:
 * `expandGroup`.
 */
export async function* transitiveUserMembers(
  session: DirectorySession,
  groupDn: string,
  mapping: DirectoryMapping,
): AsyncGenerator<MapResult<LdapUser>[]> {
  const inChain = new ExtensibleFilter({
    matchType: "memberOf",
    rule: MATCHING_RULE_IN_CHAIN,
    value: groupDn,
  });
  const filter = and(compileDirectoryFilter(mapping.userFilter), inChain);
  const base = resolveBase(mapping.userBase, session.connection.baseDn);
  const options = { pageSize: mapping.pageSize, bufferAttributes: bufferAttributes(mapping) };
  const pages = session.searchPages(base, filter, mapping.userScope, userAttributes(mapping), options);
  for await (const page of pages) yield page.map((entry) => mapUser(entry, mapping));
}

/**
 * Walks a group and its nested groups breadth-first, yielding each group's direct members in
 * batches (at least one per group, empty for a group without members). A visited set makes cycles (A ⊃ B ⊃ A) terminate; a group met again is still reported
 * as a member, just not expanded twice.
 */
export async function* expandGroup(
  session: DirectorySession,
  groupDn: string,
  mapping: DirectoryMapping,
): AsyncGenerator<MemberBatch> {
  const root = tryNormalizeDn(groupDn);
  if (root === null) {
    throw new DirectoryError({
      kind: "invalid_dn",
      message: `"${groupDn}" is not a valid DN.`,
      detail: groupDn,
    });
  }
  const resolver = new MemberResolver(session, mapping);
  const visited = new Set([root]);
  const queue = [groupDn];
  for (let dn = queue.shift(); dn !== undefined; dn = queue.shift()) {
    const values = await allMembers(session, dn, mapping);
    let yielded = false;
    for await (const batch of resolver.resolve(dn, values)) {
      for (const group of batch.groups) {
        const key = tryNormalizeDn(group.dn);
        if (key !== null && !visited.has(key)) {
          visited.add(key);
          queue.push(group.dn);
        }
      }
      if (!yielded) {
        batch.memberValues = memberCount(values);
        batch.memberHash = memberListHash(values);
      }
      yielded = true;
      yield batch;
    }
    // A group without members (emptied in the directory, or listing only itself) is still reported:
    // the reader learns that it has none, and drops the members it had.
    if (!yielded)
      yield { ...emptyBatch(dn), memberValues: memberCount(values), memberHash: memberListHash(values) };
  }
}

/**
 * Resolves the given member values of a group (those Roster does not know yet, say), in batches,
 * without walking nested groups: the caller decides which of the groups found to expand.
 */
export function resolveMemberValues(
  session: DirectorySession,
  mapping: DirectoryMapping,
  groupDn: string,
  values: MemberList,
): AsyncGenerator<MemberBatch> {
  return new MemberResolver(session, mapping).resolve(groupDn, values);
}

/**
 * A group's DN values by their lower-cased text, for the scan of the user search: a table of their
 * positions (open addressing, 8 bytes a value), not a Map of 1,000,000 strings (about 40 MB). A
 * value met is marked; those not met are left for the lookups. Values equal but for case count once.
 */
export class ListedDns {
  private readonly slots: Int32Array;
  private readonly met: Uint8Array;
  private readonly mask: number;

  constructor(private readonly values: readonly string[]) {
    let size = 16;
    while (size < values.length * 2) size *= 2;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    this.met = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i += 1) {
      const key = (values[i] as string).toLowerCase();
      let slot = textHash(key) & this.mask;
      for (;;) {
        const at = (this.slots[slot] as number) - 1;
        if (at < 0) {
          this.slots[slot] = i + 1;
          break;
        }
        if ((values[at] as string).toLowerCase() === key) {
          // The same DN again (in another case): the first stands for both.
          this.met[i] = 1;
          break;
        }
        slot = (slot + 1) & this.mask;
      }
    }
  }

  /** The listed value with this lower-cased text, marked met; null when none is listed or left. */
  take(key: string): string | null {
    let slot = textHash(key) & this.mask;
    for (;;) {
      const at = (this.slots[slot] as number) - 1;
      if (at < 0) return null;
      const value = this.values[at] as string;
      if (value.toLowerCase() === key) {
        if (this.met[at] === 1) return null;
        this.met[at] = 1;
        return value;
      }
      slot = (slot + 1) & this.mask;
    }
  }

  /** The values not met, in their listed order. */
  left(): string[] {
    const left: string[] = [];
    for (let i = 0; i < this.values.length; i += 1)
      if (this.met[i] === 0) left.push(this.values[i] as string);
    return left;
  }
}

/** FNV-1a over a string's UTF-16 code units, mixed (murmur3's finalizer): a table slot, not a fingerprint. */
function textHash(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

class MemberResolver {
  private readonly userFilter: Filter;
  private readonly groupFilter: Filter;
  private readonly userAttributes: string[];
  private readonly groupAttributes: string[];
  /** Member DNs share a few parents: each is parsed once. */
  private readonly dns = new DnCache();
  /** Where the directory's users and groups are searched: a member elsewhere is not one of them. */
  private readonly places: Record<"user" | "group", { base: string; scope: "one" | "sub" }>;
  /** Parent DN → which of the two places it lies in (members share a few parents). */
  private readonly within = new Map<string, { user: boolean; group: boolean }>();

  constructor(
    private readonly session: DirectorySession,
    private readonly mapping: DirectoryMapping,
  ) {
    this.userFilter = compileDirectoryFilter(mapping.userFilter);
    this.groupFilter = compileDirectoryFilter(mapping.groupFilter);
    this.userAttributes = userAttributes(mapping);
    this.groupAttributes = groupAttributes(mapping);
    const baseDn = session.connection.baseDn;
    this.places = {
      user: { base: resolveBase(mapping.userBase, baseDn), scope: mapping.userScope },
      group: { base: resolveBase(mapping.groupBase, baseDn), scope: mapping.groupScope },
    };
  }

  /** Whether an entry under `parent` is within the user and the group search (base and scope). */
  private placesOf(parent: string | null): { user: boolean; group: boolean } {
    if (parent === null) return { user: false, group: false };
    const known = this.within.get(parent);
    if (known) return known;
    const { user, group } = this.places;
    const found = {
      user: childrenWithinSearch(parent, user.base, user.scope),
      group: childrenWithinSearch(parent, group.base, group.scope),
    };
    this.within.set(parent, found);
    return found;
  }

  /** Why a member neither search can see is not imported. */
  private get outside(): string {
    return `Outside the directory's user search base (${this.places.user.base}${this.places.user.scope === "one" ? ", one level" : ""}).`;
  }

  async *resolve(groupDn: string, values: MemberList): AsyncGenerator<MemberBatch> {
    if (values.dns.length > 0) yield* this.resolveDns(groupDn, values.dns);
    if (values.usernames.length > 0) yield* this.resolveUsernames(groupDn, values.usernames);
  }

  /** posixGroup-style members: usernames, looked up under the user base. */
  private async *resolveUsernames(groupDn: string, values: string[]): AsyncGenerator<MemberBatch> {
    const usernames = uniqueBy(values.map((value) => value.trim()).filter(Boolean), usernameKey);
    const { base, scope } = this.places.user;
    for (const chunk of chunks(usernames, RESOLVE_BATCH)) {
      const filter = anyOf(this.mapping.attrUsername, chunk);
      const entries = await this.search(base, and(this.userFilter, filter), scope, this.userAttributes);
      const batch = emptyBatch(groupDn);
      const found = new Set<string>();
      for (const entry of entries) {
        const mapped = mapUser(entry, this.mapping);
        if (mapped.ok) {
          found.add(usernameKey(mapped.value.username));
          batch.users.push(mapped.value);
        }
      }
      const missing = chunk.filter((username) => !found.has(usernameKey(username)));
      batch.unresolved.push(
        ...missing.map((value) => ({ value, reason: "No user has this username.", kind: "member" as const })),
      );
      yield batch;
    }
  }

  /**
   * DN members, resolved by their RDN: members sharing a parent and an RDN attribute are fetched
   * with one `(|(uid=a)(uid=b)…)` search one level under that parent, and matched back by DN.
   */
  private async *resolveDns(groupDn: string, listed: string[]): AsyncGenerator<MemberBatch> {
    let values = listed;
    if (values.length >= SCAN_MIN_MEMBERS && (await this.isLargeShare(values.length))) {
      const listed = new ListedDns(values);
      yield* this.scanUsers(groupDn, listed);
      values = listed.left();
    }
    const self = tryNormalizeDn(groupDn) ?? groupDn;
    const { buckets, oddities, invalid } = bucketByParent(values, self, this.dns);
    if (invalid.length > 0) {
      const batch = emptyBatch(groupDn);
      batch.unresolved.push(
        ...invalid.map((value) => ({
          value,
          reason: "The member value is not a valid DN.",
          kind: "member" as const,
        })),
      );
      yield batch;
    }
    const lookups = [...buckets.values()].flatMap((bucket) =>
      [...chunks(bucket.members, RESOLVE_BATCH)].map(
        (chunk) => () => this.resolveChunk(groupDn, bucket.parent, bucket.type, chunk),
      ),
    );
    yield* inOrder(lookups, CONCURRENT_LOOKUPS);
    for (const chunk of chunks(oddities, RESOLVE_BATCH)) {
      yield await this.resolveOneByOne(groupDn, chunk);
    }
  }

  /** Whether `members` is at least a quarter of the users the user search finds (counted up to that point). */
  private async isLargeShare(members: number): Promise<boolean> {
    const { base, scope } = this.places.user;
    const enough = members * SCAN_SHARE;
    let users = 0;
    for await (const page of this.session.searchPages(base, this.userFilter, scope, ["1.1"], {
      pageSize: 1000,
    })) {
      users += page.length;
      if (users > enough) return false;
    }
    return true;
  }

  /**
   * Reads every user of the user search once and keeps the group's members among them, matched by
   * DN as text (the server nearly always spells it as the group does); `left` keeps the members not
   * met, for the lookups.
   */
  private async *scanUsers(groupDn: string, listed: ListedDns): AsyncGenerator<MemberBatch> {
    const { base, scope } = this.places.user;
    const options = { pageSize: this.mapping.pageSize, bufferAttributes: bufferAttributes(this.mapping) };
    let batch = emptyBatch(groupDn);
    for await (const page of this.session.searchPages(
      base,
      this.userFilter,
      scope,
      this.userAttributes,
      options,
    )) {
      for (const entry of page) {
        const value = listed.take(entry.dn.toLowerCase());
        if (value === null) continue;
        this.add(entry, "user", batch, value);
        if (batch.users.length + batch.unresolved.length >= RESOLVE_BATCH) {
          yield batch;
          batch = emptyBatch(groupDn);
        }
      }
    }
    if (batch.users.length + batch.unresolved.length > 0) yield batch;
  }

  private async resolveChunk(
    groupDn: string,
    parent: string,
    type: string,
    members: RdnMember[],
  ): Promise<MemberBatch> {
    const batch = emptyBatch(groupDn);
    let pending = new Map(members.map((member) => [member.key, member]));
    // The server usually spells a DN as the group does: found by its text, it needs no parsing.
    const byValue = new Map(members.map((member) => [member.value, member]));
    const byRdn = (candidates: RdnMember[]) =>
      anyOf(
        type,
        candidates.map((member) => member.rdnValue),
      );
    // A member outside the user search (base, scope) is not a user of this directory, even when the
    // server has an entry there that matches the user filter.
    const places = this.placesOf(parent);
    try {
      if (places.user) {
        const users = await this.search(
          parent,
          and(this.userFilter, byRdn(members)),
          "one",
          this.userAttributes,
        );
        pending = this.collect(users, pending, byValue, batch, "user");
      }
      // Most members are users: only the few left over are looked for among groups.
      if (pending.size > 0 && places.group) {
        const groupFilter = and(this.groupFilter, byRdn([...pending.values()]));
        const groups = await this.search(parent, groupFilter, "one", this.groupAttributes);
        pending = this.collect(groups, pending, byValue, batch, "group");
      }
      if (pending.size > 0) await this.identify(parent, type, pending, byValue, places.user, batch);
    } catch (err) {
      if (!isNoSuchObject(err)) throw err;
    }
    for (const member of pending.values()) {
      batch.unresolved.push({
        value: member.value,
        reason: places.user ? notFound : this.outside,
        kind: "member",
      });
    }
    return batch;
  }

  /**
   * Members neither search found: one more read under their parent says what each is (a computer
   * account, a contact, a person the user filter leaves out), so the report names it rather than
   * calling every one a user. Members identified are taken out of `pending`.
   */
  private async identify(
    parent: string,
    type: string,
    pending: Map<string, RdnMember>,
    byValue: ReadonlyMap<string, RdnMember>,
    searchable: boolean,
    batch: MemberBatch,
  ): Promise<void> {
    const rdns = anyOf(
      type,
      [...pending.values()].map((member) => member.rdnValue),
    );
    const entries = await this.search(parent, rdns, "one", ["objectClass"]);
    this.takeFound(entries, pending, byValue, (entry, member) => {
      batch.unresolved.push({ value: member.value, ...this.whatIs(entry, searchable) });
    });
  }

  private whatIs(entry: Entry, searchable: boolean): { kind: MemberKind; reason: string } {
    const classes = new Set(textValues(plainValues(entry, "objectClass")).map((c) => c.toLowerCase()));
    const outside = searchable ? null : this.outside;
    if (classes.has("computer")) {
      return { kind: "computer", reason: "A computer account, not a person: Roster imports user accounts." };
    }
    if (classes.has("contact"))
      return { kind: "contact", reason: "A contact, not an account: it cannot sign in." };
    if ([...classes].some((c) => GROUP_CLASSES.has(c))) {
      return { kind: "group", reason: outside ?? "A group the directory's group filter leaves out." };
    }
    if ([...classes].some((c) => PERSON_CLASSES.has(c))) {
      return { kind: "user", reason: outside ?? "A user the directory's user filter leaves out." };
    }
    const named = [...classes].filter((c) => c !== "top").join(", ");
    return {
      kind: "member",
      reason: `Neither a user nor a group${named ? ` (object classes: ${named})` : ""}.`,
    };
  }

  /** Members whose DN has a multi-valued RDN or no parent: a base-scope read each. */
  private async resolveOneByOne(groupDn: string, members: string[]): Promise<MemberBatch> {
    const batch = emptyBatch(groupDn);
    for (const value of members) {
      const places = this.placesOf(parentOf(value));
      const user = places.user
        ? await firstEntry(this.session, value, this.userFilter, this.userAttributes, this.mapping)
        : null;
      const entry =
        user ??
        (places.group
          ? await firstEntry(this.session, value, this.groupFilter, this.groupAttributes, this.mapping)
          : null);
      if (entry === null) {
        const found = await firstEntry(this.session, value, "(objectClass=*)", ["objectClass"]);
        const what = found ? this.whatIs(found, places.user) : null;
        batch.unresolved.push({
          value,
          ...(what ?? { reason: places.user ? notFound : this.outside, kind: "member" }),
        });
      } else this.add(entry, user !== null ? "user" : "group", batch, value);
    }
    return batch;
  }

  /** Files found entries into the batch; returns the members still not found. */
  private collect(
    entries: Entry[],
    pending: Map<string, RdnMember>,
    byValue: ReadonlyMap<string, RdnMember>,
    batch: MemberBatch,
    kind: "user" | "group",
  ): Map<string, RdnMember> {
    this.takeFound(entries, pending, byValue, (entry, member) => this.add(entry, kind, batch, member.value));
    return pending;
  }

  /** Matches entries back to the pending members they answer (by DN), taking each out of `pending`. */
  private takeFound(
    entries: Entry[],
    pending: Map<string, RdnMember>,
    byValue: ReadonlyMap<string, RdnMember>,
    found: (entry: Entry, member: RdnMember) => void,
  ): void {
    for (const entry of entries) {
      const key = byValue.get(entry.dn)?.key ?? this.dns.parse(entry.dn)?.key;
      const member = key === undefined ? undefined : pending.get(key);
      if (member === undefined || key === undefined) continue;
      pending.delete(key);
      found(entry, member);
    }
  }

  private add(entry: Entry, kind: "user" | "group", batch: MemberBatch, value: string): void {
    if (kind === "user") {
      const mapped = mapUser(entry, this.mapping);
      if (mapped.ok) batch.users.push(mapped.value);
      else batch.unresolved.push({ value, reason: mapped.reason, kind: "user" });
    } else {
      const mapped = mapGroup(entry, this.mapping);
      if (mapped.ok) batch.groups.push(mapped.value);
      else batch.unresolved.push({ value, reason: mapped.reason, kind: "group" });
    }
  }

  private async search(
    base: string,
    filter: Filter,
    scope: "one" | "sub",
    attributes: string[],
  ): Promise<Entry[]> {
    const entries: Entry[] = [];
    const options = { pageSize: this.mapping.pageSize, bufferAttributes: bufferAttributes(this.mapping) };
    for await (const page of this.session.searchPages(base, filter, scope, attributes, options)) {
      entries.push(...page);
    }
    return entries;
  }
}

const notFound = "The directory has no entry with this DN.";

const GROUP_CLASSES = new Set(["group", "groupofnames", "groupofuniquenames", "posixgroup", "groupofurls"]);
const PERSON_CLASSES = new Set(["user", "person", "inetorgperson", "organizationalperson", "posixaccount"]);

interface RdnMember {
  /** The value as the group holds it. */
  value: string;
  /** Its normalized DN, to match entries returned by the server. */
  key: string;
  rdnValue: string;
}

interface Bucket {
  parent: string;
  type: string;
  members: RdnMember[];
}

/** Groups DN members by parent and RDN attribute; multi-valued RDNs go to `oddities`. */
function bucketByParent(values: string[], self: string, dns: DnCache) {
  const buckets = new Map<string, Bucket>();
  const oddities: string[] = [];
  const invalid: string[] = [];
  const seen = new Set<string>([self]);
  for (const raw of values) {
    const value = stripOptionalUid(raw.trim());
    const parsed = dns.parse(value);
    if (parsed === null || parsed.rdns.length === 0) {
      invalid.push(raw);
      continue;
    }
    const { key, parent } = parsed;
    if (seen.has(key)) continue;
    seen.add(key);
    const rdn = parsed.rdns[0];
    const ava = rdn?.length === 1 ? rdn[0] : undefined;
    if (ava === undefined || ava.hex || parent === null) {
      oddities.push(value);
      continue;
    }
    const bucketKey = `${ava.type.toLowerCase()}\u0000${parent.key}`;
    const bucket = buckets.get(bucketKey) ?? { parent: parent.text, type: ava.type, members: [] };
    bucket.members.push({ value, key, rdnValue: ava.value });
    buckets.set(bucketKey, bucket);
  }
  return { buckets, oddities, invalid };
}

function parentOf(dn: string): string | null {
  try {
    return parentDn(dn);
  } catch {
    return null;
  }
}

/** uniqueMember values may carry an optional UID: `cn=x,dc=example#'0101'B`. */
export function stripOptionalUid(value: string): string {
  return value.replace(/#'[01]*'B$/, "");
}

/** The entry at `dn` if it matches `filter`, else null; its stable id as bytes when a mapping is given. */
async function firstEntry(
  session: DirectorySession,
  dn: string,
  filter: Filter | string,
  attributes: string[],
  mapping?: DirectoryMapping,
): Promise<Entry | null> {
  try {
    const options = mapping ? { bufferAttributes: bufferAttributes(mapping) } : {};
    for await (const page of session.searchPages(dn, filter, "base", attributes, options)) {
      if (page[0]) return page[0];
    }
    return null;
  } catch (err) {
    if (isNoSuchObject(err)) return null;
    throw err;
  }
}

function rangedName(attribute: string, start: number): string {
  return `${attribute};range=${start}-${start + RANGE_WINDOW - 1}`;
}

/**
 * The ranged attribute in an entry, if the server sent one. ldapts adds every requested name
 * that the server did not send with no values, so an empty window under exactly the requested
 * name is that filler, not an answer.
 */
function rangedWindow(entry: Entry, attribute: string): { values: string[]; high: number | null } | null {
  const pattern = new RegExp(`^${escapeRegExp(attribute)};range=(\\d+)-(\\d+|\\*)$`, "i");
  for (const [name, raw] of Object.entries(entry)) {
    const match = pattern.exec(name);
    if (!match) continue;
    const values = textValues(raw);
    const high = match[2] === "*" ? null : Number(match[2]);
    if (values.length > 0 || high === null) return { values, high };
  }
  return null;
}

export function plainValues(entry: Entry, attribute: string): Entry[string] {
  const name = Object.keys(entry).find((key) => key.toLowerCase() === attribute.toLowerCase());
  return name === undefined ? [] : (entry[name] ?? []);
}

export function textValues(raw: Entry[string] | undefined): string[] {
  if (raw === undefined) return [];
  const values = Array.isArray(raw) ? raw : [raw];
  // Text already (nearly always): the array itself, not a copy.
  if (values.every((value) => typeof value === "string")) return values as string[];
  return values.map((value) => (Buffer.isBuffer(value) ? value.toString("utf8") : value));
}

function anyOf(attribute: string, values: string[]): Filter {
  const terms = values.map((value) => new EqualityFilter({ attribute, value }));
  return terms.length === 1 && terms[0] ? terms[0] : new OrFilter({ filters: terms });
}

function and(...filters: Filter[]): Filter {
  return new AndFilter({ filters });
}

function emptyBatch(groupDn: string): MemberBatch {
  return { groupDn, users: [], groups: [], unresolved: [] };
}

function groupMissing(groupDn: string): DirectoryError {
  return new DirectoryError({
    kind: "no_such_object",
    message: `The group ${groupDn} no longer exists in the directory.`,
    ldapCode: 32,
    detail: `base-scope read of ${groupDn}: no such object`,
  });
}

function isNoSuchObject(err: unknown): boolean {
  return err instanceof DirectoryError && err.classified.ldapCode === 32;
}

function usernameKey(username: string): string {
  return username.normalize("NFC").toLowerCase();
}

function uniqueBy<T>(items: T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const k = key(item);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Runs tasks with at most `limit` in flight, yielding their results in the tasks' order. */
async function* inOrder<T>(tasks: (() => Promise<T>)[], limit: number): AsyncGenerator<T> {
  const running: Promise<T>[] = [];
  let next = 0;
  const start = () => {
    const task = tasks[next++];
    if (!task) return;
    const promise = task();
    // Awaited below in order; this keeps a later failure from being "unhandled" meanwhile.
    promise.catch(() => {});
    running.push(promise);
  };
  while (next < tasks.length && running.length < limit) start();
  for (let current = running.shift(); current !== undefined; current = running.shift()) {
    const value = await current;
    start();
    yield value;
  }
}

function* chunks<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
