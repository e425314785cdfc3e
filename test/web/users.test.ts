import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import supertest from "supertest";
import { sessions } from "../../src/db/schema.ts";
import { verifyPassword } from "../../src/services/passwords.ts";
import {
  createTestAppWithAdmin,
  createUser,
  csrfTokenOf,
  type SignedInAgent,
  signedInAgent,
  type TestApp,
} from "../helpers/app.ts";
import { lastAudit, makeDirectory, makeExternalUser, userNamed } from "../helpers/console.ts";
import { decode, flashOf, follow, postForm } from "../helpers/http.ts";

let t: TestApp;
let admin: SignedInAgent;

before(async () => {
  ({ t, admin } = await createTestAppWithAdmin());
  await createUser(t.db, { username: "manager", role: "user_manager" });
});
after(() => t.close());

describe("creating internal users", () => {
  test("creates a user with a Unicode username and lands on its page", async () => {
    const res = await postForm(admin.agent, "/users", admin.csrf, {
      username: "Łukasz",
      fullName: "Łukasz Wójcik",
      email: "lukasz@example.test",
      department: "Research",
      phone: "+48 22 555 0100",
      password: "a long enough password",
      passwordConfirmation: "a long enough password",
    }).expect(303);
    const user = await userNamed(t.db, "łukasz");
    assert.ok(user);
    assert.equal(res.headers.location, `/users/${user.id}`);
    assert.equal(user.kind, "internal");
    assert.equal(user.department, "Research");
    assert.ok(await verifyPassword(user.passwordHash ?? "", "a long enough password"));
    const page = await follow(admin.agent, res);
    assert.match(flashOf(page.text), /User Łukasz was created/);
    assert.match(decode(page.text), /Internal user Can sign in/);
    const audit = await lastAudit(t.db);
    assert.equal(audit?.action, "user.create");
    assert.equal(audit?.targetName, "Łukasz");
    assert.equal(audit?.actorName, "admin");
  });

  for (const [username, message] of [
    ["bad/name", "Usernames can&#39;t contain “/”"],
    ["semi;colon", "Usernames can&#39;t contain “;”"],
    ["amp&er", "Usernames can&#39;t contain “&amp;”"],
    ["per%cent", "Usernames can&#39;t contain “%”"],
    ["tab\tname", "Usernames can&#39;t contain spaces"],
    ["bell\u0007", "Usernames can&#39;t contain control characters"],
    ["", "Enter a username"],
  ] as const) {
    test(`refuses the username ${JSON.stringify(username)} with 422 and says why beside the field`, async () => {
      const res = await postForm(admin.agent, "/users", admin.csrf, {
        username,
        password: "a long enough password",
        passwordConfirmation: "a long enough password",
      }).expect(422);
      assert.match(res.text, /There is a problem/);
      assert.match(res.text, new RegExp(`id="field-username-error"[^>]*>.*${message}`, "s"));
      assert.match(res.text, /aria-describedby="field-username-hint field-username-error"/);
    });
  }

  test("refuses a username taken in another letter case, keeping what was typed but never the password", async () => {
    await createUser(t.db, { username: "Taken" });
    const res = await postForm(admin.agent, "/users", admin.csrf, {
      username: "TAKEN",
      fullName: "Someone Else",
      password: "a long enough password",
      passwordConfirmation: "a long enough password",
    }).expect(422);
    assert.match(res.text, /Another user already has this username/);
    assert.match(res.text, /value="Someone Else"/);
    assert.doesNotMatch(res.text, /a long enough password/);
  });

  test("refuses a short or mismatched password and a malformed email", async () => {
    const res = await postForm(admin.agent, "/users", admin.csrf, {
      username: "newbie",
      email: "not-an-email",
      password: "short",
      passwordConfirmation: "other",
    }).expect(422);
    assert.match(res.text, /id="field-email-error"[^>]*>.*Enter an email address/s);
    assert.match(res.text, /id="field-password-error"[^>]*>.*Use at least 12 characters/s);
    assert.equal(await userNamed(t.db, "newbie"), undefined);
  });

  test("the new-user page has every field labelled and the CSRF field", async () => {
    const res = await admin.agent.get("/users/new").expect(200);
    for (const label of [
      "Username",
      "Full name",
      "Email",
      "Department",
      "Phone",
      "Password",
      "Confirm password",
    ]) {
      assert.match(res.text, new RegExp(`<label for="field-\\w+">${label}`));
    }
    assert.match(res.text, /name="_csrf"/);
  });
});

describe("user details", () => {
  test("an internal user's details are editable, all but the username", async () => {
    const user = await createUser(t.db, { username: "editme", fullName: "Old Name" });
    const page = await admin.agent.get(`/users/${user.id}`).expect(200);
    assert.match(page.text, /<input id="field-fullName" name="fullName" type="text" value="Old Name"/);
    assert.doesNotMatch(page.text, /name="username"/);
    const res = await postForm(admin.agent, `/users/${user.id}`, admin.csrf, {
      fullName: "New Name",
      email: "new@example.test",
      department: "Sales",
      phone: "123",
      username: "hijacked",
    }).expect(303);
    const saved = await userNamed(t.db, "editme");
    assert.equal(saved?.fullName, "New Name");
    assert.equal(saved?.department, "Sales");
    // The email's local part "new" is in "new name"; the whole email follows the tab.
    assert.equal(saved?.searchText, "editme\nnew name\tnew@example.test");
    assert.equal(await userNamed(t.db, "hijacked"), undefined);
    assert.match(flashOf((await follow(admin.agent, res)).text), /editme's details were saved/);
    const audit = await lastAudit(t.db);
    assert.equal(audit?.action, "user.update");
    assert.deepEqual((audit?.details as { changes: Record<string, unknown> } | undefined)?.changes.fullName, [
      "Old Name",
      "New Name",
    ]);
  });

  test("re-renders the details with 422 when the email is malformed", async () => {
    const user = await createUser(t.db, { username: "bademail" });
    const res = await postForm(admin.agent, `/users/${user.id}`, admin.csrf, { email: "nope" }).expect(422);
    assert.match(res.text, /There is a problem/);
    assert.match(res.text, /value="nope"/);
  });

  test("an external user's synced fields are read-only and say where they come from", async () => {
    const directory = await makeDirectory(t.db, "Head Office AD");
    const user = await makeExternalUser(t.db, {
      username: "extern",
      directoryId: directory.id,
      fullName: "Ex Ternal",
      dn: "uid=extern,ou=people,dc=example,dc=test",
    });
    const page = await admin.agent.get(`/users/${user.id}`).expect(200);
    const text = decode(page.text);
    assert.match(text, /These fields come from Head Office AD and are read-only here/);
    assert.match(text, /DN uid=extern,ou=people,dc=example,dc=test/);
    assert.match(text, /Last synchronized Never/);
    assert.doesNotMatch(page.text, /id="account-form"/);
    assert.match(page.text, /Synchronize now/);
    const res = await postForm(admin.agent, `/users/${user.id}`, admin.csrf, { fullName: "Changed" }).expect(
      422,
    );
    assert.match(res.text, /come from the directory/);
    assert.equal((await userNamed(t.db, "extern"))?.fullName, "Ex Ternal");
  });

  test("an unknown or non-numeric user id is a 404", async () => {
    await admin.agent.get("/users/999999").expect(404);
    await admin.agent.get("/users/abc").expect(404);
    await postForm(admin.agent, "/users/999999/login-status", admin.csrf, { status: "disabled" }).expect(404);
  });
});

describe("enabling and disabling sign-in", () => {
  test("disabling a user stops its sign-in and ends its session at the next request", async () => {
    const user = await createUser(t.db, { username: "leaver", role: "viewer" });
    const leaver = await signedInAgent(t.app, "leaver");
    const res = await postForm(admin.agent, `/users/${user.id}/login-status`, admin.csrf, {
      status: "disabled",
    }).expect(303);
    assert.match(flashOf((await follow(admin.agent, res)).text), /leaver was disabled/);
    assert.equal((await userNamed(t.db, "leaver"))?.enabled, false);
    await leaver.agent.get("/").expect(303).expect("location", "/login?returnTo=%2F");
    const visitor = supertest.agent(t.app);
    const page = await visitor.get("/login");
    await visitor
      .post("/login")
      .type("form")
      .send({ username: "leaver", password: "correct horse battery staple", _csrf: csrfTokenOf(page.text) })
      .expect(401);
    assert.equal((await lastAudit(t.db))?.action, "user.disable");
    await postForm(admin.agent, `/users/${user.id}/login-status`, admin.csrf, { status: "enabled" }).expect(
      303,
    );
    assert.equal((await userNamed(t.db, "leaver"))?.enabled, true);
    assert.equal((await lastAudit(t.db))?.action, "user.enable");
  });

  test("you can't disable yourself, and the button isn't offered", async () => {
    const me = await userNamed(t.db, "admin");
    const page = await admin.agent.get(`/users/${me?.id}`).expect(200);
    assert.doesNotMatch(page.text, /Disable sign-in/);
    const res = await postForm(admin.agent, `/users/${me?.id}/login-status`, admin.csrf, {
      status: "disabled",
    });
    assert.match(flashOf((await follow(admin.agent, res)).text), /error: You can't disable your own account/);
    assert.equal((await userNamed(t.db, "admin"))?.enabled, true);
  });
});

describe("resetting a password", () => {
  test("sets an internal user's password and signs out its other sessions", async () => {
    const user = await createUser(t.db, { username: "forgetful", role: "viewer" });
    const other = await signedInAgent(t.app, "forgetful");
    const form = await admin.agent.get(`/users/${user.id}/password`).expect(200);
    assert.match(form.text, /Reset forgetful(&#39;|')s password/);
    const res = await postForm(admin.agent, `/users/${user.id}/password`, admin.csrf, {
      password: "brand new password",
      passwordConfirmation: "brand new password",
    }).expect(303);
    assert.match(flashOf((await follow(admin.agent, res)).text), /password was changed/);
    const saved = await userNamed(t.db, "forgetful");
    assert.ok(await verifyPassword(saved?.passwordHash ?? "", "brand new password"));
    await other.agent.get("/").expect(303);
    const left = await t.db.select().from(sessions);
    assert.ok(left.every((s) => (s.sess as { userId?: number }).userId !== user.id));
    assert.equal((await lastAudit(t.db))?.action, "user.password_reset");
    assert.doesNotMatch(JSON.stringify(await lastAudit(t.db)), /brand new password/);
  });

  test("re-renders with 422 when the passwords don't match", async () => {
    const user = await createUser(t.db, { username: "mismatch" });
    const res = await postForm(admin.agent, `/users/${user.id}/password`, admin.csrf, {
      password: "brand new password",
      passwordConfirmation: "brand new passw0rd",
    }).expect(422);
    assert.match(res.text, /id="field-passwordConfirmation-error"[^>]*>.*The passwords don(&#39;|')t match/s);
  });

  test("refuses for an external user, whose password the directory keeps", async () => {
    const directory = await makeDirectory(t.db, "Password Directory");
    const user = await makeExternalUser(t.db, { username: "ldapper", directoryId: directory.id });
    const res = await postForm(admin.agent, `/users/${user.id}/password`, admin.csrf, {
      password: "brand new password",
      passwordConfirmation: "brand new password",
    }).expect(422);
    assert.match(res.text, /kept by the directory/);
  });
});

describe("bulk actions on the selected users", () => {
  test("enables and disables several users and comes back to the same list", async () => {
    const a = await createUser(t.db, { username: "bulk-a" });
    const b = await createUser(t.db, { username: "bulk-b" });
    const res = await postForm(admin.agent, "/users/selection", admin.csrf, {
      action: "disable",
      user: [String(a.id), String(b.id)],
      returnTo: "/users?q=bulk-",
    }).expect(303);
    assert.equal(res.headers.location, "/users?q=bulk-");
    const page = await follow(admin.agent, res);
    assert.match(flashOf(page.text), /bulk-a, bulk-b were disabled/);
    assert.equal((await userNamed(t.db, "bulk-a"))?.enabled, false);
    assert.equal((await userNamed(t.db, "bulk-b"))?.enabled, false);
    const again = await postForm(admin.agent, "/users/selection", admin.csrf, {
      action: "enable",
      user: [String(a.id)],
    });
    assert.match(flashOf((await follow(admin.agent, again)).text), /bulk-a was enabled/);
  });

  test("sends 'add to group' and 'copy roles' on to their pickers with the selection", async () => {
    const a = await createUser(t.db, { username: "bulk-c" });
    const toGroup = await postForm(admin.agent, "/users/selection", admin.csrf, {
      action: "add-to-group",
      user: [String(a.id)],
    }).expect(303);
    assert.equal(toGroup.headers.location, `/group-memberships/new?user=${a.id}`);
    const copy = await postForm(admin.agent, "/users/selection", admin.csrf, {
      action: "copy-roles",
      user: [String(a.id)],
    }).expect(303);
    assert.equal(copy.headers.location, `/role-copies/new?to=${a.id}`);
  });

  test("says so when nothing is selected, and never redirects off-site", async () => {
    const res = await postForm(admin.agent, "/users/selection", admin.csrf, {
      action: "enable",
      returnTo: "https://evil.example/",
    }).expect(303);
    assert.equal(res.headers.location, "/users");
    assert.match(flashOf((await follow(admin.agent, res)).text), /Select at least one user first/);
  });

  test("the list offers the bulk actions in a form the row checkboxes belong to", async () => {
    const res = await admin.agent.get("/users?q=bulk-").expect(200);
    assert.match(res.text, /<form id="bulk-actions" class="bulk" method="post" action="\/users\/selection">/);
    assert.match(
      res.text,
      /<input type="checkbox" id="select-\d+" name="user" value="\d+" form="bulk-actions">/,
    );
    assert.match(res.text, /<label class="visually-hidden" for="select-\d+">Select bulk-a<\/label>/);
  });
});
