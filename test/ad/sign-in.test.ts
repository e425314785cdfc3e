/**
 * Signing in to Roster with Active Directory accounts, and "Synchronize now" on users that changed
 * in AD — against a real domain controller (Samba AD DC), through the HTTP app. The directory is
 * the Active Directory preset with only the URL, CA, bind account and base DN filled in.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Attribute, Change, Client } from "ldapts";
import { roleAssignments } from "../../src/db/schema.ts";
import { deleteUser, renameUser, setUserEnabled } from "../../src/dev/ad-fixtures.ts";
import type { Directory } from "../../src/services/directories.ts";
import { createDirectoryAuthenticator } from "../../src/services/directory-sign-in.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { createTestApp, createUser, signedInAgent, type TestApp, testConfig } from "../helpers/app.ts";
import { roleId } from "../helpers/console.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";
import { flashOf, follow, postForm } from "../helpers/http.ts";
import {
  type AdDomain,
  adConnectionFields,
  addAdDirectory,
  adSkip,
  assignmentsOf,
  formFields,
  importAdUsers,
  pageText,
  signInAs,
  startAdDomain,
  timingsOf,
  userById,
  userByName,
  withValues,
} from "./support.ts";

const REFUSED = "The username or password is not correct.";

describe("signing in with Active Directory accounts (Samba AD DC)", { skip: adSkip }, () => {
  let domain: AdDomain;
  let database: TestDatabase;
  let t: TestApp;
  let directory: Directory;
  let admin: Awaited<ReturnType<typeof signedInAgent>>;
  const config = testConfig();
  const secretBox = createSecretBox(config.encryptionKey);

  const password = (name: "alice" | "bob" | "carol" | "john") => domain.ad.named[name].password ?? "";

  async function expectRefused(username: string, typed: string) {
    const { res } = await signInAs(t.app, username, typed);
    assert.equal(res.status, 401, `${username} was not refused`);
    assert.ok(pageText(res.text).includes(REFUSED), `${username}: the neutral message is shown`);
    return res;
  }

  async function expectSignedInAs(username: string, typed: string, fullName: string) {
    const { agent, res } = await signInAs(t.app, username, typed);
    assert.equal(res.status, 303, `${username} could not sign in: ${pageText(res.text).slice(0, 300)}`);
    const home = await agent.get("/").expect(200);
    assert.match(pageText(home.text), new RegExp(`Welcome, ${fullName}`));
  }

  before(async () => {
    [domain, database] = await Promise.all([startAdDomain({ bulkUsers: 3 }), createTestDatabase()]);
    const externalAuth = createDirectoryAuthenticator({ db: database.db, secretBox });
    t = await createTestApp({ database, config, deps: { externalAuth } });
    await createUser(t.db, { username: "admin", role: "server_admin" });
    admin = await signedInAgent(t.app, "admin");
    directory = await addAdDirectory(t.db, secretBox, domain, { id: null, name: "test" });
    const bulk = domain.ad.bulkUsers.map((user) => user.sAMAccountName);
    const imported = await importAdUsers(t.db, secretBox, directory, ["alice", "bob", "carol", ...bulk]);
    const viewer = await roleId(t.db, "viewer");
    for (const user of imported.values()) {
      await t.db.insert(roleAssignments).values({ roleId: viewer, userId: user.id });
    }
  });

  after(async () => {
    await domain?.stop();
    await database?.destroy();
  });

  /** Gives a user an explicit userPrincipalName other than sAMAccountName@domain, as AD allows. */
  async function setUpn(dn: string, upn: string) {
    const { server } = domain;
    const client = new Client({ url: server.ldapsUrl, tlsOptions: { ca: server.caCertPem } });
    try {
      await client.bind(server.adminDn, server.adminPassword);
      const modification = new Attribute({ type: "userPrincipalName", values: [upn] });
      await client.modify(dn, new Change({ operation: "replace", modification }));
    } finally {
      await client.unbind().catch(() => {});
    }
  }

  test("imported users are keyed on objectGUID and carry AD's account state", async (ctx) => {
    ctx.diagnostic(timingsOf(domain));
    const alice = await userByName(database.db, "alice");
    assert.match(alice?.externalId ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(alice?.dn, domain.ad.named.alice.dn);
    assert.equal(alice?.enabled, true);
    assert.equal((await userByName(database.db, "carol"))?.enabled, false, "userAccountControl 514");
  });

  test("a user signs in with the sAMAccountName and the AD password", async () => {
    await expectSignedInAs("alice", password("alice"), "Alice Smith");
    await expectSignedInAs("ALICE", password("alice"), "Alice Smith");
  });

  test("a user signs in with the userPrincipalName, as the same Roster user", async () => {
    const before = await userByName(database.db, "alice");
    await expectSignedInAs("alice@example.test", password("alice"), "Alice Smith");
    await expectSignedInAs("Alice@Example.TEST", password("alice"), "Alice Smith");
    const after = await userById(database.db, before?.id ?? 0);
    assert.ok(after?.lastLoginAt, "alice's sign-in was recorded");
    assert.notEqual(after.lastLoginAt.getTime(), before?.lastLoginAt?.getTime());
    assert.equal(
      await userByName(database.db, "alice@example.test"),
      undefined,
      "no user of that name appeared",
    );
  });

  test("a user signs in as DOMAIN\\name with the domain's NetBIOS name only", async () => {
    await expectSignedInAs(`${domain.server.domain}\\bob`, password("bob"), "Bob Jones");
    await expectSignedInAs("example\\bob", password("bob"), "Bob Jones");
    await expectRefused("OTHER\\bob", password("bob"));
  });

  test("a wrong password and a disabled account get the same neutral message as an unknown user", async () => {
    await expectRefused("alice", "Wrong-Passw0rd!");
    await expectRefused("alice@example.test", "Wrong-Passw0rd!");
    await expectRefused("carol", password("carol"));
    await expectRefused("carol@example.test", password("carol"));
    await expectRefused("nobody@example.test", "Whatever-Passw0rd!");
    await expectRefused("nobody", "Whatever-Passw0rd!");
  });

  test("an account disabled in AD after the import can't sign in until it is enabled again", async () => {
    const bob = domain.ad.named.bob;
    await setUserEnabled(domain.server, bob.dn, false);
    try {
      await expectRefused("bob", password("bob"));
      await expectRefused("bob@example.test", password("bob"));
    } finally {
      await setUserEnabled(domain.server, bob.dn, true);
    }
    await expectSignedInAs("bob", password("bob"), "Bob Jones");
  });

  test("a userPrincipalName stands only for an imported user, and is never a filter", async () => {
    // jsmith has an AD password but was never imported.
    await expectRefused("jsmith@example.test", password("john"));
    await expectRefused("jsmith", password("john"));
    assert.equal(await userByName(database.db, "jsmith"), undefined, "signing in imports nobody");
    for (const name of ["*@example.test", "alice*@example.test", "alice@example.test)(objectClass=*"]) {
      await expectRefused(name, password("alice"));
    }
  });

  test("sAMAccountName@domain signs in a user whose explicit userPrincipalName is another", async () => {
    const john = domain.ad.named.john;
    await importAdUsers(t.db, secretBox, directory, ["jsmith"]);
    await setUpn(john.dn, "john.smith@corp.example.test");
    await expectSignedInAs("jsmith@example.test", password("john"), "John Smith");
    await expectSignedInAs("JSMITH@Example.Test", password("john"), "John Smith");
    await expectSignedInAs("john.smith@corp.example.test", password("john"), "John Smith");
    await expectRefused("jsmith@example.test", "Wrong-Passw0rd!");
    await expectRefused("jsmith@other.test", password("john"));
    await expectRefused("jsmith@corp.example.test", password("john"));
    assert.equal(await userByName(database.db, "jsmith@example.test"), undefined, "no user of that name");
    assert.ok((await userByName(database.db, "jsmith"))?.lastLoginAt, "the sign-ins were jsmith's");
  });

  test("Test connection binds as the service account given as user@domain or DOMAIN\\name", async () => {
    const page = await admin.agent.get("/settings/directories/new?preset=active_directory").expect(200);
    assert.match(page.text, /<label for="field-bindDn">Bind DN or user name<\/label>/);
    const fields = formFields(page.text, "directory-form");
    const account = domain.ad.named.service.sAMAccountName;
    for (const bindDn of [`${account}@example.test`, `${domain.server.domain}\\${account}`]) {
      const typed = { ...adConnectionFields(domain, "Example AD by name"), bindDn };
      const res = await admin.agent
        .post("/settings/directories/connection-tests")
        .type("form")
        .send(withValues(fields, typed).toString());
      assert.equal(res.status, 200, bindDn);
      assert.match(pageText(res.text), /The connection works Found \d+ users and \d+ groups/, bindDn);
    }
  });

  test("Synchronize now on a user deleted in AD disables it and keeps its roles", async () => {
    const gone = domain.ad.bulkUsers[0];
    assert.ok(gone);
    const user = await userByName(database.db, gone.sAMAccountName);
    assert.ok(user?.enabled);
    const roles = await assignmentsOf(database.db, user.id);
    assert.equal(roles.length, 1);
    await deleteUser(domain.server, gone.dn);
    const res = await postForm(admin.agent, `/users/${user.id}/synchronizations`, admin.csrf);
    const page = await follow(admin.agent, res);
    assert.match(
      flashOf(page.text),
      new RegExp(
        `^error: Example AD no longer has an entry for ${user.username}, so ${user.username} was disabled`,
      ),
    );
    const after = await userById(database.db, user.id);
    assert.equal(after?.enabled, false);
    assert.equal(after?.missingInDirectory, true);
    assert.deepEqual(await assignmentsOf(database.db, user.id), roles);
  });

  test("Synchronize now after a rename and move in AD updates the same user, roles intact", async () => {
    const before = await userByName(database.db, "bob");
    assert.ok(before);
    const roles = await assignmentsOf(database.db, before.id);
    const newDn = await renameUser(domain.server, domain.ad.named.bob.dn, {
      cn: "Robert Jones",
      parentDn: domain.ad.ou.former,
      sAMAccountName: "robert",
    });
    const res = await postForm(admin.agent, `/users/${before.id}/synchronizations`, admin.csrf);
    const message = flashOf((await follow(admin.agent, res)).text);
    assert.match(message, /^success: Synchronized with Example AD: /);
    assert.match(message, /username “bob” → “robert”/);
    const after = await userById(database.db, before.id);
    assert.equal(after?.username, "robert");
    assert.equal(after?.externalId, before.externalId);
    assert.equal(after?.dn?.toLowerCase(), newDn.toLowerCase());
    assert.deepEqual(await assignmentsOf(database.db, before.id), roles);
    assert.equal(await userByName(database.db, "bob"), undefined, "no duplicate");
    await expectSignedInAs("robert", password("bob"), "Bob Jones");
    await expectSignedInAs("robert@example.test", password("bob"), "Bob Jones");
    await expectRefused("bob@example.test", password("bob"));
  });

  test("no password is ever written to the log", async () => {
    const logs = t.logs.join("");
    for (const secret of [password("alice"), password("bob"), password("carol"), password("john")]) {
      assert.ok(!logs.includes(secret), "a password was logged");
    }
    assert.ok(!logs.includes(domain.ad.named.service.password ?? "-"), "the service password was logged");
  });
});
