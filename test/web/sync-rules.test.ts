/**
 * The rules of directory data that every entry point shares (import runs, Synchronize now, sign-in,
 * conversion), pinned where Synchronize now used to decide otherwise than an import.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { groupMembers, groups, users } from "../../src/db/schema.ts";
import { createDirectoryAuthenticator } from "../../src/services/directory-sign-in.ts";
import { nameKey } from "../../src/services/names.ts";
import { verifyPassword } from "../../src/services/passwords.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { createTestApp, createUser, signedInAgent, type TestApp, testConfig } from "../helpers/app.ts";
import { makeGroup, userNamed } from "../helpers/console.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";
import {
  BASE,
  type DirectoryFixture,
  importUser,
  people,
  startDirectory,
} from "../helpers/directory-fixture.ts";
import { flashOf, follow, postForm } from "../helpers/http.ts";
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

const groupDn = (cn: string) => `cn=${cn},ou=groups,${BASE}`;

/** An external group of the test directory, as an import made it, pointing at `cn`'s entry. */
async function importedGroup(cn: string) {
  const group = await makeGroup(t.db, {
    name: cn,
    kind: "external",
    directoryId: ldap.directory.id,
    externalId: `placeholder-${cn}`,
  });
  await t.db
    .update(groups)
    .set({ dn: groupDn(cn) })
    .where(eq(groups.id, group.id));
  return group;
}

async function synchronizeGroup(id: number): Promise<string> {
  const res = await postForm(admin.agent, `/groups/${id}/synchronizations`, admin.csrf).expect(303);
  return flashOf((await follow(admin.agent, res)).text);
}

async function groupsNamedLike(prefix: string) {
  const all = await t.db.select({ name: groups.name, kind: groups.kind }).from(groups);
  return all.filter((g) => g.name.toLowerCase().startsWith(prefix));
}

describe("a group name held by another group", { skip }, () => {
  test("Synchronize now reports a nested group whose name an internal group holds as a conflict, never a renamed copy", async () => {
    await ldap.admin.add(groupDn("design"), {
      objectClass: "groupOfNames",
      cn: "design",
      member: people("bob"),
    });
    await ldap.admin.add(groupDn("studio"), {
      objectClass: "groupOfNames",
      cn: "studio",
      member: [people("alice"), groupDn("design")],
    });
    await makeGroup(t.db, { name: "Design", kind: "internal" });
    const studio = await importedGroup("studio");

    const flash = await synchronizeGroup(studio.id);

    assert.match(flash, /left out \(design: The name belongs to an internal group of Roster/);
    assert.deepEqual(await groupsNamedLike("design"), [{ name: "Design", kind: "internal" }]);
    const members = await t.db.select().from(groupMembers).where(eq(groupMembers.groupId, studio.id));
    assert.deepEqual(
      members.map((m) => m.userId),
      [(await userNamed(t.db, "alice"))?.id],
    );
  });

  test("Synchronize now of a group renamed in the directory to an internal group's name is refused with the reason", async () => {
    await ldap.admin.add(groupDn("painters"), {
      objectClass: "groupOfNames",
      cn: "painters",
      member: people("carol"),
    });
    const painters = await importedGroup("painters");
    await synchronizeGroup(painters.id);
    await makeGroup(t.db, { name: "Sculptors", kind: "internal" });
    await ldap.admin.modifyDN(groupDn("painters"), "cn=sculptors");

    const flash = await synchronizeGroup(painters.id);

    assert.match(
      flash,
      /^error: .*Renamed to “sculptors” in the directory, but an internal group of Roster already has that name/,
    );
    const [kept] = await t.db.select().from(groups).where(eq(groups.id, painters.id));
    assert.equal(kept?.name, "painters", "nothing was changed");
    assert.deepEqual(
      (await groupsNamedLike("sculptors")).map((g) => g.kind),
      ["internal"],
    );
  });
});

describe("an internal user with an entry's username", { skip }, () => {
  test("Synchronize now of a group synchronizes the member's fields onto it, and it stays internal with its password", async () => {
    await ldap.admin.add(people("kai"), {
      objectClass: "inetOrgPerson",
      uid: "kai",
      cn: "Kai Directory",
      sn: "Directory",
      mail: "kai@example.test",
    });
    await ldap.admin.add(groupDn("sailors"), {
      objectClass: "groupOfNames",
      cn: "sailors",
      member: people("kai"),
    });
    const kai = await createUser(t.db, {
      username: "kai",
      fullName: "Kai Local",
      password: "kai's own password 1",
    });
    const sailors = await importedGroup("sailors");

    await synchronizeGroup(sailors.id);

    const [saved] = await t.db.select().from(users).where(eq(users.id, kai.id));
    assert.equal(saved?.kind, "internal");
    assert.equal(saved?.fullName, "Kai Directory");
    assert.equal(saved?.email, "kai@example.test");
    assert.equal(saved?.directoryId, null, "not linked to the entry");
    assert.ok(saved?.passwordHash && (await verifyPassword(saved.passwordHash, "kai's own password 1")));
    const members = await t.db.select().from(groupMembers).where(eq(groupMembers.groupId, sailors.id));
    assert.deepEqual(
      members.map((m) => m.userId),
      [kai.id],
    );
    assert.equal(
      (
        await t.db
          .select()
          .from(users)
          .where(eq(users.usernameKey, nameKey("kai")))
      ).length,
      1,
    );
  });

  test("sign-in of an external user refreshes it through the same writer", async () => {
    const bob = await importUser(t.db, secretBox, ldap, "bob");
    await t.db.update(users).set({ fullName: "stale" }).where(eq(users.id, bob.id));
    await signedInAgent(t.app, "bob", "bob-password");
    assert.equal((await userNamed(t.db, "bob"))?.fullName, "Bob Builder");
  });
});
