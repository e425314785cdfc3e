/**
 * LDIF for throwaway directories: the base tree, realistic generated users (streamable to a file
 * for 100k), groups, and the hand-written fixtures in test/fixtures. slapadd runs no overlays, so
 * every generated user carries its own memberOf.
 */
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { escapeDnValue, parseDn } from "../ldap/dn.ts";

export const DEFAULT_BASE_DN = "dc=example,dc=test";
export const SERVICE_ACCOUNT_RDN = "cn=roster-svc,ou=services";

const FIXTURES_DIR = fileURLToPath(new URL("../../test/fixtures/", import.meta.url));

type AttributeValues = string | readonly string[] | undefined | null;

/** One LDIF record; values that are not plain ASCII (or start awkwardly) are base64, as RFC 2849 requires. */
export function ldifEntry(dn: string, attributes: Record<string, AttributeValues>): string {
  const lines = [ldifLine("dn", dn)];
  for (const [name, raw] of Object.entries(attributes)) {
    if (raw === undefined || raw === null) continue;
    const values = typeof raw === "string" ? [raw] : raw;
    for (const value of values) lines.push(ldifLine(name, value));
  }
  return `${lines.join("\n")}\n\n`;
}

function ldifLine(name: string, value: string): string {
  // SAFE-STRING: printable ASCII, not starting with space, ':' or '<', not ending with a space.
  const safe = /^(?:[\x21-\x39\x3b\x3d-\x7e][\x20-\x7e]*)?$/.test(value) && !value.endsWith(" ");
  return safe ? `${name}: ${value}` : `${name}:: ${Buffer.from(value, "utf8").toString("base64")}`;
}

export interface BaseTreeOptions {
  baseDn?: string;
  serviceDn?: string;
  servicePassword: string;
}

/** The suffix entry, ou=people, ou=groups, ou=services and the read-only service account. */
export function baseTreeLdif(options: BaseTreeOptions): string {
  const baseDn = options.baseDn ?? DEFAULT_BASE_DN;
  const serviceDn = options.serviceDn ?? `${SERVICE_ACCOUNT_RDN},${baseDn}`;
  const serviceCn = parseDn(serviceDn)[0]?.[0]?.value ?? "roster-svc";
  return [
    suffixEntry(baseDn),
    ldifEntry(`ou=people,${baseDn}`, { objectClass: "organizationalUnit", ou: "people" }),
    ldifEntry(`ou=groups,${baseDn}`, { objectClass: "organizationalUnit", ou: "groups" }),
    ldifEntry(`ou=services,${baseDn}`, { objectClass: "organizationalUnit", ou: "services" }),
    ldifEntry(serviceDn, {
      objectClass: ["applicationProcess", "simpleSecurityObject"],
      cn: serviceCn,
      description: "Read-only account Roster binds as",
      userPassword: options.servicePassword,
    }),
  ].join("");
}

function suffixEntry(baseDn: string): string {
  const ava = parseDn(baseDn)[0]?.[0];
  if (!ava) throw new Error(`Not a base DN: ${baseDn}`);
  const type = ava.type.toLowerCase();
  if (type === "dc") {
    return ldifEntry(baseDn, { objectClass: ["dcObject", "organization"], dc: ava.value, o: ava.value });
  }
  if (type === "o") return ldifEntry(baseDn, { objectClass: "organization", o: ava.value });
  if (type === "ou") return ldifEntry(baseDn, { objectClass: "organizationalUnit", ou: ava.value });
  throw new Error(`The base DN must start with dc=, o= or ou=: ${baseDn}`);
}

const GIVEN_NAMES: readonly string[] = words(`
  Ada Alan Amara Ana Anders Aisha Ben Carmen Chen Chloé Dmitri Elena Emeka Fatima Felix Grace Hana
  Hugo Ingrid Isabel Jamal Jin José Julia Kai Kofi Lars Leila Liam Lucía Mateo Maya Mei Mohammed Nadia
  Niamh Noah Olga Omar Priya Rafael Ravi Rosa Sakura Samuel Sofia Søren Tariq Thandiwe Tomás Uma
  Victor Wei Yara Yusuf Zoë Łukasz Chiara Björn Renée
`);

const SURNAMES: readonly string[] = words(`
  Abbott Adeyemi Alvarez Andersson Bauer Becker Brown Castillo Chen Cohen Costa Dubois Eriksen
  Fernández Fischer García Gonzalez Gupta Hansen Hernández Ito Jansen Johnson Kim Kowalski Kumar
  Larsen Lee Lopez Martin Müller Nakamura Nguyen Novak Okafor Olsen Patel Perez Petrov Rossi Santos
  Schmidt Singh Smith Suzuki Tanaka Taylor Thompson Walker Wang Weber Williams Wilson Wójcik Yamamoto
  Yilmaz Zhang Ziegler Ólafsson Åkesson
`);

export const DEPARTMENTS = [
  "Engineering",
  "Sales",
  "Marketing",
  "Finance",
  "Human Resources",
  "Legal",
  "Customer Support",
  "Operations",
  "Research",
  "IT",
] as const;

export interface UserFixture {
  uid: string;
  cn: string;
  givenName: string;
  sn: string;
  displayName: string;
  mail: string;
  department: string;
  telephoneNumber: string;
}

/** The `index`-th generated user; deterministic, with ASCII-only uid and mail. */
export function userFixture(index: number): UserFixture {
  const givenName = pick(GIVEN_NAMES, index);
  const sn = pick(SURNAMES, Math.floor(index / GIVEN_NAMES.length) + index * 7);
  const uid = `${ascii(givenName)}.${ascii(sn)}${index}`;
  return {
    uid,
    cn: `${givenName} ${sn}`,
    givenName,
    sn,
    displayName: `${givenName} ${sn}`,
    mail: `${uid}@example.test`,
    department: pick(DEPARTMENTS, index * 3),
    telephoneNumber: `+1 555 ${String(100 + (index % 900)).padStart(3, "0")} ${String(index % 10000).padStart(4, "0")}`,
  };
}

export interface UserLdifOptions {
  baseDn?: string;
  /** The OU under the base DN the users go to (default `people`). */
  ou?: string;
  /** Index of the first user (default 0). */
  start?: number;
  /** userPassword for every user (plain text: fine for a throwaway server). */
  password?: string;
  /** Groups each user is a member of (the memberOf values slapadd will not compute). */
  memberOf?: readonly string[] | ((index: number) => readonly string[]);
  /** When the entries last changed (GeneralizedTime), as slapadd keeps it; default: when loaded. */
  modifyTimestamp?: string;
}

export function userDn(index: number, options: Pick<UserLdifOptions, "baseDn" | "ou"> = {}): string {
  const baseDn = options.baseDn ?? DEFAULT_BASE_DN;
  return `uid=${escapeDnValue(userFixture(index).uid)},ou=${escapeDnValue(options.ou ?? "people")},${baseDn}`;
}

/** LDIF records of `count` users, one string each, so that 100k users can be streamed to a file. */
export function* userEntries(count: number, options: UserLdifOptions = {}): Generator<string> {
  const start = options.start ?? 0;
  for (let index = start; index < start + count; index += 1) {
    const user = userFixture(index);
    const memberOf = typeof options.memberOf === "function" ? options.memberOf(index) : options.memberOf;
    yield ldifEntry(userDn(index, options), {
      objectClass: "inetOrgPerson",
      uid: user.uid,
      cn: user.cn,
      sn: user.sn,
      givenName: user.givenName,
      displayName: user.displayName,
      mail: user.mail,
      departmentNumber: user.department,
      telephoneNumber: user.telephoneNumber,
      userPassword: options.password,
      memberOf,
      modifyTimestamp: options.modifyTimestamp,
    });
  }
}

export function generateUsers(count: number, options: UserLdifOptions = {}): string {
  return Array.from(userEntries(count, options)).join("");
}

/** Writes LDIF records to a file, waiting for the stream to drain (flat memory for 100k users). */
export async function writeLdif(path: string, records: Iterable<string>): Promise<void> {
  const stream = createWriteStream(path, { encoding: "utf8" });
  for (const record of records) {
    if (!stream.write(record)) await once(stream, "drain");
  }
  stream.end();
  await once(stream, "finish");
}

export interface GroupLdifOptions {
  cn: string;
  baseDn?: string;
  /** Full DN; default `cn=<cn>,ou=groups,<baseDn>`. */
  dn?: string;
  members: readonly string[];
  description?: string;
  /** Groups this group is itself a member of (nested groups). */
  memberOf?: readonly string[];
  /** See UserLdifOptions.modifyTimestamp. */
  modifyTimestamp?: string;
}

export function groupDn(cn: string, baseDn = DEFAULT_BASE_DN): string {
  return `cn=${escapeDnValue(cn)},ou=groups,${baseDn}`;
}

/** A groupOfNames (which needs at least one member). */
export function groupEntry(options: GroupLdifOptions): string {
  if (options.members.length === 0) throw new Error(`groupOfNames ${options.cn} needs at least one member`);
  return ldifEntry(options.dn ?? groupDn(options.cn, options.baseDn), {
    objectClass: "groupOfNames",
    cn: options.cn,
    description: options.description,
    member: options.members,
    memberOf: options.memberOf,
    modifyTimestamp: options.modifyTimestamp,
  });
}

/** A posixGroup, whose members are usernames (memberUid) rather than DNs. */
export function posixGroupEntry(options: {
  cn: string;
  gidNumber: number;
  memberUids: readonly string[];
  baseDn?: string;
  description?: string;
}): string {
  return ldifEntry(groupDn(options.cn, options.baseDn), {
    objectClass: "posixGroup",
    cn: options.cn,
    gidNumber: String(options.gidNumber),
    description: options.description,
    memberUid: options.memberUids,
  });
}

export interface BigGroupFixture {
  ldif: string;
  groupDn: string;
  userDns: string[];
  usernames: string[];
}

/** `size` users (from index `start`) all in one groupOfNames. */
export function bigGroupDirectory(
  size: number,
  options: { cn?: string; baseDn?: string; start?: number; password?: string } = {},
): BigGroupFixture {
  const baseDn = options.baseDn ?? DEFAULT_BASE_DN;
  const dn = groupDn(options.cn ?? `big-group-${size}`, baseDn);
  const start = options.start ?? 0;
  const indexes = Array.from({ length: size }, (_, i) => start + i);
  const userDns = indexes.map((index) => userDn(index, { baseDn }));
  const users = generateUsers(size, { baseDn, start, memberOf: [dn], password: options.password });
  const group = groupEntry({ cn: options.cn ?? `big-group-${size}`, dn, members: userDns, baseDn });
  return {
    ldif: users + group,
    groupDn: dn,
    userDns,
    usernames: indexes.map((index) => userFixture(index).uid),
  };
}

/** A file from test/fixtures (demo.ldif, edge.ldif). */
export function readFixture(name: string): Promise<string> {
  return readFile(`${FIXTURES_DIR}${name}`, "utf8");
}

function words(text: string): string[] {
  return text.trim().split(/\s+/);
}

function pick<T>(list: readonly T[], index: number): T {
  return list[((index % list.length) + list.length) % list.length] as T;
}

const TRANSLITERATIONS: Record<string, string> = {
  ł: "l",
  Ł: "L",
  ø: "o",
  Ø: "O",
  đ: "d",
  Đ: "D",
  ß: "ss",
  æ: "ae",
};

/** Lowercase ASCII for uids and mail (which is IA5: ASCII only). */
function ascii(name: string): string {
  const replaced = Array.from(name, (char) => TRANSLITERATIONS[char] ?? char).join("");
  return replaced
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^A-Za-z0-9]/g, "")
    .toLowerCase();
}
