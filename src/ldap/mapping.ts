/**
 * Turns directory entries into Roster's users and groups. Entries come from many servers, so
 * every value is treated as untrusted: attributes may be missing, multi-valued, binary, full of
 * control characters or absurdly long.
 */
import type { Entry } from "ldapts";
import type { DirectoryMapping, LdapGroup, LdapUser } from "./types.ts";

/** A failure names the entry's stable id when it has one (its other attributes are what is wrong). */
export type MapResult<T> =
  | { ok: true; value: T }
  | { ok: false; dn: string; reason: string; externalId?: string };

/** Binary attributes that identify entries; ldapts must be told to keep them as Buffers. */
export const BINARY_ID_ATTRIBUTES = ["objectGUID", "objectSid"] as const;

const LIMITS = { username: 255, fullName: 255, email: 320, department: 255, phone: 64, description: 1024 };
const UAC_ACCOUNTDISABLE = 0x2;
// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;

/** The attributes to request for users under this mapping. */
export function userAttributes(mapping: DirectoryMapping): string[] {
  return unique([
    mapping.attrUsername,
    mapping.attrFullName,
    mapping.attrEmail,
    mapping.attrDepartment,
    mapping.attrPhone,
    mapping.attrUniqueId,
    "userAccountControl",
    "nsAccountLock",
  ]);
}

/** The attributes to request for groups (the member attribute too, for counting). */
export function groupAttributes(mapping: DirectoryMapping): string[] {
  return unique([
    mapping.attrGroupName,
    mapping.attrUniqueId,
    "description",
    ...memberAttributes(mapping).map((a) => a.name),
  ]);
}

/**
 * The attributes a directory's groups list their members in (`attrMember` may name several,
 * separated by spaces or commas: `member uniqueMember memberUid`), and how each names a member:
 * memberUid by username, the others by DN — or as `memberValues` says when only one is named.
 */
export function memberAttributes(
  mapping: Pick<DirectoryMapping, "attrMember" | "memberValues">,
): { name: string; kind: "dn" | "username" }[] {
  const names = unique(mapping.attrMember.split(/[\s,]+/).filter(Boolean));
  return names.map((name) => ({
    name,
    kind:
      name.toLowerCase() === "memberuid" || (names.length === 1 && mapping.memberValues === "username")
        ? "username"
        : "dn",
  }));
}

/** Attributes ldapts should hand back as Buffers rather than try to decode as UTF-8. */
export function bufferAttributes(mapping: DirectoryMapping): string[] {
  const names = [...BINARY_ID_ATTRIBUTES, mapping.attrUniqueId];
  // ldapts compares the names case-sensitively with what the server sends back.
  return unique(names.flatMap((name) => [name, name.toLowerCase()]));
}

export function mapUser(entry: Entry, mapping: DirectoryMapping): MapResult<LdapUser> {
  const attributes = new EntryAttributes(entry);
  const externalId = attributes.uniqueId(mapping.attrUniqueId);
  if (!externalId)
    return { ok: false, dn: entry.dn, reason: `The entry has no ${mapping.attrUniqueId} (unique id).` };
  const username = cleanText(attributes.first(mapping.attrUsername), LIMITS.username)?.normalize("NFC");
  if (!username)
    return {
      ok: false,
      dn: entry.dn,
      reason: `The entry has no ${mapping.attrUsername} (username).`,
      externalId,
    };
  const fullName = cleanText(attributes.first(mapping.attrFullName), LIMITS.fullName)?.normalize("NFC");
  return {
    ok: true,
    value: {
      dn: entry.dn,
      externalId,
      username,
      fullName: fullName || username,
      email: cleanText(attributes.first(mapping.attrEmail), LIMITS.email),
      department:
        cleanText(attributes.first(mapping.attrDepartment), LIMITS.department)?.normalize("NFC") ?? null,
      phone: cleanText(attributes.first(mapping.attrPhone), LIMITS.phone),
      disabled: isDisabled(attributes),
    },
  };
}

export function mapGroup(entry: Entry, mapping: DirectoryMapping): MapResult<LdapGroup> {
  const attributes = new EntryAttributes(entry);
  const externalId = attributes.uniqueId(mapping.attrUniqueId);
  if (!externalId)
    return { ok: false, dn: entry.dn, reason: `The entry has no ${mapping.attrUniqueId} (unique id).` };
  const name = cleanText(attributes.first(mapping.attrGroupName), LIMITS.username)?.normalize("NFC");
  if (!name)
    return {
      ok: false,
      dn: entry.dn,
      reason: `The entry has no ${mapping.attrGroupName} (group name).`,
      externalId,
    };
  const members = memberAttributes(mapping)
    .map((a) => attributes.memberValues(a.name))
    .reduce((sum, next) => ({ count: sum.count + next.count, complete: sum.complete && next.complete }), {
      count: 0,
      complete: true,
    });
  return {
    ok: true,
    value: {
      dn: entry.dn,
      externalId,
      name,
      description: cleanText(attributes.first("description"), LIMITS.description)?.normalize("NFC") ?? null,
      memberCount: members.count,
      memberCountExact: members.complete,
    },
  };
}

/** The first non-blank value of an attribute, as text (its name in any case). */
export function firstText(entry: Entry, name: string): string | null {
  return new EntryAttributes(entry).first(name);
}

/** A GUID-valued attribute (objectGUID, invocationId) in text; null when absent or not 16 bytes. */
export function guidOf(entry: Entry, name: string): string | null {
  const value = new EntryAttributes(entry).values(name)[0];
  if (value === undefined) return null;
  try {
    return guidToString(asBytes(value));
  } catch (err) {
    if (err instanceof RangeError) return null;
    throw err;
  }
}

/** An entry's stable id alone (an entry read with nothing but that attribute). */
export function stableIdOf(entry: Entry, mapping: DirectoryMapping): string | null {
  return new EntryAttributes(entry).uniqueId(mapping.attrUniqueId) ?? null;
}

/**
 * The attribute that says when an entry last changed, in the server's time: Active Directory's
 * stored whenChanged (its modifyTimestamp is computed from it, and a filter on that computed
 * attribute matches every entry on Samba), the operational modifyTimestamp elsewhere.
 */
export function changedAtAttribute(mapping: Pick<DirectoryMapping, "attrUniqueId">): string {
  return isActiveDirectory(mapping) ? "whenChanged" : "modifyTimestamp";
}

/** A directory keyed by objectGUID is Active Directory (or Samba): its ways of telling changes and members apply. */
export function isActiveDirectory(mapping: Pick<DirectoryMapping, "attrUniqueId">): boolean {
  return mapping.attrUniqueId.toLowerCase() === "objectguid";
}

/** When the entry last changed, in ms since the epoch (server time). */
export function changedAtOf(entry: Entry, mapping: Pick<DirectoryMapping, "attrUniqueId">): number | null {
  return parseGeneralizedTime(new EntryAttributes(entry).first(changedAtAttribute(mapping)));
}

/** LDAP GeneralizedTime in UTC (`20261207152100Z`, `20261207152100.0Z`) → ms since the epoch. */
export function parseGeneralizedTime(text: string | null): number | null {
  const m = text ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:[.,]\d+)?Z$/.exec(text) : null;
  if (!m) return null;
  const [, y, mo, d, h, mi, se] = m.map(Number) as number[];
  const ms = Date.UTC(y ?? 0, (mo ?? 1) - 1, d ?? 1, h ?? 0, mi ?? 0, se ?? 0);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * ms since the epoch → GeneralizedTime as a filter value: `20261207152100Z`, or with a fraction
 * (`20261207152100.0Z`), the form Active Directory writes and compares.
 */
export function generalizedTime(ms: number, fraction = false): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}${fraction ? ".0" : ""}Z`;
}

/** Active Directory's objectGUID bytes → the GUID as AD shows it (first three fields little-endian). */
export function guidToString(bytes: Buffer): string {
  if (bytes.length !== 16) throw new RangeError(`A GUID has 16 bytes, not ${bytes.length}.`);
  const hex = (start: number, end: number, reverse: boolean): string => {
    const part = Buffer.from(bytes.subarray(start, end));
    return (reverse ? part.reverse() : part).toString("hex");
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join("-");
}

/** The GUID string → the 16 bytes as stored in objectGUID. */
export function guidToBytes(guid: string): Buffer {
  const hex = guid.replace(/[{}-]/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`Not a GUID: ${guid}`);
  const swap = (start: number, end: number): string =>
    Buffer.from(hex.slice(start, end), "hex").reverse().toString("hex");
  return Buffer.from(swap(0, 8) + swap(8, 12) + swap(12, 16) + hex.slice(16), "hex");
}

/** `\xx\xx…` escaped objectGUID bytes, to find an entry by its GUID in a filter: `(objectGUID=…)`. */
export function guidToFilterValue(guid: string | Buffer): string {
  const bytes = typeof guid === "string" ? guidToBytes(guid) : guid;
  return Array.from(bytes, (byte) => `\\${byte.toString(16).padStart(2, "0")}`).join("");
}

/** A binary objectSid → `S-1-5-21-…`. */
export function sidToString(bytes: Buffer): string {
  const revision = bytes.readUInt8(0);
  const subAuthorityCount = bytes.readUInt8(1);
  const authority = bytes.readUIntBE(2, 6);
  const subAuthorities = Array.from({ length: subAuthorityCount }, (_, i) => bytes.readUInt32LE(8 + i * 4));
  return ["S", revision, authority, ...subAuthorities].join("-");
}

/** Removes control characters, trims, caps the length (by code points); null when nothing is left. */
export function cleanText(value: string | null, maxLength: number): string | null {
  if (value === null) return null;
  const cleaned = value.replace(CONTROL_CHARACTERS, "").trim();
  if (cleaned === "") return null;
  // UTF-16 length ≥ code points: short values (nearly all) need no code-point array.
  if (cleaned.length <= maxLength) return cleaned;
  const codePoints = Array.from(cleaned);
  return codePoints.length <= maxLength ? cleaned : codePoints.slice(0, maxLength).join("").trimEnd();
}

function isDisabled(attributes: EntryAttributes): boolean {
  const uac = Number.parseInt(attributes.first("userAccountControl") ?? "", 10);
  if (Number.isFinite(uac) && (uac & UAC_ACCOUNTDISABLE) !== 0) return true;
  // 389 DS and FreeIPA lock accounts with nsAccountLock.
  return attributes.first("nsAccountLock")?.toLowerCase() === "true";
}

function unique(names: string[]): string[] {
  const seen = new Set<string>();
  return names.filter((name) => {
    const key = name.toLowerCase();
    if (name === "" || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

type Value = string | Buffer;

/**
 * Case-insensitive access to an entry's attributes (servers choose the case of the names). The
 * entry is read in place: an import maps 100,000 of them, so nothing is copied per attribute.
 */
class EntryAttributes {
  constructor(private readonly entry: Entry) {}

  values(name: string): Value[] {
    const raw = this.raw(name);
    if (raw === undefined) return [];
    return (Array.isArray(raw) ? raw : [raw]) as Value[];
  }

  /** As the entry holds it: one value bare, several in an array. */
  private raw(name: string): Value | Value[] | undefined {
    const key = Object.hasOwn(this.entry, name) ? name : this.keyOf(name);
    if (key === undefined || key === "dn") return undefined;
    return this.entry[key] as Value | Value[];
  }

  /** The entry's own spelling of an attribute name, found without regard to case. */
  private keyOf(name: string): string | undefined {
    const lower = name.toLowerCase();
    for (const key in this.entry) if (key !== "dn" && key.toLowerCase() === lower) return key;
    return undefined;
  }

  /** The first non-empty value as text (a single-valued view of a possibly multi-valued attribute). */
  first(name: string): string | null {
    const raw = this.raw(name);
    if (raw === undefined) return null;
    if (!Array.isArray(raw)) return nonBlank(raw);
    for (const value of raw) {
      const text = nonBlank(value);
      if (text !== null) return text;
    }
    return null;
  }

  uniqueId(name: string): string | null {
    const raw = this.raw(name);
    const value = Array.isArray(raw) ? raw[0] : raw;
    if (value === undefined) return null;
    try {
      if (name.toLowerCase() === "objectguid") return guidToString(asBytes(value));
      if (name.toLowerCase() === "objectsid") return sidToString(asBytes(value));
    } catch (err) {
      if (err instanceof RangeError) return null;
      throw err;
    }
    // bufferAttributes() asks for the unique id as a Buffer: a textual id (entryUUID, nsUniqueId) must
    // map to the same string whether or not it was, so only non-UTF-8 bytes become hex.
    return cleanText(Buffer.isBuffer(value) ? textOrHex(value) : value, 255)?.toLowerCase() ?? null;
  }

  /** Values of the member attribute, including an Active Directory range window (`member;range=0-1499`). */
  memberValues(name: string): { count: number; complete: boolean } {
    const prefix = `${name.toLowerCase()};range=`;
    for (const key in this.entry) {
      const lower = key.toLowerCase();
      if (!lower.startsWith(prefix)) continue;
      // ldapts adds requested names the server did not send with no values: skip those fillers.
      const values = this.values(key);
      if (values.length > 0 || lower.endsWith("-*"))
        return { count: values.length, complete: lower.endsWith("-*") };
    }
    return { count: this.values(name).length, complete: true };
  }
}

function nonBlank(value: Value): string | null {
  const text = Buffer.isBuffer(value) ? value.toString("utf8") : value;
  return text.trim() === "" ? null : text;
}

/**
 * ldapts hands back binary values as Buffers when asked to, but a GUID that happens to be valid
 * UTF-8 may still arrive as a string; re-encoding it restores the exact bytes.
 */
function asBytes(value: Value): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8");
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function textOrHex(bytes: Buffer): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return bytes.toString("hex");
  }
}
