/**
 * Synchronizing an OpenLDAP directory that offers content synchronization (RFC 4533, the syncprov
 * overlay with a session log): a real slapd edited between runs, a real worker, the database as
 * the judge. After a full run takes the directory's cookies, each run gets exactly what changed —
 * deletions included, without a presence pass — and a cookie the directory can't refresh from
 * incrementally still ends right (its present phase).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import { Attribute, Change, Client } from "ldapts";
import { directories, users } from "../../src/db/schema.ts";
import { generateUsers, groupDn, groupEntry, userDn, userFixture } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import type { ImportRun } from "../../src/services/import/run-queue.ts";
import { readState } from "../../src/services/sync/incremental.ts";
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

const PEOPLE = 200;
const STAFF = groupDn("staff");
const BASE = "dc=example,dc=test";
const RFC_4533_NOTE =
  "What changed since the last synchronization, deletions included, as the directory's content synchronization (RFC 4533) tells it.";

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
    ldif: withStableIds(
      generateUsers(PEOPLE) +
        groupEntry({ cn: "staff", members: range(0, 100) }) +
        groupEntry({ cn: "ops", members: [...range(100, 130), STAFF] }) +
        `dn: ou=contractors,ou=people,${BASE}\nobjectClass: organizationalUnit\nou: contractors\n\n` +
        `dn: ou=alumni,${BASE}\nobjectClass: organizationalUnit\nou: alumni\n\n`,
    ),
  });
  admin = new Client({ url: server.url });
  await admin.bind(server.rootDn, server.rootPassword);
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

function synchronize(full = false): Promise<ImportRun> {
  return synchronizeWith(
    t.db,
    directoryId,
    testWorker(t.db, t.config.encryptionKey, { batchSize: 50 }),
    full,
  );
}

async function userNamed(username: string) {
  const [user] = await t.db.select().from(users).where(eq(users.username, username));
  return user;
}

const membersOf = (name: string) => memberUsernames(t.db, name);

async function syncState() {
  const [row] = await t.db.select().from(directories).where(eq(directories.id, directoryId));
  return readState(row?.syncState);
}

const goneState = async (username: string) => {
  const user = await userNamed(username);
  return { missing: user?.missingInDirectory, enabled: user?.enabled };
};

const replace = (dn: string, type: string, values: string[]) =>
  admin.modify(dn, new Change({ operation: "replace", modification: new Attribute({ type, values }) }));
const members = (operation: "add" | "delete", group: string, dns: string[]) =>
  admin.modify(
    group,
    new Change({ operation, modification: new Attribute({ type: "member", values: dns }) }),
  );

describe("synchronizing through content synchronization (RFC 4533)", { skip: skipWithoutSlapd }, () => {
  test("after a full run takes the cookies, each run gets exactly what changed, deletions included", async () => {
    const first = await synchronize();
    assert.equal(first.status, "succeeded", first.error ?? "");
    assert.equal(first.syncMethod, "full");
    assert.equal((await syncState())?.method, "contentSync", "the directory's cookies were kept");

    const renamedBefore = await userNamed(uid(30));
    const movedBefore = await userNamed(uid(140));
    await replace(userDn(5), "mail", ["moved.on@example.test"]);
    await admin.modifyDN(userDn(30), "uid=renamed.person");
    await members("delete", STAFF, [userDn(30)]);
    await members("add", STAFF, [`uid=renamed.person,ou=people,${BASE}`]);
    // Moved within the user base (ou=people), and out of it: OpenLDAP tells both as deleted.
    await admin.modifyDN(userDn(140), `uid=${uid(140)},ou=contractors,ou=people,${BASE}`);
    await admin.modifyDN(userDn(141), `uid=${uid(141)},ou=alumni,${BASE}`);
    await admin.del(userDn(10));
    await members("delete", STAFF, [userDn(10)]);
    await admin.del(userDn(160)); // in no group: told by the directory all the same
    await members("add", STAFF, [userDn(150)]);
    await members("delete", STAFF, [userDn(20)]);
    await admin.add(`uid=new.hire,ou=people,${BASE}`, {
      objectClass: "inetOrgPerson",
      uid: "new.hire",
      cn: "New Hire",
      sn: "Hire",
    });
    await members("add", STAFF, [`uid=new.hire,ou=people,${BASE}`]);

    const run = await synchronize();
    assert.equal(run.status, "succeeded", run.error ?? "");
    assert.equal(run.syncMethod, "incremental");
    assert.equal(run.syncNote, RFC_4533_NOTE);
    assert.equal((await userNamed(uid(5)))?.email, "moved.on@example.test");
    assert.equal((await userNamed("renamed.person"))?.id, renamedBefore?.id, "found by its stable id");
    const moved = await userNamed(uid(140));
    assert.equal(moved?.dn, `uid=${uid(140)},ou=contractors,ou=people,${BASE}`);
    assert.equal(moved?.enabled, true);
    assert.equal(moved?.id, movedBefore?.id, "a moved entry is the same user");
    assert.deepEqual(await goneState(uid(10)), { missing: true, enabled: false });
    assert.deepEqual(await goneState(uid(141)), { missing: true, enabled: false }, "out of the user base");
    assert.deepEqual(
      await goneState(uid(160)),
      { missing: true, enabled: false },
      "a deletion is told by the directory: no presence pass needed",
    );
    const staff = await membersOf("staff");
    assert.ok(staff.includes(uid(150)), "added to the group in the directory");
    assert.ok(staff.includes("new.hire"), "a new member is imported as a group import would");
    assert.ok(!staff.includes(uid(20)), "removed from the group");
    assert.ok(!staff.includes(uid(10)), "a deleted member leaves its groups");
    assert.ok(staff.includes("renamed.person"));
    assert.equal(staff.length, 100);
    assert.equal(run.created, 1, "new.hire");
    // Users 5, 30 and 140, staff and its three new members: not 200 users.
    assert.ok(run.processed <= 10, `only what changed (${run.processed})`);

    const quiet = await synchronize();
    assert.equal(quiet.status, "succeeded", quiet.error ?? "");
    assert.equal(quiet.syncMethod, "incremental");
    assert.deepEqual(
      { processed: quiet.processed, created: quiet.created, updated: quiet.updated },
      { processed: 0, created: 0, updated: 0 },
      "nothing changed: nothing read",
    );
  });

  test("after a restart the directory can't tell deletions since the cookie: its present phase finds them", async () => {
    // The session log lives in slapd's memory: after a restart, a refresh lists every entry still
    // there instead (changed ones in full, the others by entryUUID).
    await server.crash();
    await server.restart();
    await admin.unbind().catch(() => {});
    admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    await replace(userDn(7), "telephoneNumber", ["+1 555 000 0007"]);
    await admin.del(userDn(170));
    const run = await synchronize();
    assert.equal(run.status, "succeeded", run.error ?? "");
    assert.equal(run.syncMethod, "incremental");
    assert.equal((await userNamed(uid(7)))?.phone, "+1 555 000 0007");
    assert.deepEqual(await goneState(uid(170)), { missing: true, enabled: false });
    assert.equal((await userNamed(uid(171)))?.enabled, true, "present: kept");
    assert.ok(run.processed <= 5, `the unchanged entries are not imported again (${run.processed})`);
  });

  test("a cookie the directory can't read: it answers with every entry, and what it leaves out is gone", async () => {
    await t.db
      .update(directories)
      .set({
        syncState: sql`jsonb_set(sync_state, '{cookies,user}', to_jsonb(${Buffer.from("not a cookie").toString("base64")}::text))`,
      })
      .where(eq(directories.id, directoryId));
    await admin.del(userDn(180));
    const run = await synchronize();
    assert.equal(run.status, "succeeded", run.error ?? "");
    assert.equal(run.syncMethod, "incremental");
    assert.deepEqual(await goneState(uid(180)), { missing: true, enabled: false });
    assert.equal((await userNamed(uid(181)))?.enabled, true);
    assert.ok(run.processed >= 190, `every user entry read again (${run.processed})`);
    assert.equal(
      (await syncState())?.cookies?.user === Buffer.from("not a cookie").toString("base64"),
      false,
    );
  });
});
