/**
 * The LDAP layer against a real Active Directory implementation: one Samba AD DC for the whole
 * file, loaded with the AD fixture (2,500-member group, nested cycle, non-ASCII and escaped DNs).
 * Tests that change the directory or restart the server come last.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  type AdLoadReport,
  type AdTestDirectory,
  adTestDirectory,
  deleteUser,
  loadAdFixture,
  renameUser,
  setUserEnabled,
} from "../../src/dev/ad-fixtures.ts";
import {
  BUILTIN_GROUP_COUNT,
  BUILTIN_USERS,
  type SambaServer,
  sambaUnavailableReason,
  startSamba,
} from "../../src/dev/samba.ts";
import { type DirectorySession, type Entry, openDirectory } from "../../src/ldap/client.ts";
import { dnEquals, normalizeDn } from "../../src/ldap/dn.ts";
import { bufferAttributes, guidToFilterValue, mapUser, userAttributes } from "../../src/ldap/mapping.ts";
import {
  expandGroup,
  type MemberBatch,
  readMemberValues,
  transitiveUserMembers,
} from "../../src/ldap/members.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import { testConnection } from "../../src/ldap/test-connection.ts";
import type { DirectoryConnection, DirectoryMapping, LdapUser } from "../../src/ldap/types.ts";

const run = promisify(execFile);
const mapping = presetMapping("active_directory");
const LDBSEARCH = "/usr/bin/ldbsearch";
const unavailable =
  sambaUnavailableReason() ??
  (existsSync(LDBSEARCH) ? null : "ldbsearch is not installed (apt-get install ldb-tools)");

describe("Active Directory (Samba AD DC)", { skip: unavailable ?? false }, () => {
  let server: SambaServer;
  let directory: AdTestDirectory;
  let loaded: AdLoadReport;
  let session: DirectorySession;

  /** As Roster would be configured: the service account, LDAPS, the server's CA. */
  function connection(overrides: Partial<DirectoryConnection> = {}): DirectoryConnection {
    return {
      urls: [server.ldapsUrl],
      startTls: false,
      caCertPem: server.caCertPem,
      verifyCertificate: true,
      connectTimeoutMs: 2000,
      operationTimeoutMs: 20_000,
      bindDn: directory.named.service.dn,
      bindPassword: directory.named.service.password ?? null,
      baseDn: server.baseDn,
      ...overrides,
    };
  }

  async function open(conn: DirectoryConnection): Promise<DirectorySession> {
    const opened = await openDirectory(conn);
    if (!opened.ok) assert.fail(`could not open ${conn.urls.join(" ")}: ${opened.error.detail}`);
    return opened.session;
  }

  async function findUser(filter: string, base = server.baseDn): Promise<Entry[]> {
    const entries: Entry[] = [];
    const options = { bufferAttributes: bufferAttributes(mapping) };
    for await (const page of session.searchPages(base, filter, "sub", userAttributes(mapping), options)) {
      entries.push(...page);
    }
    return entries;
  }

  async function mappedUser(filter: string): Promise<LdapUser> {
    const [entry, ...others] = await findUser(filter);
    assert.ok(entry, `no entry matches ${filter}`);
    assert.equal(others.length, 0, `more than one entry matches ${filter}`);
    const mapped = mapUser(entry, mapping);
    assert.ok(mapped.ok, mapped.ok ? "" : mapped.reason);
    return mapped.value;
  }

  before(async () => {
    server = await startSamba();
    directory = adTestDirectory();
    loaded = await loadAdFixture(server, directory);
    session = await open(connection());
  });

  after(async () => {
    await session?.close();
    await server?.stop();
  });

  describe("reading the directory with the Active Directory preset", () => {
    test("Test connection as the service account counts every user and group of the domain", async (t) => {
      t.diagnostic(
        `provisioned in ${server.timings.provisionMs} ms, started in ${server.timings.startMs} ms, ` +
          `loaded ${loaded.users} users and ${loaded.groups} groups in ${loaded.ms} ms`,
      );
      const result = await testConnection(connection(), mapping);
      assert.equal(result.ok, true, JSON.stringify(result.steps));
      assert.deepEqual(
        result.steps.map((step) => step.step),
        ["connect", "bind", "base_dn", "count_users", "count_groups"],
      );
      assert.equal(result.usersCount, directory.users.length + BUILTIN_USERS.length);
      assert.equal(result.groupsCount, directory.groups.length + BUILTIN_GROUP_COUNT);
    });

    test("a second Samba is refused while this one holds the ports, naming the holder", async () => {
      await assert.rejects(startSamba(), (err: Error) => {
        assert.match(err.message, /^Samba needs the fixed ports 389, 636, 3268, 3269 on loopback/);
        assert.ok(err.message.includes(`samba (pid ${server.pid})`), err.message);
        return true;
      });
    });

    test("the accounts every domain has are the only users outside the fixture", async () => {
      const outside = await findUser(mapping.userFilter);
      const names = outside
        .filter((entry) => !dnEquals(entry.dn, directory.rootOu) && !isUnder(entry.dn, directory.rootOu))
        .map((entry) => String(entry.sAMAccountName));
      assert.deepEqual(names.sort(), [...BUILTIN_USERS].sort());
    });

    test("Test connection as Administrator over plain ldap:// counts exactly the fixture under its OU", async () => {
      const scoped: DirectoryMapping = {
        ...mapping,
        userBase: "OU=Roster",
        groupBase: "OU=Groups,OU=Roster",
      };
      const conn = connection({
        urls: [server.ldapUrl],
        caCertPem: null,
        bindDn: server.adminDn,
        bindPassword: server.adminPassword,
      });
      const result = await testConnection(conn, scoped);
      assert.equal(result.ok, true, JSON.stringify(result.steps));
      assert.equal(result.usersCount, directory.users.length);
      assert.equal(result.groupsCount, directory.groups.length);
    });

    test("StartTLS with the server's CA works", async () => {
      const result = await testConnection(connection({ urls: [server.ldapUrl], startTls: true }), mapping);
      assert.equal(result.ok, true, JSON.stringify(result.steps));
      assert.ok(result.steps.some((step) => step.step === "starttls" && step.ok));
    });

    test("maps sAMAccountName to the username and objectGUID to AD's GUID string", async () => {
      const alice = directory.named.alice;
      const user = await mappedUser(`(sAMAccountName=${alice.sAMAccountName})`);
      assert.deepEqual(
        { ...user, externalId: undefined },
        {
          dn: alice.dn,
          externalId: undefined,
          username: "alice",
          fullName: "Alice Smith",
          email: "alice@example.test",
          department: "Engineering",
          phone: "+1 555 0100",
          disabled: false,
        },
      );
      // Samba's own tools print objectGUID in the standard form: the mapping must agree with them.
      assert.equal(user.externalId, await objectGuidFromLdb(server.dir, alice.dn));
    });

    test("finds the entry again by objectGUID, in a filter and as a <GUID=…> base", async () => {
      const user = await mappedUser("(sAMAccountName=alice)");
      const byFilter = await findUser(`(objectGUID=${guidToFilterValue(user.externalId)})`);
      assert.deepEqual(
        byFilter.map((entry) => entry.dn),
        [directory.named.alice.dn],
      );
      const byGuid = await session.readEntry(`<GUID=${user.externalId}>`, ["sAMAccountName"]);
      assert.equal(byGuid?.sAMAccountName, "alice");
    });

    test("maps userAccountControl 514 to a disabled user", async () => {
      assert.equal((await mappedUser("(sAMAccountName=carol)")).disabled, true);
      const disabled = await session.count(
        directory.rootOu,
        `(&${mapping.userFilter}(userAccountControl:1.2.840.113556.1.4.803:=2))`,
        "sub",
      );
      assert.equal(disabled, directory.users.filter((user) => !user.enabled).length);
    });

    test("maps non-ASCII names and a DN with an escaped comma", async () => {
      const bruce = await mappedUser("(sAMAccountName=李小龙)");
      assert.equal(bruce.username, "李小龙");
      assert.equal(bruce.department, "研究");
      const dorde = await mappedUser("(displayName=Đorđe*)");
      assert.equal(dorde.username, "đorđe");
      assert.equal(dorde.fullName, "Đorđe Balašević");
      const john = await mappedUser("(sAMAccountName=jsmith)");
      assert.ok(dnEquals(john.dn, "CN=Smith\\, John,OU=Staff,OU=Roster,DC=example,DC=test"));
    });

    test("ignores the referrals a search at the domain root returns", async () => {
      const before = session.referralsIgnored;
      const users = await session.count(server.baseDn, mapping.userFilter, "sub");
      assert.equal(users, directory.users.length + BUILTIN_USERS.length);
      assert.ok(session.referralsIgnored > before, "Samba refers to CN=Configuration from the domain root");
      const underOu = session.referralsIgnored;
      await session.count(directory.rootOu, mapping.userFilter, "sub");
      assert.equal(session.referralsIgnored, underOu);
    });
  });

  describe("group membership", () => {
    test("reads all 2,500 members of a group in explicit range windows", async () => {
      const { session: recording, requests } = recordingReads(session);
      const values = await readMemberValues(recording, directory.group.everyone.dn, "member");
      assert.equal(values.length, 2500);
      assert.deepEqual(
        new Set(values.map((dn) => normalizeDn(dn))),
        new Set(directory.bulkUsers.map((user) => normalizeDn(user.dn))),
      );
      assert.deepEqual(requests, [["member", "member;range=0-1499"], ["member;range=1500-2999"]]);
    });

    test("expands the 2,500-member group to every user, each once", async () => {
      const batches = await expandAll(session, directory.group.everyone.dn);
      assert.deepEqual(usernames(batches), directory.bulkUsers.map((user) => user.sAMAccountName).sort());
      const externalIds = new Set(batches.flatMap((batch) => batch.users.map((user) => user.externalId)));
      assert.equal(externalIds.size, 2500);
      assert.deepEqual(
        batches.flatMap((batch) => batch.unresolved),
        [],
      );
    });

    test("survives the cycle Cycle A ⊃ Cycle B ⊃ Cycle C ⊃ Cycle A", async () => {
      const { cycleA, cycleB, cycleC } = directory.group;
      const batches = await expandAll(session, cycleA.dn);
      assert.deepEqual(usernames(batches), ["alice", "bob", "zoë"]);
      const edges = batches.flatMap((batch) =>
        batch.groups.map((group) => [normalizeDn(batch.groupDn), normalizeDn(group.dn)]),
      );
      assert.deepEqual(edges, [
        [normalizeDn(cycleA.dn), normalizeDn(cycleB.dn)],
        [normalizeDn(cycleB.dn), normalizeDn(cycleC.dn)],
        [normalizeDn(cycleC.dn), normalizeDn(cycleA.dn)],
      ]);
    });

    test("follows a nested group whose DN has an escaped comma", async () => {
      const batches = await expandAll(session, directory.group.engineering.dn);
      assert.deepEqual(usernames(batches), ["alice", "bob", "jsmith"]);
      assert.deepEqual(
        batches.flatMap((batch) => batch.groups.map((group) => group.name)),
        ["R&D, Europe"],
      );
    });

    test("resolves non-ASCII members", async () => {
      const batches = await expandAll(session, directory.group.equipe.dn);
      assert.deepEqual(usernames(batches), ["zoë", "đorđe", "李小龙"].sort());
    });

    test("lists transitive members in one search with the in-chain matching rule", async () => {
      const transitive = async (dn: string) => {
        const names: string[] = [];
        for await (const page of transitiveUserMembers(session, dn, mapping)) {
          for (const result of page) {
            assert.ok(result.ok, result.ok ? "" : result.reason);
            names.push(result.value.username);
          }
        }
        return names.sort();
      };
      assert.deepEqual(await transitive(directory.group.cycleA.dn), ["alice", "bob", "zoë"]);
      assert.deepEqual(await transitive(directory.group.engineering.dn), ["alice", "bob", "jsmith"]);
      assert.equal((await transitive(directory.group.everyone.dn)).length, 2500);
    });
  });

  describe("password checks (bindAs)", () => {
    const staffDn = (cn: string) => `CN=${cn},OU=Staff,OU=Roster,DC=example,DC=test`;

    test("accepts the right password given the user's DN, userPrincipalName or DOMAIN\\name", async () => {
      const password = directory.named.alice.password ?? "";
      assert.deepEqual(await session.bindAs(staffDn("Alice Smith"), password), { ok: true });
      assert.deepEqual(await session.bindAs("alice@example.test", password), { ok: true });
      assert.deepEqual(await session.bindAs(`${server.domain}\\alice`, password), { ok: true });
    });

    test("accepts DNs with an escaped comma and non-ASCII characters", async () => {
      const { john, zoe } = directory.named;
      assert.deepEqual(await session.bindAs(staffDn("Smith\\, John"), john.password ?? ""), { ok: true });
      assert.deepEqual(await session.bindAs(staffDn("Zoë Saldaña"), zoe.password ?? ""), { ok: true });
    });

    test("refuses a wrong password as invalid_credentials", async () => {
      for (const name of [staffDn("Alice Smith"), "alice@example.test"]) {
        const result = await session.bindAs(name, "Wrong-Passw0rd!");
        assert.ok(!result.ok);
        assert.equal(result.error.kind, "invalid_credentials");
        assert.equal(
          result.error.message,
          "The password is wrong, or the bind DN does not match the account.",
        );
      }
    });

    test("refuses an empty name instead of binding anonymously", async () => {
      const result = await session.bindAs("", "Alice-Passw0rd!");
      assert.ok(!result.ok);
      assert.equal(result.error.kind, "invalid_dn");
    });

    test("refuses a disabled account's right password and says why", async () => {
      const result = await session.bindAs(directory.named.carol.dn, directory.named.carol.password ?? "");
      assert.ok(!result.ok);
      assert.equal(result.error.kind, "invalid_credentials");
      assert.equal(result.error.message, "The account is disabled.");
    });
  });

  describe("changes made in the directory", () => {
    test("a renamed and moved user keeps its objectGUID; the group's member value follows it", async () => {
      const original = directory.bulkUsers[0];
      assert.ok(original);
      const before = await mappedUser(`(sAMAccountName=${original.sAMAccountName})`);
      const newDn = await renameUser(server, original.dn, {
        cn: "Renamed, Person",
        parentDn: directory.ou.former,
        sAMAccountName: "renamed1",
      });
      const after = await mappedUser(`(objectGUID=${guidToFilterValue(before.externalId)})`);
      assert.equal(after.externalId, before.externalId);
      assert.equal(after.username, "renamed1");
      assert.ok(dnEquals(after.dn, newDn) && dnEquals(newDn, `CN=Renamed\\, Person,${directory.ou.former}`));
      const members = await readMemberValues(session, directory.group.everyone.dn, "member");
      assert.ok(members.some((dn) => dnEquals(dn, newDn)));
      assert.ok(!members.some((dn) => dnEquals(dn, original.dn)));
    });

    test("disabling and enabling a user shows in the mapping", async () => {
      const user = directory.bulkUsers[1];
      assert.ok(user?.enabled);
      const filter = `(sAMAccountName=${user.sAMAccountName})`;
      await setUserEnabled(server, user.dn, false);
      assert.equal((await mappedUser(filter)).disabled, true);
      await setUserEnabled(server, user.dn, true);
      assert.equal((await mappedUser(filter)).disabled, false);
    });

    test("a deleted user can no longer be found by its objectGUID", async () => {
      const user = directory.bulkUsers[2];
      assert.ok(user);
      const { externalId } = await mappedUser(`(sAMAccountName=${user.sAMAccountName})`);
      await deleteUser(server, user.dn);
      assert.deepEqual(await findUser(`(objectGUID=${guidToFilterValue(externalId)})`), []);
      assert.equal(await session.readEntry(`<GUID=${externalId}>`, ["sAMAccountName"]), null);
    });
  });

  describe("a server that requires strong authentication (Samba's default)", () => {
    before(async () => {
      await session.close();
      await server.restart({ requireStrongAuth: true });
      session = await open(connection());
    });

    test("refuses a simple bind over plain ldap:// as strong_auth_required", async () => {
      const conn = connection({ urls: [server.ldapUrl], caCertPem: null });
      const opened = await openDirectory(conn);
      assert.ok(!opened.ok);
      assert.equal(opened.step, "bind");
      assert.equal(opened.error.kind, "strong_auth_required");
      assert.equal(opened.error.ldapCode, 8);
      assert.equal(
        opened.error.message,
        "This server requires TLS for password binds: use ldaps:// or StartTLS.",
      );
      const result = await testConnection(conn, mapping);
      assert.deepEqual(
        result.steps.map((step) => [step.step, step.ok]),
        [
          ["connect", true],
          ["bind", false],
        ],
      );
      assert.equal(result.steps[1]?.error?.kind, "strong_auth_required");
    });

    test("accepts the same bind over ldaps:// and after StartTLS", async () => {
      for (const conn of [connection(), connection({ urls: [server.ldapUrl], startTls: true })]) {
        const result = await testConnection(conn, mapping);
        assert.equal(result.ok, true, JSON.stringify(result.steps));
      }
      const password = directory.named.alice.password ?? "";
      assert.deepEqual(await session.bindAs("alice@example.test", password), { ok: true });
    });
  });
});

function isUnder(dn: string, base: string): boolean {
  return normalizeDn(dn).endsWith(`,${normalizeDn(base)}`);
}

async function expandAll(session: DirectorySession, groupDn: string): Promise<MemberBatch[]> {
  const batches: MemberBatch[] = [];
  for await (const batch of expandGroup(session, groupDn, mapping)) batches.push(batch);
  return batches;
}

function usernames(batches: MemberBatch[]): string[] {
  return batches.flatMap((batch) => batch.users.map((user) => user.username)).sort();
}

/** The session, with the attribute lists of its base-scope reads recorded. */
function recordingReads(session: DirectorySession): { session: DirectorySession; requests: string[][] } {
  const requests: string[][] = [];
  const recording = new Proxy(session, {
    get(target, property) {
      if (property === "readEntry") {
        return (dn: string, attributes: string[], options?: { bufferAttributes?: string[] }) => {
          requests.push([...attributes]);
          return target.readEntry(dn, attributes, options);
        };
      }
      // A member list is read as a base-scope search of the group entry.
      if (property === "searchPages") {
        return (base: string, filter: string, scope: "base", attributes: string[], options?: object) => {
          if (scope === "base") requests.push([...attributes]);
          return target.searchPages(base, filter, scope, attributes, options);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { session: recording, requests };
}

/** objectGUID as Samba's ldbsearch prints it, read from the database files directly. */
async function objectGuidFromLdb(dir: string, dn: string): Promise<string> {
  const { stdout } = await run(LDBSEARCH, [
    "-H",
    `${dir}/private/sam.ldb`,
    "-s",
    "base",
    "-b",
    dn,
    "objectGUID",
  ]);
  const guid = /^objectGUID: (\S+)$/m.exec(stdout)?.[1];
  assert.ok(guid, `ldbsearch printed no objectGUID: ${stdout}`);
  return guid;
}
