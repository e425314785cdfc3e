/**
 * Who may sign in through a directory: only its imported users (the default), only those in chosen
 * imported groups, or anyone its user filter finds (created at first sign-in) — the setting on the
 * directory's page, and each choice at the sign-in page against a real slapd.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq } from "drizzle-orm";
import supertest from "supertest";
import {
  auditLog,
  directories,
  directoryDefaultRoles,
  groups,
  roleAssignments,
  users,
} from "../../src/db/schema.ts";
import { withDirectory } from "../../src/ldap/client.ts";
import { type SignInPolicy, toLoaded } from "../../src/services/directories.ts";
import { createDirectoryAuthenticator } from "../../src/services/directory-sign-in.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { findGroupEntry } from "../../src/services/sync/find.ts";
import { syncGroupTree } from "../../src/services/sync/group-tree.ts";
import { formValuesOf } from "../../src/web/forms/directory-form.ts";
import {
  createTestApp,
  createUser,
  csrfTokenOf,
  type SignedInAgent,
  signedInAgent,
  type TestApp,
  testConfig,
} from "../helpers/app.ts";
import { makeDirectory, makeGroup, roleId, userNamed } from "../helpers/console.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";
import { type DirectoryFixture, importUser, people, startDirectory } from "../helpers/directory-fixture.ts";
import { decode, flashOf, follow, postForm } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";

const skip = skipWithoutSlapd;
const REFUSED = /The username or password is not correct\./;

let database: TestDatabase;
let t: TestApp;
let ldap: DirectoryFixture;
let admin: SignedInAgent;
const config = testConfig();
const secretBox = createSecretBox(config.encryptionKey);
/** Roster ids of the imported groups: staff ⊃ {alice, admins}, admins ⊃ {bob}. */
const groupIds: Record<"staff" | "admins", number> = { staff: 0, admins: 0 };

before(async () => {
  if (skip) return;
  database = await createTestDatabase();
  const externalAuth = createDirectoryAuthenticator({ db: database.db, secretBox });
  t = await createTestApp({ database, config, deps: { externalAuth } });
  ldap = await startDirectory(t.db, secretBox);
  // The fixture's groups are groupOfNames listing members by DN: kept that plain, whatever the preset says.
  const [plain] = await t.db
    .update(directories)
    .set({ groupFilter: "(objectClass=groupOfNames)", attrMember: "member", memberValues: "dn" })
    .where(eq(directories.id, ldap.directory.id))
    .returning();
  assert.ok(plain);
  ldap.directory = plain;
  // Never imported: the people the rule is about.
  for (const [uid, cn, sn] of [
    ["dora", "Dora Explorer", "Explorer"],
    ["erin", "Erin Brockovich", "Brockovich"],
  ] as const) {
    await ldap.admin.add(people(uid), {
      objectClass: "inetOrgPerson",
      uid,
      cn,
      sn,
      mail: `${uid}@example.test`,
      userPassword: `${uid}-password`,
    });
  }
  groupIds.staff = await importGroup("staff");
  groupIds.admins = (await groupNamed("admins")).id;
  await importUser(t.db, secretBox, ldap, "carol");
  await createUser(t.db, { username: "admin", role: "server_admin" });
  admin = await signedInAgent(t.app, "admin");
});
after(async () => {
  if (skip) return;
  await ldap.stop();
  await database.destroy();
});

/** Imports a group with its members and nested groups, as an import run does. */
async function importGroup(name: string): Promise<number> {
  const loaded = toLoaded(ldap.directory, secretBox);
  const done = await withDirectory(loaded.connection, async (session) => {
    const found = await findGroupEntry(session, loaded.mapping, { name });
    assert.ok(found.ok, `no group ${name}`);
    return syncGroupTree(t.db, session, loaded.mapping, ldap.directory.id, found.entry);
  });
  assert.ok(done.ok && done.value.ok, `${name} was not imported`);
  return done.value.tree.group.id;
}

async function groupNamed(name: string) {
  const [group] = await t.db.select().from(groups).where(eq(groups.name, name));
  assert.ok(group, `no group ${name}`);
  return group;
}

async function setRule(policy: SignInPolicy, ids: number[] = []) {
  await t.db
    .update(directories)
    .set({ signInPolicy: policy, signInGroupIds: ids })
    .where(eq(directories.id, ldap.directory.id));
}

async function directoryRow() {
  const [row] = await t.db.select().from(directories).where(eq(directories.id, ldap.directory.id));
  assert.ok(row);
  return row;
}

async function signIn(username: string, password: string) {
  const agent = supertest.agent(t.app);
  const page = await agent.get("/login");
  const res = await agent
    .post("/login")
    .type("form")
    .send({ username, password, _csrf: csrfTokenOf(page.text) });
  return { agent, res };
}

async function expectSignedIn(username: string, password: string, fullName: string) {
  const { agent, res } = await signIn(username, password);
  assert.equal(res.status, 303, `${username} could not sign in`);
  const home = await agent.get("/").expect(200);
  assert.match(home.text, new RegExp(`Welcome, ${fullName}`));
}

async function expectRefused(username: string, password: string) {
  const { res } = await signIn(username, password);
  assert.equal(res.status, 401, `${username} was let in`);
  assert.match(res.text, REFUSED);
}

/** The directory form as the edit page shows it for the fixture's directory, the password left blank. */
function directoryForm(overrides: Record<string, string | string[]> = {}) {
  const { defaultRoles, startTls, verifyCertificate, signInGroupIds, ...text } = formValuesOf(
    ldap.directory,
    [],
  );
  assert.equal(startTls, false);
  assert.equal(verifyCertificate, true);
  return {
    ...text,
    verifyCertificate: "on",
    bindPassword: "",
    defaultRoleId: defaultRoles.map((row) => row.roleId),
    defaultRoleScope: defaultRoles.map((row) => row.scope),
    signInGroupIds,
    ...overrides,
  };
}

const saveDirectory = (overrides: Record<string, string | string[]>) =>
  postForm(admin.agent, `/settings/directories/${ldap.directory.id}`, admin.csrf, directoryForm(overrides));

/** The message beside the group choices, as text. */
function groupsError(html: string): string {
  const match = /id="sign-in-groups-error"[^>]*>([\s\S]*?)<\/p>/.exec(html);
  return match ? decode(match[1] ?? "").replace(/^Error: /, "") : "";
}

/** The sign-in choice checked on a page, and the groups ticked. */
function checkedRule(html: string) {
  const policy = /name="signInPolicy" type="radio" value="(\w+)" checked/.exec(html)?.[1];
  const ticked = [...html.matchAll(/name="signInGroupIds" type="checkbox" value="(\d+)" checked/g)].map((m) =>
    Number(m[1]),
  );
  return { policy, ticked };
}

async function auditEntries(action: string) {
  return t.db.select().from(auditLog).where(eq(auditLog.action, action));
}

describe("who may sign in through a directory", { skip }, () => {
  test("by default only imported users: a directory user never imported is refused and not created", async () => {
    assert.equal((await directoryRow()).signInPolicy, "imported", "the default of a new directory");
    await expectRefused("dora", "dora-password");
    await expectRefused("dora@example.test", "dora-password");
    assert.equal(await userNamed(t.db, "dora"), undefined, "nobody was created");
    await expectSignedIn("carol", "carol-password", "Carol Danvers");
  });

  test("the directory's page and the list show the choice, with the directory's imported groups", async () => {
    const edit = await admin.agent.get(`/settings/directories/${ldap.directory.id}/edit`).expect(200);
    assert.match(edit.text, /<legend>Sign-in<\/legend>/);
    assert.match(edit.text, /<legend>Who may sign in through this directory<\/legend>/);
    assert.deepEqual(checkedRule(edit.text), { policy: "imported", ticked: [] });
    assert.match(edit.text, /<label for="field-signInPolicy">Only imported users can sign in<\/label>/);
    assert.match(
      edit.text,
      /<label for="field-signInPolicy-groups">Members of these imported groups<\/label>/,
    );
    assert.match(
      edit.text,
      /<label for="field-signInPolicy-anyone">Anyone matching the user filter \(created at first sign-in, with the default roles\)<\/label>/,
    );
    assert.match(edit.text, /<legend>Imported groups whose members may sign in<\/legend>/);
    assert.match(
      edit.text,
      new RegExp(`value="${groupIds.admins}"[^>]*>\\s*<label for="[^"]+">admins</label>`),
    );
    assert.match(
      edit.text,
      new RegExp(`value="${groupIds.staff}"[^>]*>\\s*<label for="[^"]+">staff</label>`),
    );
    const list = await admin.agent.get("/settings/directories").expect(200);
    assert.match(decode(list.text), /Sign-in: Only imported users/);
  });

  test("a new directory starts with only imported users, and has no groups to choose yet", async () => {
    const page = await admin.agent.get("/settings/directories/new").expect(200);
    assert.deepEqual(checkedRule(page.text), { policy: "imported", ticked: [] });
    assert.match(page.text, /No group has been imported from this directory yet\./);
  });

  test("saving the groups choice without JavaScript redirects, is audited once, and is shown", async () => {
    await setRule("imported");
    await t.db.delete(auditLog);
    const res = await saveDirectory({ signInPolicy: "groups", signInGroupIds: [String(groupIds.staff)] });
    assert.equal(res.headers.location, "/settings/directories");
    const list = await follow(admin.agent, res);
    assert.equal(flashOf(list.text), `success: Saved the directory “${ldap.directory.name}”.`);
    assert.match(decode(list.text), /Sign-in: Members of staff/);
    const row = await directoryRow();
    assert.equal(row.signInPolicy, "groups");
    assert.deepEqual(row.signInGroupIds, [groupIds.staff]);
    const [entry, ...more] = await auditEntries("directory.sign_in_changed");
    assert.equal(more.length, 0);
    assert.equal(entry?.actorName, "admin");
    assert.equal(entry?.targetName, ldap.directory.name);
    assert.deepEqual(entry?.details, {
      from: { policy: "imported" },
      to: { policy: "groups", groups: ["staff"] },
    });
    assert.equal((await auditEntries("directory.update")).length, 0, "nothing else changed");
    const edit = await admin.agent.get(`/settings/directories/${ldap.directory.id}/edit`).expect(200);
    assert.deepEqual(checkedRule(edit.text), { policy: "groups", ticked: [groupIds.staff] });
    const log = await admin.agent.get("/settings/audit-log?action=directory.sign_in_changed").expect(200);
    assert.match(decode(log.text), /Who may sign in changed/);

    await saveDirectory({ signInPolicy: "imported", signInGroupIds: [String(groupIds.staff)] }).expect(303);
    assert.deepEqual(await directoryRow().then((r) => [r.signInPolicy, r.signInGroupIds]), ["imported", []]);
    assert.equal((await auditEntries("directory.sign_in_changed")).length, 2);
  });

  test("an unknown group, another directory's group, or no group at all is answered beside the field", async () => {
    await setRule("imported");
    const other = await makeDirectory(t.db, "Other LDAP", { baseDn: "dc=other,dc=test" });
    const foreign = await makeGroup(t.db, {
      name: "other-staff",
      kind: "external",
      directoryId: other.id,
      externalId: "other-staff",
    });
    const cases: [string[], RegExp][] = [
      [["999999"], /^Choose groups imported from this directory: one of those chosen is not/],
      [[String(groupIds.staff), String(foreign.id)], /^Choose groups imported from this directory/],
      [["staff"], /^Choose groups from the list\.$/],
      [[], /^Choose at least one imported group, or another option\.$/],
    ];
    for (const [ids, message] of cases) {
      const res = await saveDirectory({ signInPolicy: "groups", signInGroupIds: ids }).expect(422);
      assert.match(groupsError(res.text), message, ids.join(","));
      assert.match(res.text, /<a href="#field-signInGroupIds">/, "the summary links to the choices");
      assert.equal(checkedRule(res.text).policy, "groups", "the choice is kept");
    }
    const bad = await saveDirectory({ signInPolicy: "everyone" }).expect(422);
    assert.match(bad.text, /Choose who may sign in through this directory\./);
    assert.equal((await directoryRow()).signInPolicy, "imported", "nothing was saved");
    await t.db.delete(groups).where(eq(groups.id, foreign.id));
    await t.db.delete(directories).where(eq(directories.id, other.id));
  });

  test("members of a chosen group sign in, directly or through a nested group; others are refused", async () => {
    await setRule("groups", [groupIds.staff]);
    await expectSignedIn("alice", "alice-password", "Alice Liddell");
    await expectSignedIn("bob", "bob-password", "Bob Builder"); // in admins, nested in staff
    await expectRefused("carol", "carol-password"); // imported, in no chosen group
    await expectRefused("dora", "dora-password"); // never imported
    assert.equal(await userNamed(t.db, "dora"), undefined);

    await setRule("groups", [groupIds.admins]);
    await expectSignedIn("bob", "bob-password", "Bob Builder");
    await expectRefused("alice", "alice-password"); // staff holds admins, not the other way round
  });

  test("anyone matching the user filter: created at first sign-in with the default roles, and audited", async () => {
    await setRule("anyone");
    const viewer = await roleId(t.db, "viewer");
    await t.db
      .insert(directoryDefaultRoles)
      .values({ directoryId: ldap.directory.id, roleId: viewer, scope: "" });
    try {
      await expectSignedIn("dora", "dora-password", "Dora Explorer");
      const dora = await userNamed(t.db, "dora");
      assert.ok(dora);
      assert.equal(dora.kind, "external");
      assert.equal(dora.directoryId, ldap.directory.id);
      assert.match(dora.externalId ?? "", /^[0-9a-f-]{36}$/, "keyed on entryUUID, as an import keys it");
      assert.equal(dora.email, "dora@example.test");
      assert.equal(dora.passwordHash, null);
      const roles = await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, dora.id));
      assert.deepEqual(
        roles.map((r) => [r.roleId, r.scope]),
        [[viewer, ""]],
      );
      const [created, ...more] = await auditEntries("user.create_at_sign_in");
      assert.equal(more.length, 0);
      assert.equal(created?.actorName, "dora");
      assert.equal(created?.targetId, String(dora.id));
      assert.deepEqual(created?.details, {
        directory: ldap.directory.name,
        dn: people("dora"),
        defaultRoles: ["Viewer"],
      });

      await expectSignedIn("dora", "dora-password", "Dora Explorer");
      const doras = await t.db.select().from(users).where(eq(users.usernameKey, "dora"));
      assert.equal(doras.length, 1, "the second sign-in is the same user");
      assert.equal((await auditEntries("user.create_at_sign_in")).length, 1);
      // Imported users still sign in as before.
      await expectSignedIn("carol", "carol-password", "Carol Danvers");
    } finally {
      await t.db
        .delete(directoryDefaultRoles)
        .where(
          and(
            eq(directoryDefaultRoles.directoryId, ldap.directory.id),
            eq(directoryDefaultRoles.roleId, viewer),
          ),
        );
    }
  });

  test("a wrong password never creates a user, and is answered as an unknown name", async () => {
    await setRule("anyone");
    await expectRefused("erin", "not-erins-password");
    await expectRefused("erin", " ");
    await expectRefused("nobody-at-all", "whatever-password");
    await expectRefused("twin", "twin-password"); // two entries: nobody can tell which
    await expectRefused("e*", "erin-password");
    assert.equal(await userNamed(t.db, "erin"), undefined);
    assert.equal(await userNamed(t.db, "twin"), undefined);
    assert.equal(await userNamed(t.db, "e*"), undefined);
    assert.doesNotMatch(t.logs.join(""), /not-erins-password|erin-password/);
  });

  test("the group list can be searched; with htmx only the section comes back, with the choices not saved yet", async () => {
    await setRule("imported");
    const url = `/settings/directories/${ldap.directory.id}/edit`;
    const page = await admin.agent.get(`${url}?groups=adm`).expect(200);
    assert.match(page.text, /^<!doctype html>/);
    assert.match(page.text, new RegExp(`name="signInGroupIds" type="checkbox" value="${groupIds.admins}"`));
    assert.doesNotMatch(
      page.text,
      new RegExp(`name="signInGroupIds" type="checkbox" value="${groupIds.staff}"`),
    );
    assert.match(page.text, /<form id="sign-in-group-search" method="get"/);
    assert.match(page.text, /name="groups" type="search" form="sign-in-group-search" value="adm"/);

    const query = `groups=adm&signInPolicy=groups&signInGroupIds=${groupIds.staff}`;
    const section = await admin.agent
      .get(`${url}?${query}`)
      .set("HX-Request", "true")
      .set("HX-Request-Type", "partial")
      .expect(200);
    assert.match(section.text, /^<fieldset class="form-section" id="sign-in">/);
    assert.doesNotMatch(section.text, /<html|<form/);
    assert.deepEqual(checkedRule(section.text), { policy: "groups", ticked: [groupIds.staff] });
    assert.match(
      section.text,
      new RegExp(`name="signInGroupIds" type="checkbox" value="${groupIds.admins}"`),
      "admins is found (and not ticked)",
    );
    assert.equal((await directoryRow()).signInPolicy, "imported", "searching saves nothing");
  });
});
