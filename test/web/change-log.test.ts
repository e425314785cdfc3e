/**
 * Synchronizing an OpenLDAP directory with a change log (the accesslog overlay, as delta-syncrepl
 * directories have it) beside its content synchronization: an incremental run reads a changed
 * group's member changes from the log, not its whole member list, and ends where reading the list
 * would have. What the log can't prove (members replaced at once, a log that does not reach back)
 * is read in full. A real slapd edited between runs; the database is the judge.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { Attribute, Change, Client } from "ldapts";
import { groups } from "../../src/db/schema.ts";
import {
  generateUsers,
  groupDn,
  groupEntry,
  posixGroupEntry,
  userDn,
  userFixture,
} from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { cookieCsn, findChangeLog } from "../../src/ldap/change-log.ts";
import { openDirectory } from "../../src/ldap/client.ts";
import type { ImportRun } from "../../src/services/import/run-queue.ts";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  memberUsernames,
  queueEverything,
  runQueued,
  synchronizeWith,
  testWorker,
  withStableIds,
} from "./import-support.ts";

const PEOPLE = 150;
const STAFF = groupDn("staff");
const OPS = groupDn("ops");
const BASE = "dc=example,dc=test";
const FROM_LOG =
  "Changed groups' member changes are read from the directory's change log (cn=accesslog), not their whole member lists.";

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => userDn(from + i));
const uid = (index: number) => userFixture(index).uid;

let t: TestApp;
let server: SlapdServer;
let admin: Client;
let directoryId: number;

before(async () => {
  if (skipWithoutSlapd) return;
  server = await startSlapd({
    contentSync: true,
    changeLog: true,
    ldif: withStableIds(
      generateUsers(PEOPLE) +
        groupEntry({ cn: "staff", members: range(0, 100) }) +
        groupEntry({ cn: "ops", members: range(100, 130) }) +
        posixGroupEntry({ cn: "unix", gidNumber: 5000, memberUids: [uid(50), uid(51), uid(52)] }),
    ),
  });
  admin = new Client({ url: server.url });
  await admin.bind(server.rootDn, server.rootPassword);
  // A log in service holds writes from before any synchronization (slapadd logs none).
  await replace(userDn(149), "description", ["logged before Roster came"]);
  t = await createTestApp();
  await createUser(t.db, { username: "admin", role: "server_admin" });
  directoryId = (await addDirectory(t.db, t.config.encryptionKey, server, { mapping: { pageSize: 50 } })).id;
  await queueEverything(t.db, directoryId);
  await runQueued(testWorker(t.db, t.config.encryptionKey, { batchSize: 50 }));
});
after(async () => {
  await admin?.unbind().catch(() => {});
  await t?.close();
  await server?.stop();
});

async function synchronize(full = false): Promise<ImportRun> {
  const worker = testWorker(t.db, t.config.encryptionKey, { batchSize: 50 });
  const ended = await synchronizeWith(t.db, directoryId, worker, full);
  assert.equal(ended.status, "succeeded", ended.error ?? "");
  return ended;
}

const membersOf = (name: string) => memberUsernames(t.db, name);

async function storedHash(name: string): Promise<string | null> {
  const [row] = await t.db.select({ hash: groups.memberListHash }).from(groups).where(eq(groups.name, name));
  return row?.hash ?? null;
}

function replace(dn: string, type: string, values: string[]) {
  return admin.modify(
    dn,
    new Change({ operation: "replace", modification: new Attribute({ type, values }) }),
  );
}
const members = (operation: "add" | "delete" | "replace", group: string, dns: string[]) =>
  admin.modify(
    group,
    new Change({ operation, modification: new Attribute({ type: "member", values: dns }) }),
  );

describe("member changes from the directory's change log", { skip: skipWithoutSlapd }, () => {
  test("an incremental run applies a changed group's logged member changes", async () => {
    const first = await synchronize(true);
    assert.equal(first.syncMethod, "full");
    const staffBefore = await storedHash("staff");
    assert.notEqual(staffBefore, null, "a full run stores the list's fingerprint");

    await admin.modifyDN(userDn(30), "uid=renamed.person");
    await members("delete", STAFF, [userDn(30)]);
    await members("add", STAFF, [`uid=renamed.person,ou=people,${BASE}`]);
    await members("delete", STAFF, [userDn(10), userDn(20)]);
    await admin.del(userDn(10));
    await members("add", STAFF, [userDn(140), userDn(141)]);
    // Last operation wins: 141 added then removed, 40 removed then added back.
    await members("delete", STAFF, [userDn(141), userDn(40)]);
    await members("add", STAFF, [userDn(40)]);
    await admin.add(`uid=new.hire,ou=people,${BASE}`, {
      objectClass: "inetOrgPerson",
      uid: "new.hire",
      cn: "New Hire",
      sn: "Hire",
    });
    await members("add", STAFF, [`uid=new.hire,ou=people,${BASE}`]);

    const run = await synchronize();
    assert.equal(run.syncMethod, "incremental");
    assert.match(run.syncNote ?? "", new RegExp(FROM_LOG.replace(/[.()]/g, "\\$&")));
    const staff = await membersOf("staff");
    const expected = [
      ...range(0, 100)
        .map((_, i) => uid(i))
        .filter((name) => ![uid(10), uid(20), uid(30)].includes(name)),
      "renamed.person",
      uid(140),
      "new.hire",
    ].sort();
    assert.deepEqual(staff, expected);
    assert.equal(await storedHash("staff"), null, "the list was not read: its fingerprint is dropped");
    assert.equal((await membersOf("ops")).length, 30, "an unchanged group keeps its members");

    // A full run reads every list: it agrees, and stores the fingerprint again.
    const full = await synchronize(true);
    assert.equal(full.syncMethod, "full");
    assert.deepEqual(await membersOf("staff"), expected);
    assert.notEqual(await storedHash("staff"), null);
  });

  test("a posixGroup's memberUid changes come from the log too", async () => {
    await synchronize();
    const memberUid = (operation: "add" | "delete", values: string[]) =>
      admin.modify(
        groupDn("unix"),
        new Change({ operation, modification: new Attribute({ type: "memberUid", values }) }),
      );
    await memberUid("delete", [uid(51)]);
    await memberUid("add", [uid(60), ` ${uid(61)} `]);
    const run = await synchronize();
    assert.match(run.syncNote ?? "", /change log/);
    assert.deepEqual(await membersOf("unix"), [uid(50), uid(52), uid(60), uid(61)].sort());
    assert.equal(await storedHash("unix"), null, "read from the log");
  });

  test("members replaced at once: the group's list is read in full, and the members removed leave", async () => {
    await synchronize();
    await members("replace", OPS, [...range(100, 110), userDn(145)]);
    const run = await synchronize();
    assert.equal(run.syncMethod, "incremental");
    assert.deepEqual(
      await membersOf("ops"),
      [...range(100, 110).map((_, i) => uid(100 + i)), uid(145)].sort(),
    );
  });

  test("a log that does not reach back to the starting point is not used", async () => {
    const opened = await openDirectory({
      urls: [server.url],
      startTls: false,
      caCertPem: null,
      verifyCertificate: true,
      connectTimeoutMs: 5000,
      operationTimeoutMs: 10_000,
      bindDn: server.serviceDn,
      bindPassword: server.servicePassword,
      baseDn: BASE,
    });
    assert.ok(opened.ok);
    try {
      const now = "29991231235959.999999Z#000000#000#000000";
      assert.deepEqual(await findChangeLog(opened.session, now), { base: "cn=accesslog", since: now });
      assert.equal(await findChangeLog(opened.session, "20000101000000.000000Z#000000#000#000000"), null);
      assert.equal(await findChangeLog(opened.session, "not a CSN"), null);
    } finally {
      await opened.session.close();
    }
    assert.equal(
      cookieCsn(
        "rid=000,csn=20261208032755.968027Z#000000#002#000000;20261208032740.562133Z#000000#001#000000",
      ),
      "20261208032740.562133Z#000000#001#000000",
    );
    assert.equal(cookieCsn("rid=000"), null);
  });
});
