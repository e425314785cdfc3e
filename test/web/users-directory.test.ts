import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq } from "drizzle-orm";
import {
  directories,
  groupMembers,
  groupSubgroups,
  groups,
  roleAssignments,
  users,
} from "../../src/db/schema.ts";
import { createDirectoryAuthenticator } from "../../src/services/directory-sign-in.ts";
import { nameKey } from "../../src/services/names.ts";
import { verifyPassword } from "../../src/services/passwords.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { createTestApp, createUser, signedInAgent, type TestApp, testConfig } from "../helpers/app.ts";
import { lastAudit, makeGroup, roleId, userNamed } from "../helpers/console.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";
import {
  BASE,
  type DirectoryFixture,
  importUser,
  people,
  replaceAttribute,
  startDirectory,
} from "../helpers/directory-fixture.ts";
import { decode, flashOf, follow, postForm } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";

const skip = skipWithoutSlapd;

let database: TestDatabase;
let t: TestApp;
let ldap: DirectoryFixture;
let admin: Awaited<ReturnType<typeof signedInAgent>>;
const config = testConfig();
const secretBox = createSecretBox(config.encryptionKey);

before(async () => {
  if (skip) return;
  database = await createTestDatabase();
  const externalAuth = createDirectoryAuthenticator({ db: database.db, secretBox });
  t = await createTestApp({ database, config, deps: { externalAuth } });
  ldap = await startDirectory(t.db, secretBox);
  await createUser(t.db, { username: "admin", role: "server_admin" });
  admin = await signedInAgent(t.app, "admin");
});
after(async () => {
  if (skip) return;
  await ldap.stop();
  await database.destroy();
});

async function assignmentCount(userId: number) {
  return (await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, userId))).length;
}

describe("synchronize now", { skip }, () => {
  test("re-reads the entry and reports what changed", async () => {
    const alice = await importUser(t.db, secretBox, ldap, "alice");
    await replaceAttribute(ldap.admin, people("alice"), "mail", ["alice.liddell@example.test"]);
    await replaceAttribute(ldap.admin, people("alice"), "departmentNumber", ["Looking Glass"]);
    const res = await postForm(admin.agent, `/users/${alice.id}/synchronizations`, admin.csrf).expect(303);
    const page = await follow(admin.agent, res);
    const message = flashOf(page.text);
    assert.match(message, /^success: Synchronized with Test LDAP: /);
    assert.match(message, /email “alice@example.test” → “alice.liddell@example.test”/);
    assert.match(message, /department “Wonderland” → “Looking Glass”/);
    const saved = await userNamed(t.db, "alice");
    assert.equal(saved?.email, "alice.liddell@example.test");
    assert.match(saved?.searchText ?? "", /\talice\.liddell@example\.test$/);
    assert.match(decode(page.text), /Last synchronized \d{4}-/);
    const audit = await lastAudit(t.db);
    assert.equal(audit?.action, "user.sync");
    const again = await postForm(admin.agent, `/users/${alice.id}/synchronizations`, admin.csrf);
    assert.match(flashOf((await follow(admin.agent, again)).text), /nothing had changed/);
  });

  test("follows a moved entry by its stable id and updates the DN", async () => {
    const carol = await importUser(t.db, secretBox, ldap, "carol");
    await ldap.admin.modifyDN(people("carol"), "uid=carol-renamed");
    await replaceAttribute(ldap.admin, `uid=carol-renamed,ou=people,${BASE}`, "uid", ["carol-renamed"]);
    const res = await postForm(admin.agent, `/users/${carol.id}/synchronizations`, admin.csrf);
    const message = flashOf((await follow(admin.agent, res)).text);
    assert.match(message, /username “carol” → “carol-renamed”/);
    const saved = await t.db.select().from(users).where(eq(users.id, carol.id));
    assert.equal(saved[0]?.dn, `uid=carol-renamed,ou=people,${BASE}`);
    assert.equal(saved[0]?.usernameKey, "carol-renamed");
  });

  test("an entry that no longer exists disables the user, says so, and deletes nothing", async () => {
    const zoe = await importUser(t.db, secretBox, ldap, "zoë");
    await t.db.insert(roleAssignments).values({ roleId: await roleId(t.db, "viewer"), userId: zoe.id });
    await ldap.admin.del(people("zoë"));
    const res = await postForm(admin.agent, `/users/${zoe.id}/synchronizations`, admin.csrf);
    const page = await follow(admin.agent, res);
    assert.match(
      flashOf(page.text),
      /^error: Test LDAP no longer has an entry for zoë, so zoë was disabled\. The user was not deleted/,
    );
    assert.match(decode(page.text), /Missing in the directory/);
    const saved = await userNamed(t.db, "zoë");
    assert.equal(saved?.enabled, false);
    assert.equal(saved?.missingInDirectory, true);
    assert.equal(await assignmentCount(zoe.id), 1);
    assert.equal((await lastAudit(t.db))?.action, "user.missing_in_directory");
  });

  test("another person given a deleted user's DN is not taken for that user: the user is missing", async () => {
    // As in Active Directory, the DN is made from the full name, and a new hire can get the same one.
    const dn = `cn=John Smith,ou=people,${BASE}`;
    const person = (uid: string) => ({ objectClass: "inetOrgPerson", cn: "John Smith", sn: "Smith", uid });
    await ldap.admin.add(dn, person("jsmith"));
    try {
      const jsmith = await importUser(t.db, secretBox, ldap, "jsmith");
      await ldap.admin.del(dn);
      await ldap.admin.add(dn, person("jsmith2"));
      const res = await postForm(admin.agent, `/users/${jsmith.id}/synchronizations`, admin.csrf);
      assert.match(
        flashOf((await follow(admin.agent, res)).text),
        /no longer has an entry for jsmith, so jsmith was disabled/,
      );
      const saved = await userNamed(t.db, "jsmith");
      assert.deepEqual(
        { enabled: saved?.enabled, missing: saved?.missingInDirectory, externalId: saved?.externalId },
        { enabled: false, missing: true, externalId: jsmith.externalId },
      );
      assert.equal(await userNamed(t.db, "jsmith2"), undefined, "the new person is not imported by it");
    } finally {
      await ldap.admin.del(dn).catch(() => {});
    }
  });

  test("an entry that comes back enables the user again, unless an administrator disabled it", async () => {
    const zoe = await userNamed(t.db, "zoë");
    assert.ok(zoe && !zoe.enabled && zoe.missingInDirectory, "zoë was disabled as missing");
    const zoeEntry = {
      objectClass: "inetOrgPerson",
      uid: "zoë",
      cn: "Zoë Schmidt",
      sn: "Schmidt",
      mail: "zo@example.test",
    };
    await ldap.admin.add(people("zoë"), zoeEntry);
    const res = await postForm(admin.agent, `/users/${zoe.id}/synchronizations`, admin.csrf);
    assert.match(
      flashOf((await follow(admin.agent, res)).text),
      /enabled again, as the directory no longer marks the account disabled; the entry exists again\./,
    );
    assert.equal((await userNamed(t.db, "zoë"))?.enabled, true);

    await postForm(admin.agent, `/users/${zoe.id}/login-status`, admin.csrf, { status: "disabled" }).expect(
      303,
    );
    await ldap.admin.del(people("zoë"));
    await postForm(admin.agent, `/users/${zoe.id}/synchronizations`, admin.csrf).expect(303);
    await ldap.admin.add(people("zoë"), zoeEntry);
    const again = await postForm(admin.agent, `/users/${zoe.id}/synchronizations`, admin.csrf);
    assert.match(
      flashOf((await follow(admin.agent, again)).text),
      /the entry exists again \(the user stays disabled until you enable it\)/,
    );
    const saved = await userNamed(t.db, "zoë");
    assert.equal(saved?.enabled, false, "the administrator's choice stands");
    assert.equal(saved?.missingInDirectory, false);
  });

  test("an unreachable directory changes nothing and says why", async () => {
    const alice = await userNamed(t.db, "alice");
    await t.db
      .update(directories)
      .set({ urls: ["ldap://127.0.0.1:1"] })
      .where(eq(directories.id, ldap.directory.id));
    try {
      const res = await postForm(admin.agent, `/users/${alice?.id}/synchronizations`, admin.csrf);
      assert.match(
        flashOf((await follow(admin.agent, res)).text),
        /^error: Roster could not reach Test LDAP: .*refused/i,
      );
      assert.equal((await userNamed(t.db, "alice"))?.enabled, true);
    } finally {
      await t.db
        .update(directories)
        .set({ urls: [ldap.server.url] })
        .where(eq(directories.id, ldap.directory.id));
    }
  });
});

describe("converting external to internal", { skip }, () => {
  test("sets a password; the user keeps everything else, roles included", async () => {
    await ldap.admin.add(people("dora"), {
      objectClass: "inetOrgPerson",
      uid: "dora",
      cn: "Dora Explorer",
      sn: "Explorer",
      mail: "dora@example.test",
      userPassword: "dora-password",
    });
    const dora = await importUser(t.db, secretBox, ldap, "dora");
    await t.db.insert(roleAssignments).values({ roleId: await roleId(t.db, "viewer"), userId: dora.id });
    const form = await admin.agent.get(`/users/${dora.id}/conversion`).expect(200);
    assert.match(form.text, /Convert dora to an internal user/);
    const mismatch = await postForm(admin.agent, `/users/${dora.id}/conversion`, admin.csrf, {
      password: "a long enough password",
      passwordConfirmation: "another one entirely",
    }).expect(422);
    assert.match(mismatch.text, /The passwords don(&#39;|')t match/);
    const res = await postForm(admin.agent, `/users/${dora.id}/conversion`, admin.csrf, {
      password: "a long enough password",
      passwordConfirmation: "a long enough password",
    }).expect(303);
    assert.match(flashOf((await follow(admin.agent, res)).text), /dora is now an internal user/);
    const saved = await userNamed(t.db, "dora");
    assert.equal(saved?.kind, "internal");
    assert.equal(saved?.directoryId, null);
    assert.equal(saved?.externalId, null);
    assert.equal(saved?.fullName, "Dora Explorer");
    assert.ok(await verifyPassword(saved?.passwordHash ?? "", "a long enough password"));
    assert.equal(await assignmentCount(dora.id), 1);
    assert.equal((await lastAudit(t.db))?.action, "user.convert_to_internal");
    await signedInAgent(t.app, "dora", "a long enough password");
  });
});

describe("converting internal to external", { skip }, () => {
  test("links the entry with the same username; fields synced, roles kept, password dropped", async () => {
    await ldap.admin.add(people("erin"), {
      objectClass: "inetOrgPerson",
      uid: "erin",
      cn: "Erin Directory",
      sn: "Directory",
      mail: "erin@example.test",
      userPassword: "erin-ldap-password",
    });
    const erin = await createUser(t.db, { username: "Erin", fullName: "Erin Local", role: "viewer" });
    const form = await admin.agent.get(`/users/${erin.id}/conversion`).expect(200);
    assert.match(form.text, /<option value="\d+">Test LDAP<\/option>/);
    const res = await postForm(admin.agent, `/users/${erin.id}/conversion`, admin.csrf, {
      directoryId: String(ldap.directory.id),
    }).expect(303);
    assert.match(flashOf((await follow(admin.agent, res)).text), /Erin is now an external user of Test LDAP/);
    const saved = await t.db.select().from(users).where(eq(users.id, erin.id));
    assert.equal(saved[0]?.kind, "external");
    assert.equal(saved[0]?.fullName, "Erin Directory");
    assert.equal(saved[0]?.username, "erin", "spelled as the directory spells it");
    assert.equal(saved[0]?.passwordHash, null);
    assert.equal(saved[0]?.dn, people("erin"));
    assert.equal(await assignmentCount(erin.id), 1);
    assert.equal((await lastAudit(t.db))?.action, "user.convert_to_external");
    await signedInAgent(t.app, "erin", "erin-ldap-password");
  });

  test("a disabled directory is refused with its reason, and nothing changes", async () => {
    await ldap.admin.add(people("quinn"), {
      objectClass: "inetOrgPerson",
      uid: "quinn",
      cn: "Quinn",
      sn: "Q",
    });
    const quinn = await createUser(t.db, { username: "quinn", password: "quinn's own password" });
    await t.db.update(directories).set({ enabled: false }).where(eq(directories.id, ldap.directory.id));
    try {
      const res = await postForm(admin.agent, `/users/${quinn.id}/conversion`, admin.csrf, {
        directoryId: String(ldap.directory.id),
      }).expect(422);
      // The only directory is the disabled one: the form gives way to a notice, the summary says why.
      assert.match(res.text, /Test LDAP is disabled, so nobody can sign in through it\. Enable it first/);
      assert.match(res.text, /No directory is enabled\./);
    } finally {
      await t.db.update(directories).set({ enabled: true }).where(eq(directories.id, ldap.directory.id));
      await ldap.admin.del(people("quinn")).catch(() => {});
    }
    const saved = await userNamed(t.db, "quinn");
    assert.equal(saved?.kind, "internal");
    assert.ok(saved?.passwordHash, "the password stays");
  });

  test("no entry with that username is a clear error, and nothing changes", async () => {
    const user = await createUser(t.db, { username: "localonly" });
    const res = await postForm(admin.agent, `/users/${user.id}/conversion`, admin.csrf, {
      directoryId: String(ldap.directory.id),
    }).expect(422);
    assert.match(
      res.text,
      /id="field-directoryId-error"[^>]*>.*Test LDAP has no user with the username localonly/s,
    );
    assert.equal((await userNamed(t.db, "localonly"))?.kind, "internal");
  });

  test("several entries with that username is a clear error, and nothing changes", async () => {
    const user = await createUser(t.db, { username: "twin" });
    const res = await postForm(admin.agent, `/users/${user.id}/conversion`, admin.csrf, {
      directoryId: String(ldap.directory.id),
    }).expect(422);
    assert.match(res.text, /Test LDAP has 2 entries with the username twin/);
    const saved = await userNamed(t.db, "twin");
    assert.equal(saved?.kind, "internal");
    assert.ok(saved?.passwordHash);
  });

  test("an entry already linked to another Roster user is refused, and nothing changes", async () => {
    await ldap.admin.add(people("gina"), {
      objectClass: "inetOrgPerson",
      uid: "gina",
      cn: "Gina",
      sn: "Gina",
    });
    await importUser(t.db, secretBox, ldap, "gina");
    await ldap.admin.modifyDN(people("gina"), "uid=gina2");
    await replaceAttribute(ldap.admin, people("gina2"), "uid", ["gina2"]);
    const local = await createUser(t.db, { username: "gina2" });
    const res = await postForm(admin.agent, `/users/${local.id}/conversion`, admin.csrf, {
      directoryId: String(ldap.directory.id),
    }).expect(422);
    assert.match(res.text, /already linked to the Roster user gina\./);
    assert.equal((await userNamed(t.db, "gina2"))?.kind, "internal");
  });

  test("no directory chosen re-renders the form with 422", async () => {
    const user = await userNamed(t.db, "localonly");
    const res = await postForm(admin.agent, `/users/${user?.id}/conversion`, admin.csrf, {}).expect(422);
    assert.match(res.text, /Choose a directory/);
  });
});

describe("synchronizing an external group", { skip }, () => {
  test("imports its members and nested groups, then follows removals", async () => {
    await ldap.admin.add(`uid=frank,ou=people,${BASE}`, {
      objectClass: "inetOrgPerson",
      uid: "frank",
      cn: "Frank",
      sn: "Frank",
    });
    await replaceAttribute(ldap.admin, `cn=admins,ou=groups,${BASE}`, "member", [people("frank")]);
    const staff = await makeGroup(t.db, {
      name: "staff",
      kind: "external",
      directoryId: ldap.directory.id,
      externalId: "placeholder",
    });
    await t.db
      .update(groups)
      .set({ dn: `cn=staff,ou=groups,${BASE}` })
      .where(eq(groups.id, staff.id));
    const res = await postForm(admin.agent, `/groups/${staff.id}/synchronizations`, admin.csrf).expect(303);
    const page = await follow(admin.agent, res);
    assert.match(
      flashOf(page.text),
      /Synchronized with Test LDAP: 3 memberships added, 0 removed, 1 user created/,
    );
    const members = await t.db
      .select({ username: users.username })
      .from(groupMembers)
      .innerJoin(users, eq(users.id, groupMembers.userId))
      .where(eq(groupMembers.groupId, staff.id));
    assert.deepEqual(
      members.map((m) => m.username),
      ["alice"],
    );
    const [adminsGroup] = await t.db
      .select()
      .from(groups)
      .where(eq(groups.nameKey, nameKey("admins")));
    assert.equal(adminsGroup?.kind, "external");
    const nested = await t.db
      .select()
      .from(groupSubgroups)
      .where(and(eq(groupSubgroups.parentId, staff.id), eq(groupSubgroups.childId, adminsGroup?.id ?? 0)));
    assert.equal(nested.length, 1);
    assert.match(decode(page.text), /Subgroups .*admins \(external\)/);
    const [synced] = await t.db.select().from(groups).where(eq(groups.id, staff.id));
    assert.notEqual(synced?.externalId, "placeholder", "found by DN and linked to the stable id");
    assert.equal(synced?.description, "Everyone");

    await replaceAttribute(ldap.admin, `cn=staff,ou=groups,${BASE}`, "member", [
      `cn=admins,ou=groups,${BASE}`,
    ]);
    const again = await postForm(admin.agent, `/groups/${staff.id}/synchronizations`, admin.csrf);
    assert.match(flashOf((await follow(admin.agent, again)).text), /0 memberships added, 1 removed/);
    const left = await t.db.select().from(groupMembers).where(eq(groupMembers.groupId, staff.id));
    assert.equal(left.length, 0);
    assert.ok(await userNamed(t.db, "alice"), "a user who left the group is not deleted");
    assert.equal((await lastAudit(t.db))?.action, "group.sync");
  });

  test("an internal user with a member's username stays a member, as an import makes it", async () => {
    await ldap.admin.add(people("hana"), { objectClass: "inetOrgPerson", uid: "hana", cn: "Hana", sn: "H" });
    await ldap.admin.add(`cn=crew,ou=groups,${BASE}`, {
      objectClass: "groupOfNames",
      cn: "crew",
      member: people("hana"),
    });
    const hana = await createUser(t.db, { username: "hana" });
    const crew = await makeGroup(t.db, {
      name: "crew",
      kind: "external",
      directoryId: ldap.directory.id,
      externalId: "y",
    });
    await t.db
      .update(groups)
      .set({ dn: `cn=crew,ou=groups,${BASE}` })
      .where(eq(groups.id, crew.id));
    // An import linked her: internal users with a member's username are that member.
    await t.db.insert(groupMembers).values({ groupId: crew.id, userId: hana.id });
    const res = await postForm(admin.agent, `/groups/${crew.id}/synchronizations`, admin.csrf);
    assert.match(flashOf((await follow(admin.agent, res)).text), /0 memberships added, 0 removed/);
    const members = await t.db.select().from(groupMembers).where(eq(groupMembers.groupId, crew.id));
    assert.deepEqual(
      members.map((m) => m.userId),
      [hana.id],
    );
    assert.equal((await userNamed(t.db, "hana"))?.kind, "internal");
  });

  test("a member's username held by a user whose entry was renamed is not handed to the member", async () => {
    await ldap.admin.add(people("ivy"), { objectClass: "inetOrgPerson", uid: "ivy", cn: "Ivy Old", sn: "I" });
    const ivy = await importUser(t.db, secretBox, ldap, "ivy");
    await ldap.admin.modifyDN(people("ivy"), "uid=ivy-old");
    await replaceAttribute(ldap.admin, people("ivy-old"), "uid", ["ivy-old"]);
    await ldap.admin.add(people("ivy"), { objectClass: "inetOrgPerson", uid: "ivy", cn: "Ivy New", sn: "I" });
    await ldap.admin.add(`cn=garden,ou=groups,${BASE}`, {
      objectClass: "groupOfNames",
      cn: "garden",
      member: people("ivy"),
    });
    const garden = await makeGroup(t.db, {
      name: "garden",
      kind: "external",
      directoryId: ldap.directory.id,
      externalId: "z",
    });
    await t.db
      .update(groups)
      .set({ dn: `cn=garden,ou=groups,${BASE}` })
      .where(eq(groups.id, garden.id));
    const res = await postForm(admin.agent, `/groups/${garden.id}/synchronizations`, admin.csrf);
    assert.match(
      flashOf((await follow(admin.agent, res)).text),
      /1 left out \(ivy: .*still there, perhaps renamed/,
    );
    const saved = await userNamed(t.db, "ivy");
    assert.equal(saved?.id, ivy.id);
    assert.equal(saved?.externalId, ivy.externalId, "still the renamed entry's user");
    assert.equal(saved?.fullName, "Ivy Old");
    const members = await t.db.select().from(groupMembers).where(eq(groupMembers.groupId, garden.id));
    assert.equal(members.length, 0);
  });

  test("a group deleted in the directory is kept and marked missing", async () => {
    await ldap.admin.add(`cn=temp,ou=groups,${BASE}`, {
      objectClass: "groupOfNames",
      cn: "temp",
      member: people("alice"),
    });
    const temp = await makeGroup(t.db, {
      name: "temp",
      kind: "external",
      directoryId: ldap.directory.id,
      externalId: "x",
    });
    await postForm(admin.agent, `/groups/${temp.id}/synchronizations`, admin.csrf).expect(303);
    await ldap.admin.del(`cn=temp,ou=groups,${BASE}`);
    const res = await postForm(admin.agent, `/groups/${temp.id}/synchronizations`, admin.csrf);
    assert.match(flashOf((await follow(admin.agent, res)).text), /no longer has this group/);
    const [saved] = await t.db.select().from(groups).where(eq(groups.id, temp.id));
    assert.equal(saved?.missingInDirectory, true);
    const members = await t.db.select().from(groupMembers).where(eq(groupMembers.groupId, temp.id));
    assert.equal(members.length, 1, "members kept");
  });
});
