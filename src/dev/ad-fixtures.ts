/**
 * Active Directory test data for a throwaway Samba (see samba.ts): a generated directory with the
 * cases that break importers (a 2,500-member group, a cycle of nested groups, non-ASCII names, a
 * DN with an escaped comma, disabled accounts), loaded over LDAPS as Administrator, and the changes
 * an administrator makes later (rename, move, disable, delete).
 *
 * Loading is the slow part: Samba adds one user in ~5 ms without a password and ~25 ms with one
 * (hashing), so only the few accounts tests bind as get passwords.
 */
import { Attribute, Change, Client } from "ldapts";
import { escapeDnValue, formatDn, normalizeDn, parseDn } from "../ldap/dn.ts";
import { userFixture } from "./fixtures.ts";
import { AD_BASE_DN, AD_REALM, type SambaServer } from "./samba.ts";

/** What the helpers need to reach the server as an administrator. */
export type AdAdminAccess = Pick<SambaServer, "ldapsUrl" | "adminDn" | "adminPassword" | "caCertPem">;

export interface AdUser {
  dn: string;
  sAMAccountName: string;
  userPrincipalName: string;
  displayName: string;
  givenName: string;
  sn: string;
  mail: string | null;
  department: string | null;
  telephoneNumber: string | null;
  enabled: boolean;
  /** Set as unicodePwd when loading; most users have none (loading is ~5× faster without). */
  password?: string;
}

export interface AdGroup {
  dn: string;
  cn: string;
  sAMAccountName: string;
  description: string | null;
  /** DNs of member users and groups (groups may nest, cycles included). */
  members: string[];
}

export interface AdFixture {
  /** Organizational units, parents before children. */
  ous: string[];
  users: AdUser[];
  groups: AdGroup[];
}

/** The standard test directory, with handles on the entries tests talk about. */
export interface AdTestDirectory extends AdFixture {
  /** The OU that holds everything below (a user or group base that excludes the built-in accounts). */
  rootOu: string;
  ou: { staff: string; bulk: string; services: string; groups: string; former: string };
  /** Accounts with passwords, plus the edge cases. */
  named: {
    alice: AdUser;
    bob: AdUser;
    /** Disabled (userAccountControl 514), with a password: its bind must be refused. */
    carol: AdUser;
    zoe: AdUser;
    dorde: AdUser;
    bruce: AdUser;
    /** CN=Smith\, John: a DN with an escaped comma. */
    john: AdUser;
    /** The read-only service account Roster binds as. */
    service: AdUser;
  };
  bulkUsers: AdUser[];
  group: {
    /** Every bulk user: more than one 1,500-value range window. */
    everyone: AdGroup;
    engineering: AdGroup;
    /** CN=R&D\, Europe, nested in Engineering. */
    rdEurope: AdGroup;
    /** Cycle A ⊃ Cycle B ⊃ Cycle C ⊃ Cycle A. */
    cycleA: AdGroup;
    cycleB: AdGroup;
    cycleC: AdGroup;
    /** Non-ASCII name and members. */
    equipe: AdGroup;
  };
}

/** userAccountControl: NORMAL_ACCOUNT (0x200), plus ACCOUNTDISABLE (0x2) when disabled. */
export const UAC_ENABLED = 512;
export const UAC_DISABLED = 514;

const UPN_SUFFIX = `@${AD_REALM.toLowerCase()}`;

export interface AdTestDirectoryOptions {
  /** Generated users, all members of `group.everyone` (default 2,500); every 10th is disabled. */
  bulkUsers?: number;
}

export function adTestDirectory(options: AdTestDirectoryOptions = {}): AdTestDirectory {
  const rootOu = `OU=Roster,${AD_BASE_DN}`;
  const ou = {
    staff: `OU=Staff,${rootOu}`,
    bulk: `OU=Bulk,${rootOu}`,
    services: `OU=Service Accounts,${rootOu}`,
    groups: `OU=Groups,${rootOu}`,
    former: `OU=Former Staff,${rootOu}`,
  };
  const staff = (
    cn: string,
    fields: Omit<AdUser, "dn" | "userPrincipalName" | "enabled"> & { enabled?: boolean },
  ) => adUser(`CN=${escapeDnValue(cn)},${ou.staff}`, fields);
  const named = {
    alice: staff("Alice Smith", {
      sAMAccountName: "alice",
      displayName: "Alice Smith",
      givenName: "Alice",
      sn: "Smith",
      mail: "alice@example.test",
      department: "Engineering",
      telephoneNumber: "+1 555 0100",
      password: "Alice-Passw0rd!",
    }),
    bob: staff("Bob Jones", {
      sAMAccountName: "bob",
      displayName: "Bob Jones",
      givenName: "Bob",
      sn: "Jones",
      mail: "bob@example.test",
      department: "Engineering",
      telephoneNumber: "+1 555 0101",
      password: "Bob-Passw0rd!",
    }),
    carol: staff("Carol White", {
      sAMAccountName: "carol",
      displayName: "Carol White",
      givenName: "Carol",
      sn: "White",
      mail: "carol@example.test",
      department: "Sales",
      telephoneNumber: null,
      enabled: false,
      password: "Carol-Passw0rd!",
    }),
    zoe: staff("Zoë Saldaña", {
      sAMAccountName: "zoë",
      displayName: "Zoë Saldaña",
      givenName: "Zoë",
      sn: "Saldaña",
      mail: "zoe@example.test",
      department: "Recherche & Développement",
      telephoneNumber: "+33 1 23 45 67 89",
      password: "Zoë-Passw0rd!",
    }),
    dorde: staff("Đorđe Balašević", {
      sAMAccountName: "đorđe",
      displayName: "Đorđe Balašević",
      givenName: "Đorđe",
      sn: "Balašević",
      mail: "djordje@example.test",
      department: "Operations",
      telephoneNumber: null,
    }),
    bruce: staff("李小龙", {
      sAMAccountName: "李小龙",
      displayName: "李小龙",
      givenName: "小龙",
      sn: "李",
      mail: "bruce@example.test",
      department: "研究",
      telephoneNumber: "+852 2345 6789",
    }),
    john: staff("Smith, John", {
      sAMAccountName: "jsmith",
      displayName: "John Smith",
      givenName: "John",
      sn: "Smith",
      mail: "jsmith@example.test",
      department: "Research",
      telephoneNumber: "+1 555 0102",
      password: "John-Passw0rd!",
    }),
    service: adUser(`CN=roster-svc,${ou.services}`, {
      sAMAccountName: "roster-svc",
      displayName: "Roster service account",
      givenName: "Roster",
      sn: "Service",
      mail: null,
      department: null,
      telephoneNumber: null,
      password: "Svc-Passw0rd!-Roster",
    }),
  };
  const bulkUsers = Array.from({ length: options.bulkUsers ?? 2500 }, (_, index) => bulkUser(index, ou.bulk));
  const group = (
    cn: string,
    sAMAccountName: string,
    members: string[],
    description: string | null = null,
  ) => ({
    dn: `CN=${escapeDnValue(cn)},${ou.groups}`,
    cn,
    sAMAccountName,
    description,
    members,
  });
  const rdEurope = group("R&D, Europe", "rd-europe", [named.john.dn], "A DN with an escaped comma");
  const cycleA = group("Cycle A", "cycle-a", [named.alice.dn]);
  const cycleB = group("Cycle B", "cycle-b", [named.bob.dn]);
  const cycleC = group("Cycle C", "cycle-c", [named.zoe.dn]);
  cycleA.members.push(cycleB.dn);
  cycleB.members.push(cycleC.dn);
  cycleC.members.push(cycleA.dn);
  const groups = {
    everyone: group(
      "Everyone",
      "everyone",
      bulkUsers.map((user) => user.dn),
      "All bulk users",
    ),
    engineering: group("Engineering", "engineering", [named.alice.dn, named.bob.dn, rdEurope.dn]),
    rdEurope,
    cycleA,
    cycleB,
    cycleC,
    equipe: group(
      "Équipe Zoë",
      "équipe-zoë",
      [named.zoe.dn, named.dorde.dn, named.bruce.dn],
      "Unicode: 李小龙",
    ),
  };
  return {
    rootOu,
    ou,
    ous: [rootOu, ou.staff, ou.bulk, ou.services, ou.groups, ou.former],
    named,
    bulkUsers,
    users: [...Object.values(named), ...bulkUsers],
    group: groups,
    groups: Object.values(groups),
  };
}

function adUser(
  dn: string,
  fields: Omit<AdUser, "dn" | "userPrincipalName" | "enabled"> & { enabled?: boolean },
): AdUser {
  return {
    dn,
    userPrincipalName: `${fields.sAMAccountName}${UPN_SUFFIX}`,
    ...fields,
    enabled: fields.enabled ?? true,
  };
}

/** A generated user: realistic (often non-ASCII) names, an AD-style short sAMAccountName. */
function bulkUser(index: number, ou: string): AdUser {
  const user = userFixture(index);
  // uid is `given.surname<index>`; sAMAccountName keeps AD's 20-character limit: `gsurname<index>`.
  const [given = "", surname = ""] = user.uid.split(".");
  const sAMAccountName = `${given.slice(0, 1)}${surname}`;
  return {
    dn: `CN=${escapeDnValue(`${user.cn} ${index}`)},${ou}`,
    sAMAccountName,
    userPrincipalName: `${sAMAccountName}${UPN_SUFFIX}`,
    displayName: user.displayName,
    givenName: user.givenName,
    sn: user.sn,
    mail: user.mail,
    department: user.department,
    telephoneNumber: user.telephoneNumber,
    enabled: index % 10 !== 9,
  };
}

// ——— Loading ———

export interface AdLoadReport {
  ous: number;
  users: number;
  usersWithPasswords: number;
  groups: number;
  ms: number;
}

/**
 * Adds the fixture over LDAPS as Administrator: OUs, users (userAccountControl set explicitly,
 * unicodePwd only where a password is given), then groups — first with their user members, then
 * the nested groups, since AD refuses a member that does not exist yet.
 */
export async function loadAdFixture(server: AdAdminAccess, fixture: AdFixture): Promise<AdLoadReport> {
  const started = performance.now();
  return withAdmin(server, async (client) => {
    for (const dn of fixture.ous) {
      await add(client, dn, { objectClass: "organizationalUnit" });
    }
    for (const user of fixture.users) await add(client, user.dn, userAttributes(user));
    const groupDns = new Set(fixture.groups.map((group) => normalizeDn(group.dn)));
    const isGroup = (dn: string) => groupDns.has(normalizeDn(dn));
    for (const group of fixture.groups) {
      const members = group.members.filter((member) => !isGroup(member));
      await add(client, group.dn, {
        objectClass: "group",
        sAMAccountName: group.sAMAccountName,
        ...(group.description ? { description: group.description } : {}),
        ...(members.length > 0 ? { member: members } : {}),
      });
    }
    for (const group of fixture.groups) {
      const nested = group.members.filter(isGroup);
      if (nested.length > 0) await addValues(client, group.dn, "member", nested);
    }
    return {
      ous: fixture.ous.length,
      users: fixture.users.length,
      usersWithPasswords: fixture.users.filter((user) => user.password !== undefined).length,
      groups: fixture.groups.length,
      ms: Math.round(performance.now() - started),
    };
  });
}

function userAttributes(user: AdUser): Attribute[] {
  const text: Record<string, string | null> = {
    objectClass: "user",
    sAMAccountName: user.sAMAccountName,
    userPrincipalName: user.userPrincipalName,
    displayName: user.displayName,
    givenName: user.givenName,
    sn: user.sn,
    mail: user.mail,
    department: user.department,
    telephoneNumber: user.telephoneNumber,
    userAccountControl: String(user.enabled ? UAC_ENABLED : UAC_DISABLED),
  };
  const attributes = Object.entries(text).flatMap(([type, value]) =>
    value === null ? [] : [new Attribute({ type, values: [value] })],
  );
  if (user.password !== undefined) {
    attributes.push(new Attribute({ type: "unicodePwd", values: [unicodePwd(user.password)] }));
  }
  return attributes;
}

/** AD's password attribute: the password in double quotes, UTF-16LE (writable over TLS only). */
export function unicodePwd(password: string): Buffer {
  return Buffer.from(`"${password}"`, "utf16le");
}

// ——— Changes made later by the directory's administrators ———

export interface RenameUser {
  /** New CN (unescaped). Default: unchanged. */
  cn?: string;
  /** New parent (an OU DN). Default: unchanged. */
  parentDn?: string;
  /** New sAMAccountName; the userPrincipalName follows it. */
  sAMAccountName?: string;
}

/** Renames and/or moves a user (modifyDN), optionally changing its sAMAccountName; returns the new DN. */
export async function renameUser(server: AdAdminAccess, dn: string, change: RenameUser): Promise<string> {
  const [rdn, ...parent] = parseDn(dn);
  if (!rdn) throw new Error(`Not a user DN: ${dn}`);
  const newRdn = change.cn === undefined ? formatDn([rdn]) : `CN=${escapeDnValue(change.cn)}`;
  // ldapts splits the new DN at its first unescaped comma into RDN and new superior.
  if (/\\$/.test(newRdn.replace(/\\\\/g, ""))) throw new Error(`Unsupported RDN: ${newRdn}`);
  const newDn = `${newRdn},${change.parentDn ?? formatDn(parent)}`;
  await withAdmin(server, async (client) => {
    try {
      await client.modifyDN(dn, newDn);
    } catch (err) {
      throw new Error(`Cannot rename ${dn} to ${newDn}: ${String(err)}`, { cause: err });
    }
    if (change.sAMAccountName !== undefined) {
      await replace(client, newDn, {
        sAMAccountName: change.sAMAccountName,
        userPrincipalName: `${change.sAMAccountName}${UPN_SUFFIX}`,
      });
    }
  });
  return newDn;
}

export async function setUserEnabled(server: AdAdminAccess, dn: string, enabled: boolean): Promise<void> {
  await withAdmin(server, (client) =>
    replace(client, dn, { userAccountControl: String(enabled ? UAC_ENABLED : UAC_DISABLED) }),
  );
}

/** Deletes a user: AD keeps a tombstone under CN=Deleted Objects, invisible to normal searches. */
export async function deleteUser(server: AdAdminAccess, dn: string): Promise<void> {
  await withAdmin(server, async (client) => {
    try {
      await client.del(dn);
    } catch (err) {
      throw new Error(`Cannot delete ${dn}: ${String(err)}`, { cause: err });
    }
  });
}

export async function setPassword(server: AdAdminAccess, dn: string, password: string): Promise<void> {
  await withAdmin(server, (client) => replace(client, dn, { unicodePwd: unicodePwd(password) }));
}

/** Adds a workstation's computer account (objectClass computer, sAMAccountName `NAME$`); returns its DN. */
export async function addComputer(server: AdAdminAccess, ou: string, name: string): Promise<string> {
  const dn = `CN=${escapeDnValue(name)},${ou}`;
  await withAdmin(server, (client) =>
    add(client, dn, {
      objectClass: ["top", "person", "organizationalPerson", "user", "computer"],
      sAMAccountName: `${name}$`,
      userAccountControl: "4096",
    }),
  );
  return dn;
}

/** Adds a global security group with the given member DNs; returns its DN. */
export async function addGroup(
  server: AdAdminAccess,
  ou: string,
  name: string,
  members: string[],
): Promise<string> {
  const dn = `CN=${escapeDnValue(name)},${ou}`;
  await withAdmin(server, (client) =>
    add(client, dn, { objectClass: ["top", "group"], sAMAccountName: name, member: members }),
  );
  return dn;
}

// ——— LDAP plumbing ———

async function withAdmin<T>(server: AdAdminAccess, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({
    url: server.ldapsUrl,
    timeout: 60_000,
    connectTimeout: 5000,
    tlsOptions: { ca: server.caCertPem, minVersion: "TLSv1.2" },
  });
  try {
    await client.bind(server.adminDn, server.adminPassword);
    return await work(client);
  } finally {
    await client.unbind().catch(() => {});
  }
}

async function add(client: Client, dn: string, attributes: Attribute[] | Record<string, string | string[]>) {
  try {
    await client.add(dn, attributes);
  } catch (err) {
    throw new Error(`Cannot add ${dn}: ${String(err)}`, { cause: err });
  }
}

async function addValues(client: Client, dn: string, type: string, values: string[]): Promise<void> {
  try {
    await client.modify(dn, new Change({ operation: "add", modification: new Attribute({ type, values }) }));
  } catch (err) {
    throw new Error(`Cannot add ${type} values to ${dn}: ${String(err)}`, { cause: err });
  }
}

async function replace(client: Client, dn: string, values: Record<string, string | Buffer>): Promise<void> {
  const changes = Object.entries(values).map(
    ([type, value]) =>
      new Change({
        operation: "replace",
        modification: new Attribute({ type, values: typeof value === "string" ? [value] : [value] }),
      }),
  );
  try {
    await client.modify(dn, changes);
  } catch (err) {
    throw new Error(`Cannot modify ${dn}: ${String(err)}`, { cause: err });
  }
}
