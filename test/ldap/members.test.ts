import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Entry } from "ldapts";
import { type BigGroupFixture, bigGroupDirectory, readFixture } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { type DirectorySession, openDirectory } from "../../src/ldap/client.ts";
import { dnEquals } from "../../src/ldap/dn.ts";
import { DirectoryError } from "../../src/ldap/errors.ts";
import {
  expandGroup,
  type MemberBatch,
  RANGE_WINDOW,
  readGroup,
  readMemberList,
  readMemberValues,
} from "../../src/ldap/members.ts";
import { findUserEntry } from "../../src/services/sync/find.ts";
import { connectionTo, openldapMapping, skipWithoutSlapd } from "./support.ts";

const mapping = openldapMapping();

async function expandAll(
  session: DirectorySession,
  groupDn: string,
  options = mapping,
): Promise<MemberBatch[]> {
  const batches: MemberBatch[] = [];
  for await (const batch of expandGroup(session, groupDn, options)) batches.push(batch);
  return batches;
}

const usernames = (batches: MemberBatch[]) =>
  batches.flatMap((batch) => batch.users.map((user) => user.username)).sort();

describe("group expansion against slapd", { skip: skipWithoutSlapd }, () => {
  let server: SlapdServer;
  let session: DirectorySession;
  let big: BigGroupFixture;
  const groups = (cn: string) => `cn=${cn},ou=groups,${server.baseDn}`;

  before(async () => {
    big = bigGroupDirectory(2500, { cn: "everyone" });
    server = await startSlapd({ ldif: big.ldif + (await readFixture("edge.ldif")) });
    const opened = await openDirectory(connectionTo(server));
    assert.ok(opened.ok);
    session = opened.session;
  });

  after(async () => {
    await session?.close();
    await server?.stop();
  });

  test("expands a 2,500-member group completely, in bounded batches", async () => {
    const batches = await expandAll(session, big.groupDn);
    assert.deepEqual(usernames(batches), [...big.usernames].sort());
    assert.ok(batches.every((batch) => batch.users.length <= 250 && dnEquals(batch.groupDn, big.groupDn)));
    assert.deepEqual(
      batches.flatMap((batch) => batch.unresolved),
      [],
    );
    assert.deepEqual(
      batches.flatMap((batch) => batch.groups),
      [],
    );
    const externalIds = new Set(batches.flatMap((batch) => batch.users.map((user) => user.externalId)));
    assert.equal(externalIds.size, 2500);
  });

  test("reads all values of a big member attribute", async () => {
    const values = await readMemberValues(session, big.groupDn, "member");
    assert.equal(values.length, 2500);
  });

  test("survives a cycle of nested groups and finds every member once", async () => {
    const batches = await expandAll(session, groups("cycle-a"));
    assert.deepEqual(usernames(batches), ["alpha", "bravo", "charlie"]);
    const edges = batches.flatMap((batch) => batch.groups.map((group) => [batch.groupDn, group.name]));
    assert.deepEqual(edges, [
      [groups("cycle-a"), "cycle-b"],
      [`cn=cycle-b,ou=groups,${server.baseDn}`, "cycle-c"],
      [`cn=cycle-c,ou=groups,${server.baseDn}`, "cycle-a"],
    ]);
  });

  test("resolves member DNs spelled differently from their entries, and reports dangling ones and those outside the user base", async () => {
    const batches = await expandAll(session, groups("specials"));
    const direct = batches.filter((batch) => dnEquals(batch.groupDn, groups("specials")));
    assert.deepEqual(usernames(direct), ["agarcia", "leepark", "meta", "pkim", "sobrien", "xss"]);
    assert.deepEqual(
      direct.flatMap((batch) => batch.groups.map((group) => group.name)),
      ["R&D, Europe"],
    );
    assert.deepEqual(
      direct
        .flatMap((batch) => batch.unresolved.map((member) => [member.kind, member.value, member.reason]))
        .sort(),
      [
        // The report's Kind says what each is: a person outside the base is a user; a DN with no entry, a member.
        ["member", `uid=deleted-user,ou=people,${server.baseDn}`, "The directory has no entry with this DN."],
        [
          "user",
          `uid=contractor1,ou=contractors,${server.baseDn}`,
          `Outside the directory's user search base (ou=people,${server.baseDn}).`,
        ],
      ],
    );
    // With the whole tree as the user base, the member in another OU is one of the directory's users.
    const wide = await expandAll(session, groups("specials"), { ...mapping, userBase: null });
    assert.ok(usernames(wide).includes("contractor1"));
    const oneLevel = await expandAll(session, groups("specials"), { ...mapping, userScope: "one" });
    assert.ok(!usernames(oneLevel).includes("contractor1"));
    const nested = batches.filter((batch) =>
      dnEquals(batch.groupDn, `cn=R&D\\2C Europe,ou=groups,${server.baseDn}`),
    );
    assert.deepEqual(usernames(nested), ["alpha"]);
  });

  test("a user entry outside the user search base is not found by its DN either", async () => {
    const keys = { dn: `uid=contractor1,ou=contractors,${server.baseDn}`, username: "contractor1" };
    assert.deepEqual(await findUserEntry(session, mapping, keys), { ok: false, reason: "missing" });
    const wide = await findUserEntry(session, { ...mapping, userBase: null }, keys);
    assert.equal(wide.ok && wide.entry.username, "contractor1");
  });

  test("resolves posixGroup members given as usernames", async () => {
    const posix = {
      ...mapping,
      groupFilter: "(objectClass=posixGroup)",
      attrMember: "memberUid",
      memberValues: "username" as const,
    };
    const batches = await expandAll(session, groups("posix-devs"), posix);
    assert.deepEqual(usernames(batches), ["alpha", "bravo", "sobrien"]);
    assert.deepEqual(
      batches.flatMap((batch) => batch.unresolved),
      [{ value: "ghost", reason: "No user has this username.", kind: "member" }],
    );
  });

  test("reads a group with its member count, and null for a non-group", async () => {
    const group = await readGroup(session, groups("cycle-a"), mapping);
    assert.ok(group?.ok);
    assert.equal(group.value.name, "cycle-a");
    assert.equal(group.value.memberCount, 2);
    assert.equal(await readGroup(session, `uid=alpha,ou=people,${server.baseDn}`, mapping), null);
    assert.equal(await readGroup(session, groups("missing"), mapping), null);
  });

  test("reports a group that no longer exists", async () => {
    await assert.rejects(
      expandAll(session, groups("missing")),
      (err: unknown) => err instanceof DirectoryError && err.classified.kind === "no_such_object",
    );
  });
});

describe("a group of 300,000 members against slapd", { skip: skipWithoutSlapd }, () => {
  test("its member list is read whole (values are never spread as arguments)", async () => {
    const count = 300_000;
    const dn = "cn=huge,ou=groups,dc=example,dc=test";
    const member = (i: number) => `member: uid=member${i},ou=people,dc=example,dc=test\n`;
    const server = await startSlapd({
      ldif: `dn: ${dn}\nobjectClass: groupOfNames\ncn: huge\n${Array.from({ length: count }, (_, i) => member(i)).join("")}\n`,
    });
    const opened = await openDirectory(connectionTo(server));
    try {
      assert.ok(opened.ok);
      const list = await readMemberList(opened.session, dn, openldapMapping());
      assert.equal(list.dns.length, count);
      assert.equal(list.dns[count - 1], `uid=member${count - 1},ou=people,dc=example,dc=test`);
    } finally {
      if (opened.ok) await opened.session.close();
      await server.stop();
    }
  });
});

/**
 * Active Directory behaviour, which slapd does not have: a fake session that serves `member` in
 * range windows the way AD (and Samba when asked) does.
 */
function rangedSession(
  total: number,
  serverWindow: number,
): { session: DirectorySession; requests: string[][] } {
  const members = Array.from({ length: total }, (_, i) => `CN=User ${i},CN=Users,DC=corp,DC=test`);
  const requests: string[][] = [];
  const readEntry = async (dn: string, attributes: string[]): Promise<Entry | null> => {
    requests.push(attributes);
    const entry: Entry = { dn };
    for (const attribute of attributes) entry[attribute] = [];
    const ranged = attributes.map((name) => /^member;range=(\d+)-/i.exec(name)).find(Boolean);
    const start = ranged ? Number(ranged[1]) : 0;
    const end = Math.min(start + serverWindow, total);
    const last = end >= total;
    entry[`member;range=${start}-${last ? "*" : end - 1}`] = members.slice(start, end);
    return entry;
  };
  // Member lists are read as a base-scope search of the group entry.
  async function* searchPages(dn: string, _filter: unknown, scope: string, attributes: string[]) {
    assert.equal(scope, "base");
    const entry = await readEntry(dn, attributes);
    if (entry) yield [entry];
  }
  const session = { readEntry, searchPages } as unknown as DirectorySession;
  return { session, requests };
}

describe("Active Directory range retrieval", () => {
  test("follows member;range windows to the one ending in -*", async () => {
    const { session, requests } = rangedSession(4000, RANGE_WINDOW);
    const values = await readMemberValues(session, "CN=Big,DC=corp,DC=test", "member");
    assert.equal(values.length, 4000);
    assert.equal(new Set(values).size, 4000);
    assert.deepEqual(requests, [
      ["member", "member;range=0-1499"],
      ["member;range=1500-2999"],
      ["member;range=3000-4499"],
    ]);
  });

  test("follows a server window smaller than the one asked for", async () => {
    const { session, requests } = rangedSession(2500, 1000);
    const values = await readMemberValues(session, "CN=Big,DC=corp,DC=test", "member");
    assert.equal(values.length, 2500);
    assert.equal(requests.length, 3);
    assert.deepEqual(requests[1], ["member;range=1000-2499"]);
  });

  test("stops at an exactly full last window", async () => {
    const { session } = rangedSession(RANGE_WINDOW, RANGE_WINDOW);
    assert.equal((await readMemberValues(session, "CN=G,DC=corp,DC=test", "member")).length, RANGE_WINDOW);
  });
});
