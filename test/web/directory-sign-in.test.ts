import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import supertest from "supertest";
import { directories, roleAssignments, users } from "../../src/db/schema.ts";
import { createDirectoryAuthenticator } from "../../src/services/directory-sign-in.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { createTestApp, csrfTokenOf, type TestApp, testConfig } from "../helpers/app.ts";
import { lastAudit, makeExternalUser, roleId, userNamed } from "../helpers/console.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";
import {
  type DirectoryFixture,
  importUser,
  people,
  replaceAttribute,
  startDirectory,
} from "../helpers/directory-fixture.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";

const skip = skipWithoutSlapd;

let database: TestDatabase;
let t: TestApp;
let ldap: DirectoryFixture;
const config = testConfig();
const secretBox = createSecretBox(config.encryptionKey);

before(async () => {
  if (skip) return;
  database = await createTestDatabase();
  const externalAuth = createDirectoryAuthenticator({ db: database.db, secretBox });
  t = await createTestApp({ database, config, deps: { externalAuth } });
  ldap = await startDirectory(t.db, secretBox);
  for (const username of ["alice", "bob", "carol", "zoë"]) {
    const user = await importUser(t.db, secretBox, ldap, username);
    await t.db
      .insert(roleAssignments)
      .values({ roleId: await roleId(t.db, "user_manager"), userId: user.id });
  }
});
after(async () => {
  if (skip) return;
  await ldap.stop();
  await database.destroy();
});

async function signIn(username: string, password: string) {
  const agent = supertest.agent(t.app);
  const page = await agent.get("/login");
  const res = await agent
    .post("/login")
    .type("form")
    .send({ username, password, _csrf: csrfTokenOf(page.text) });
  return { agent, res };
}

const REFUSED = /The username or password is not correct\./;

describe("signing in with the directory password", { skip }, () => {
  test("the right password signs in, refreshes the synced fields and records the sign-in", async () => {
    await replaceAttribute(ldap.admin, people("alice"), "cn", ["Alice Pleasance Liddell"]);
    const { agent, res } = await signIn("alice", "alice-password");
    assert.equal(res.status, 303);
    assert.equal(res.headers.location, "/");
    const home = await agent.get("/").expect(200);
    assert.match(home.text, /Welcome, Alice Pleasance Liddell/);
    const alice = await userNamed(t.db, "alice");
    assert.equal(alice?.fullName, "Alice Pleasance Liddell");
    assert.ok(alice?.lastLoginAt);
    assert.ok(alice?.lastSyncedAt);
    assert.equal(alice?.passwordHash, null, "Roster never stores a directory password");
  });

  test("the username is matched case-insensitively, Unicode included", async () => {
    assert.equal((await signIn("ALICE", "alice-password")).res.status, 303);
    assert.equal((await signIn("ZOË", "zoe-password")).res.status, 303);
  });

  test("a wrong password gets the same answer as an unknown user", async () => {
    const wrong = await signIn("bob", "not-bobs-password");
    const unknown = await signIn("nobody-at-all", "whatever-password");
    assert.equal(wrong.res.status, 401);
    assert.equal(unknown.res.status, 401);
    assert.match(wrong.res.text, REFUSED);
    assert.match(unknown.res.text, REFUSED);
    assert.equal((await userNamed(t.db, "bob"))?.enabled, true, "a wrong password changes nothing");
  });

  test("an empty-looking password never becomes an anonymous bind", async () => {
    const res = await signIn("bob", " ");
    assert.equal(res.res.status, 401);
  });

  test("a disabled user can't sign in, even with the right password", async () => {
    await t.db.update(users).set({ enabled: false }).where(eq(users.username, "carol"));
    try {
      const { res } = await signIn("carol", "carol-password");
      assert.equal(res.status, 401);
      assert.match(res.text, REFUSED);
    } finally {
      await t.db.update(users).set({ enabled: true }).where(eq(users.username, "carol"));
    }
  });

  test("a user the directory had disabled and has enabled again signs in at the first try", async () => {
    // Roster last saw carol's account disabled in the directory; it is enabled there now.
    await t.db
      .update(users)
      .set({ enabled: false, disabledByDirectory: true })
      .where(eq(users.username, "carol"));
    const { res } = await signIn("carol", "carol-password");
    assert.equal(res.status, 303);
    assert.equal((await userNamed(t.db, "carol"))?.enabled, true);
  });

  test("a user whose entry was deleted can't sign in, and is disabled (not deleted) with its roles kept", async () => {
    const user = await importUser(t.db, secretBox, ldap, "twin").catch(() => null);
    assert.equal(user, null, "two entries with uid=twin can't be imported by username");
    await ldap.admin.del(people("bob"));
    const { res } = await signIn("bob", "bob-password");
    assert.equal(res.status, 401);
    assert.match(res.text, REFUSED);
    const bob = await userNamed(t.db, "bob");
    assert.ok(bob, "never deleted");
    assert.equal(bob.enabled, false);
    assert.equal(bob.missingInDirectory, true);
    const kept = await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, bob.id));
    assert.equal(kept.length, 1);
    const audit = await lastAudit(t.db);
    assert.equal(audit?.action, "user.missing_in_directory");
    assert.equal(audit?.actorName, "system");
  });

  test("filter metacharacters in a username match nothing but themselves", async () => {
    for (const username of ["al*", "*", "a*)(uid=*", "alice)(|(uid=*"]) {
      await makeExternalUser(t.db, {
        username,
        directoryId: ldap.directory.id,
        externalId: `not-an-entry-${username}`,
        dn: `uid=${username.replace(/[*()]/g, "x")},ou=nowhere,dc=example,dc=test`,
      });
      const { res } = await signIn(username, "alice-password");
      assert.equal(res.status, 401, username);
      const user = await userNamed(t.db, username);
      assert.equal(user?.missingInDirectory, true, `${username} found no entry`);
    }
    assert.equal((await userNamed(t.db, "alice"))?.enabled, true, "alice is untouched");
  });

  test("only the user's own directory vouches for it, and only while that directory is enabled", async () => {
    await t.db.update(directories).set({ enabled: false }).where(eq(directories.id, ldap.directory.id));
    try {
      assert.equal((await signIn("alice", "alice-password")).res.status, 401);
    } finally {
      await t.db.update(directories).set({ enabled: true }).where(eq(directories.id, ldap.directory.id));
    }
    assert.equal((await signIn("alice", "alice-password")).res.status, 303);
  });

  test("disabling the directory ends its users' sessions; its users are not changed", async () => {
    const { agent, res } = await signIn("alice", "alice-password");
    assert.equal(res.status, 303);
    await agent.get("/").expect(200);
    await t.db.update(directories).set({ enabled: false }).where(eq(directories.id, ldap.directory.id));
    try {
      const next = await agent.get("/users");
      assert.equal(next.status, 303);
      assert.match(next.headers.location ?? "", /^\/login\?returnTo=/);
      assert.equal((await userNamed(t.db, "alice"))?.enabled, true);
    } finally {
      await t.db.update(directories).set({ enabled: true }).where(eq(directories.id, ldap.directory.id));
    }
    assert.equal((await agent.get("/users")).status, 303, "signed out for good, not only while it was off");
  });

  test("an unreachable directory refuses the sign-in without disabling anyone", async () => {
    await t.db
      .update(directories)
      .set({ urls: ["ldap://127.0.0.1:1"] })
      .where(eq(directories.id, ldap.directory.id));
    try {
      assert.equal((await signIn("alice", "alice-password")).res.status, 401);
      assert.equal((await userNamed(t.db, "alice"))?.enabled, true);
      assert.equal((await userNamed(t.db, "alice"))?.missingInDirectory, false);
    } finally {
      await t.db
        .update(directories)
        .set({ urls: [ldap.server.url] })
        .where(eq(directories.id, ldap.directory.id));
    }
  });

  test("no password is ever written to the log", async () => {
    await signIn("alice", "alice-password");
    await signIn("alice", "wrong-secret-value");
    const logs = t.logs.join("");
    assert.doesNotMatch(logs, /alice-password|wrong-secret-value/);
    assert.doesNotMatch(logs, new RegExp(ldap.server.servicePassword));
  });
});
