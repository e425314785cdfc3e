import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq } from "drizzle-orm";
import { groupMembers, groupSubgroups, groups, users } from "../../src/db/schema.ts";
import { nameKey, searchTextOf } from "../../src/services/names.ts";
import {
  createTestAppWithAdmin,
  createUser,
  type SignedInAgent,
  signedInAgent,
  type TestApp,
} from "../helpers/app.ts";
import {
  addToGroup,
  lastAudit,
  makeDirectory,
  makeExternalUser,
  makeGroup,
  nestGroup,
  roleId,
} from "../helpers/console.ts";
import { asFragment, decode, flashOf, follow, postForm } from "../helpers/http.ts";

let t: TestApp;
let admin: SignedInAgent;

before(async () => {
  ({ t, admin } = await createTestAppWithAdmin());
});
after(() => t.close());

async function groupNamed(name: string) {
  const [group] = await t.db
    .select()
    .from(groups)
    .where(eq(groups.nameKey, nameKey(name)));
  return group;
}

async function isMember(groupId: number, userId: number) {
  const rows = await t.db
    .select()
    .from(groupMembers)
    .where(and(eq(groupMembers.groupId, groupId), eq(groupMembers.userId, userId)));
  return rows.length === 1;
}

describe("creating and editing internal groups", () => {
  test("creates a group and lands on its page", async () => {
    const res = await postForm(admin.agent, "/groups", admin.csrf, {
      name: "Research & Development",
      description: "The lab",
    }).expect(303);
    const group = await groupNamed("research & development");
    assert.ok(group);
    assert.equal(group.kind, "internal");
    assert.equal(res.headers.location, `/groups/${group.id}`);
    const page = await follow(admin.agent, res);
    assert.match(flashOf(page.text), /Group Research & Development was created/);
    assert.equal((await lastAudit(t.db))?.action, "group.create");
  });

  test("refuses a blank name, a control character, and a name taken in another case", async () => {
    await makeGroup(t.db, { name: "Existing" });
    for (const [name, message] of [
      ["", "Enter a name."],
      ["bad\u0007name", "can&#39;t contain control characters"],
      ["EXISTING", "Another group already has this name."],
    ]) {
      const res = await postForm(admin.agent, "/groups", admin.csrf, { name: name ?? "" }).expect(422);
      assert.match(res.text, /There is a problem/);
      assert.match(res.text, new RegExp(`id="field-name-error"[^>]*>.*${message}`, "s"));
    }
  });

  test("renames an internal group and records the change", async () => {
    const group = await makeGroup(t.db, { name: "Old Team" });
    await postForm(admin.agent, `/groups/${group.id}`, admin.csrf, {
      name: "New Team",
      description: "Renamed",
    }).expect(303);
    const saved = await groupNamed("new team");
    assert.equal(saved?.id, group.id);
    assert.equal(saved?.searchText, "new team\nrenamed");
    const audit = await lastAudit(t.db);
    assert.equal(audit?.action, "group.update");
    assert.deepEqual((audit?.details as { changes: { name: unknown } } | undefined)?.changes.name, [
      "Old Team",
      "New Team",
    ]);
  });
});

describe("members", () => {
  test("lists members 50 at a time; the next page comes as a fragment for htmx", async () => {
    const group = await makeGroup(t.db, { name: "Big" });
    const rows = Array.from({ length: 60 }, (_, i) => {
      const username = `member-${String(i).padStart(2, "0")}`;
      return {
        kind: "internal" as const,
        username,
        usernameKey: username,
        searchText: searchTextOf(username),
      };
    });
    const created = await t.db.insert(users).values(rows).returning({ id: users.id });
    await t.db.insert(groupMembers).values(created.map((u) => ({ groupId: group.id, userId: u.id })));
    const page = await admin.agent.get(`/groups/${group.id}`).expect(200);
    assert.match(decode(page.text), /Members \(60\)/);
    assert.match(page.text, /member-49/);
    assert.doesNotMatch(page.text, /member-50/);
    const next = /id="members-next" href="([^"]+)"/.exec(page.text)?.[1]?.replace(/&amp;/g, "&");
    assert.ok(next);
    const full = await admin.agent.get(next).expect(200);
    assert.match(full.text, /^<!doctype html>/);
    const part = await asFragment(admin.agent.get(next), "section#group-members").expect(200);
    assert.match(part.text, /^\s*<section id="group-members"/);
    assert.doesNotMatch(part.text, /<html/);
    assert.match(part.text, /member-50/);
    assert.match(part.text, /member-59/);
    assert.doesNotMatch(part.text, /member-49/);
    assert.doesNotMatch(part.text, /id="members-next"/);
  });

  test("the member picker searches users without JavaScript and as a fragment", async () => {
    const group = await makeGroup(t.db, { name: "Pickers" });
    await createUser(t.db, { username: "pick-me", fullName: "Pick Me" });
    const full = await admin.agent.get(`/groups/${group.id}/members/new?q=pick-me`).expect(200);
    assert.match(full.text, /^<!doctype html>/);
    assert.match(full.text, /<input type="checkbox" id="user-\d+" name="user" value="\d+">/);
    const part = await asFragment(
      admin.agent.get(`/groups/${group.id}/members/new?q=PICK-ME`),
      "div#picker-options",
    ).expect(200);
    assert.match(part.text, /^\s*<div id="picker-options"/);
    assert.match(part.text, /pick-me/);
    assert.doesNotMatch(part.text, /admin/);
  });

  test("adds the chosen users once, reports those already in, and removes one", async () => {
    const group = await makeGroup(t.db, { name: "Adders" });
    const a = await createUser(t.db, { username: "add-a" });
    const b = await createUser(t.db, { username: "add-b" });
    await addToGroup(t.db, group.id, a.id);
    const res = await postForm(admin.agent, `/groups/${group.id}/members`, admin.csrf, {
      user: [String(a.id), String(b.id)],
    }).expect(303);
    assert.match(
      flashOf((await follow(admin.agent, res)).text),
      /add-b was added to Adders\. add-a was already in it/,
    );
    assert.ok(await isMember(group.id, b.id));
    assert.equal((await lastAudit(t.db))?.action, "group.member_add");
    const none = await postForm(admin.agent, `/groups/${group.id}/members`, admin.csrf, {}).expect(422);
    assert.match(none.text, /Choose at least one user/);
    const removed = await postForm(
      admin.agent,
      `/groups/${group.id}/members/${a.id}/delete`,
      admin.csrf,
    ).expect(303);
    assert.match(flashOf((await follow(admin.agent, removed)).text), /add-a was removed from Adders/);
    assert.equal(await isMember(group.id, a.id), false);
    assert.equal((await lastAudit(t.db))?.action, "group.member_remove");
  });

  test("an external group's membership is read-only", async () => {
    const directory = await makeDirectory(t.db, "Groups LDAP");
    const group = await makeGroup(t.db, {
      name: "LDAP Team",
      kind: "external",
      directoryId: directory.id,
      externalId: "g1",
    });
    const member = await makeExternalUser(t.db, { username: "ldap-member", directoryId: directory.id });
    await addToGroup(t.db, group.id, member.id);
    const page = await admin.agent.get(`/groups/${group.id}`).expect(200);
    assert.doesNotMatch(page.text, /Add members/);
    assert.doesNotMatch(page.text, /members\/\d+\/delete/);
    assert.match(page.text, /Membership comes from the directory/);
    assert.match(page.text, /Synchronize now/);
    const outsider = await createUser(t.db, { username: "outsider" });
    const add = await postForm(admin.agent, `/groups/${group.id}/members`, admin.csrf, {
      user: String(outsider.id),
    });
    assert.match(flashOf((await follow(admin.agent, add)).text), /come from its directory/);
    assert.equal(await isMember(group.id, outsider.id), false);
    const remove = await postForm(admin.agent, `/groups/${group.id}/members/${member.id}/delete`, admin.csrf);
    assert.match(flashOf((await follow(admin.agent, remove)).text), /come from its directory/);
    assert.ok(await isMember(group.id, member.id));
    await admin.agent.get(`/groups/${group.id}/members/new`).expect(303);
  });
});

describe("subgroups", () => {
  test("adds a subgroup, refuses a cycle, and removes it", async () => {
    const outer = await makeGroup(t.db, { name: "Outer Ring" });
    const inner = await makeGroup(t.db, { name: "Inner Ring" });
    const picker = await admin.agent.get(`/groups/${outer.id}/subgroups/new?q=ring`).expect(200);
    assert.match(picker.text, new RegExp(`<input type="radio" id="subgroup-${inner.id}"`));
    assert.doesNotMatch(picker.text, new RegExp(`id="subgroup-${outer.id}"`), "not itself");
    const res = await postForm(admin.agent, `/groups/${outer.id}/subgroups`, admin.csrf, {
      subgroup: String(inner.id),
    }).expect(303);
    assert.match(
      flashOf((await follow(admin.agent, res)).text),
      /Inner Ring is now a subgroup of Outer Ring/,
    );
    const cycle = await postForm(admin.agent, `/groups/${inner.id}/subgroups`, admin.csrf, {
      subgroup: String(outer.id),
    }).expect(422);
    assert.match(cycle.text, /Outer Ring already contains Inner Ring/);
    const self = await postForm(admin.agent, `/groups/${inner.id}/subgroups`, admin.csrf, {
      subgroup: String(inner.id),
    }).expect(422);
    assert.match(self.text, /can(&#39;|')t be a subgroup of itself/);
    const page = await admin.agent.get(`/groups/${inner.id}`).expect(200);
    assert.match(decode(page.text), /Inside Outer Ring/);
    await postForm(admin.agent, `/groups/${outer.id}/subgroups/${inner.id}/delete`, admin.csrf).expect(303);
    const left = await t.db.select().from(groupSubgroups).where(eq(groupSubgroups.parentId, outer.id));
    assert.equal(left.length, 0);
    assert.equal((await lastAudit(t.db))?.action, "group.subgroup_remove");
  });
});

describe("roles through groups", () => {
  test("a role given to a group reaches members of its subgroups, and leaves when they do", async () => {
    const staff = await makeGroup(t.db, { name: "Staff" });
    const helpdesk = await makeGroup(t.db, { name: "Helpdesk" });
    const tier1 = await makeGroup(t.db, { name: "Tier 1" });
    await nestGroup(t.db, staff.id, helpdesk.id);
    await nestGroup(t.db, helpdesk.id, tier1.id);
    const newbie = await createUser(t.db, { username: "newbie" });
    await addToGroup(t.db, tier1.id, newbie.id);
    const agent = (await signedInAgent(t.app, "newbie")).agent;
    await agent.get("/users").expect(403);
    await postForm(admin.agent, `/groups/${staff.id}/role-assignments`, admin.csrf, {
      roleId: String(await roleId(t.db, "user_manager")),
      scope: "",
    }).expect(303);
    await agent.get("/users").expect(200);
    const userPage = await admin.agent.get(`/users/${newbie.id}`).expect(200);
    assert.match(decode(userPage.text), /User Manager Global Through Staff/);
    assert.doesNotMatch(
      userPage.text,
      /role-assignments\/\d+\/delete/,
      "inherited roles are removed on the group",
    );
    await postForm(admin.agent, `/groups/${staff.id}/subgroups/${helpdesk.id}/delete`, admin.csrf).expect(
      303,
    );
    await agent.get("/users").expect(403);
  });
});

describe("adding the selected users to a group", () => {
  test("offers internal groups only, as a page and as a fragment", async () => {
    const user = await createUser(t.db, { username: "joiner" });
    const directory = await makeDirectory(t.db, "Other LDAP");
    await makeGroup(t.db, { name: "Joinable" });
    await makeGroup(t.db, {
      name: "Joinable LDAP",
      kind: "external",
      directoryId: directory.id,
      externalId: "j",
    });
    const full = await admin.agent.get(`/group-memberships/new?user=${user.id}&q=joinable`).expect(200);
    assert.match(decode(full.text), /Adding 1 user: joiner/);
    assert.match(full.text, /Joinable<\/label>/);
    assert.doesNotMatch(full.text, /Joinable LDAP/);
    const part = await asFragment(
      admin.agent.get(`/group-memberships/new?user=${user.id}&q=joinable`),
      "div#membership-options",
    ).expect(200);
    assert.match(part.text, /^\s*<div id="membership-options"/);
    assert.match(part.text, /Joinable/);
  });

  test("adds them and lands on the group", async () => {
    const a = await createUser(t.db, { username: "joiner-a" });
    const b = await createUser(t.db, { username: "joiner-b" });
    const group = await makeGroup(t.db, { name: "Landing" });
    const res = await postForm(admin.agent, "/group-memberships", admin.csrf, {
      group: String(group.id),
      user: [String(a.id), String(b.id)],
    }).expect(303);
    assert.equal(res.headers.location, `/groups/${group.id}#group-members`);
    assert.match(flashOf((await follow(admin.agent, res)).text), /joiner-a, joiner-b were added to Landing/);
    assert.ok(await isMember(group.id, a.id));
    const noGroup = await postForm(admin.agent, "/group-memberships", admin.csrf, {
      user: String(a.id),
    }).expect(422);
    assert.match(noGroup.text, /Choose a group/);
  });
});
