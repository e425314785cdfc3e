import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq, isNull, sql } from "drizzle-orm";
import { roleAssignments, roles } from "../../src/db/schema.ts";
import {
  createTestApp,
  createTestAppWithAdmin,
  createUser,
  type SignedInAgent,
  signedInAgent,
  type TestApp,
} from "../helpers/app.ts";
import { insertBareUsers, lastAudit, makeGroup, roleId, userNamed } from "../helpers/console.ts";
import { asFragment, decode, flashOf, follow, postForm } from "../helpers/http.ts";

let t: TestApp;
let admin: SignedInAgent;

before(async () => {
  ({ t, admin } = await createTestAppWithAdmin());
});
after(() => t.close());

async function assignmentsOf(userId: number) {
  return t.db
    .select({ roleId: roleAssignments.roleId, scope: roleAssignments.scope })
    .from(roleAssignments)
    .where(eq(roleAssignments.userId, userId))
    .orderBy(roleAssignments.roleId, roleAssignments.scope);
}

async function roleNamed(name: string) {
  const [role] = await t.db.select().from(roles).where(eq(roles.name, name));
  return role;
}

describe("roles", () => {
  test("lists the five predefined roles with their permissions", async () => {
    const res = await admin.agent.get("/roles").expect(200);
    const text = decode(res.text);
    for (const name of [
      "Server Administrator",
      "User Manager",
      "Resource Manager",
      "Resource Contributor",
      "Viewer",
    ]) {
      assert.match(text, new RegExp(`${name} .*Predefined`));
    }
    assert.match(text, /User Manager .*Manage users, View resources Predefined 0/);
  });

  test("creates a custom role with the permissions ticked", async () => {
    const res = await postForm(admin.agent, "/roles", admin.csrf, {
      name: "Auditor",
      description: "Reads everything",
      permissions: ["resources.view", "resources.contribute"],
    }).expect(303);
    const role = await roleNamed("Auditor");
    assert.ok(role);
    assert.equal(res.headers.location, `/roles/${role.id}`);
    assert.deepEqual(role.permissions, ["resources.contribute", "resources.view"]);
    assert.equal(role.predefined, false);
    const page = await follow(admin.agent, res);
    assert.match(
      page.text,
      /<input type="checkbox" id="permission-resources.view" name="permissions" value="resources.view" checked/,
    );
    assert.equal((await lastAudit(t.db))?.action, "role.create");
  });

  test("re-renders with 422: no permission, blank name, a name taken in another case, an unknown permission", async () => {
    await postForm(admin.agent, "/roles", admin.csrf, {
      name: "Taken Role",
      permissions: "resources.view",
    }).expect(303);
    const cases: [Record<string, string | string[]>, string, string][] = [
      [{ name: "No Perms" }, "permissions", "Choose at least one permission."],
      [{ name: "", permissions: "resources.view" }, "name", "Enter a name."],
      [{ name: "taken role", permissions: "resources.view" }, "name", "Another role already has this name."],
      [{ name: "Weird", permissions: "everything" }, "permissions", "Choose permissions from the list."],
    ];
    for (const [body, field, message] of cases) {
      const res = await postForm(admin.agent, "/roles", admin.csrf, body).expect(422);
      assert.match(res.text, new RegExp(`id="field-${field}-error"[^>]*>.*${message}`, "s"), message);
      assert.match(res.text, /There is a problem/);
    }
  });

  test("edits and deletes a custom role; predefined roles can be neither", async () => {
    await postForm(admin.agent, "/roles", admin.csrf, { name: "Temp", permissions: "resources.view" }).expect(
      303,
    );
    const temp = await roleNamed("Temp");
    await postForm(admin.agent, `/roles/${temp?.id}`, admin.csrf, {
      name: "Temporary",
      permissions: ["resources.view", "resources.manage"],
    }).expect(303);
    assert.deepEqual((await roleNamed("Temporary"))?.permissions, ["resources.manage", "resources.view"]);
    assert.equal((await lastAudit(t.db))?.action, "role.update");
    await postForm(admin.agent, `/roles/${temp?.id}/delete`, admin.csrf).expect(303);
    assert.equal(await roleNamed("Temporary"), undefined);
    assert.equal((await lastAudit(t.db))?.action, "role.delete");

    const viewerId = await roleId(t.db, "viewer");
    const page = await admin.agent.get(`/roles/${viewerId}`).expect(200);
    assert.match(page.text, /Predefined roles can(&#39;|')t be changed or deleted/);
    assert.doesNotMatch(page.text, /id="role-form"/);
    assert.doesNotMatch(page.text, /\/delete"/);
    const edit = await postForm(admin.agent, `/roles/${viewerId}`, admin.csrf, {
      name: "Hacked",
      permissions: "users.manage",
    });
    assert.match(flashOf((await follow(admin.agent, edit)).text), /Predefined roles can't be changed/);
    const del = await postForm(admin.agent, `/roles/${viewerId}/delete`, admin.csrf);
    assert.match(flashOf((await follow(admin.agent, del)).text), /Predefined roles can't be deleted/);
    assert.deepEqual((await roleNamed("Viewer"))?.permissions, ["resources.view"]);
  });
});

describe("role assignments", () => {
  test("gives a role globally and for one resource, never twice, and removes it", async () => {
    const user = await createUser(t.db, { username: "assignee" });
    const viewer = await roleId(t.db, "viewer");
    const add = (scope: string) =>
      postForm(admin.agent, `/users/${user.id}/role-assignments`, admin.csrf, {
        roleId: String(viewer),
        scope,
      });
    const res = await add("").expect(303);
    assert.equal(res.headers.location, `/users/${user.id}#roles`);
    assert.match(flashOf((await follow(admin.agent, res)).text), /assignee now has the role Viewer\./);
    assert.match(flashOf((await follow(admin.agent, await add("project:42"))).text), /Viewer for project:42/);
    assert.match(flashOf((await follow(admin.agent, await add(""))).text), /already had the role Viewer/);
    assert.deepEqual(await assignmentsOf(user.id), [
      { roleId: viewer, scope: "" },
      { roleId: viewer, scope: "project:42" },
    ]);
    const audit = await lastAudit(t.db);
    assert.equal(audit?.action, "role_assignment.add");
    assert.deepEqual(audit?.details, { role: "Viewer", scope: "project:42" });

    const page = await admin.agent.get(`/users/${user.id}`).expect(200);
    assert.match(decode(page.text), /Viewer project:42 Directly Remove Viewer for project:42/);
    const [scoped] = await t.db
      .select()
      .from(roleAssignments)
      .where(and(eq(roleAssignments.userId, user.id), eq(roleAssignments.scope, "project:42")));
    const removed = await postForm(
      admin.agent,
      `/users/${user.id}/role-assignments/${scoped?.id}/delete`,
      admin.csrf,
    ).expect(303);
    assert.match(
      flashOf((await follow(admin.agent, removed)).text),
      /no longer has the role Viewer for project:42/,
    );
    assert.deepEqual(await assignmentsOf(user.id), [{ roleId: viewer, scope: "" }]);
    assert.equal((await lastAudit(t.db))?.action, "role_assignment.remove");
  });

  test("chooses no role for the administrator: the picker starts empty and an empty choice is refused", async () => {
    const user = await createUser(t.db, { username: "unpicked" });
    const page = await admin.agent.get(`/users/${user.id}`).expect(200);
    const picker = /<select id="field-roleId"[^>]*>\s*<option value="">Choose a role<\/option>/.exec(
      page.text,
    );
    assert.ok(picker, "the role picker's first option is the empty 'Choose a role'");
    assert.doesNotMatch(
      page.text.slice(picker.index, page.text.indexOf("</select>", picker.index)),
      / selected/,
    );
    const res = await postForm(admin.agent, `/users/${user.id}/role-assignments`, admin.csrf, {
      roleId: "",
      scope: "",
    }).expect(422);
    assert.match(res.text, /id="field-roleId-error"[^>]*>.*Choose a role\./s);
    assert.deepEqual(await assignmentsOf(user.id), []);
  });

  test("refuses a malformed scope with 422 beside the field, keeping the page", async () => {
    const user = await createUser(t.db, { username: "scoper" });
    const res = await postForm(admin.agent, `/users/${user.id}/role-assignments`, admin.csrf, {
      roleId: String(await roleId(t.db, "viewer")),
      scope: "project 42",
    }).expect(422);
    assert.match(res.text, /id="field-scope-error"[^>]*>.*Write the scope as type:id/s);
    assert.match(res.text, /value="project 42"/);
    assert.match(res.text, /<h1>scoper/);
    assert.deepEqual(await assignmentsOf(user.id), []);
  });

  test("an assignment can't be removed through another user's address", async () => {
    const owner = await createUser(t.db, { username: "owner", role: "viewer" });
    const other = await createUser(t.db, { username: "other" });
    const [assignment] = await t.db
      .select()
      .from(roleAssignments)
      .where(eq(roleAssignments.userId, owner.id));
    const res = await postForm(
      admin.agent,
      `/users/${other.id}/role-assignments/${assignment?.id}/delete`,
      admin.csrf,
    );
    assert.match(flashOf((await follow(admin.agent, res)).text), /no longer exists/);
    assert.equal((await assignmentsOf(owner.id)).length, 1);
  });

  test("refuses to remove the last global role that lets anyone manage users", async () => {
    const solo = await createTestApp();
    try {
      const boss = await createUser(solo.db, { username: "boss", role: "server_admin" });
      const session = await signedInAgent(solo.app, "boss");
      const [assignment] = await solo.db
        .select()
        .from(roleAssignments)
        .where(eq(roleAssignments.userId, boss.id));
      const res = await postForm(
        session.agent,
        `/users/${boss.id}/role-assignments/${assignment?.id}/delete`,
        session.csrf,
      );
      assert.match(
        flashOf((await follow(session.agent, res)).text),
        /would leave nobody who can sign in and manage users/,
      );
      assert.equal((await solo.db.select().from(roleAssignments)).length, 1);
      const [managers] = await solo.db
        .insert(roles)
        .values({ name: "Managers", permissions: ["users.manage"] })
        .returning();
      await solo.db.insert(roleAssignments).values({ roleId: managers?.id ?? -1, userId: boss.id });
      await postForm(
        session.agent,
        `/users/${boss.id}/role-assignments/${assignment?.id}/delete`,
        session.csrf,
      ).expect(303);
      assert.equal((await solo.db.select().from(roleAssignments)).length, 1, "another role still grants it");
      const edit = await postForm(session.agent, `/roles/${managers?.id}`, session.csrf, {
        name: "Managers",
        permissions: "resources.view",
      }).expect(422);
      assert.match(
        edit.text,
        /Taking “Manage users” away from Managers would leave nobody who can sign in and manage users/,
      );
      const del = await postForm(session.agent, `/roles/${managers?.id}/delete`, session.csrf);
      assert.match(
        flashOf((await follow(session.agent, del)).text),
        /Deleting Managers would leave nobody who can sign in and manage users/,
      );
    } finally {
      await solo.close();
    }
  });

  test("gives roles to groups too", async () => {
    const group = await makeGroup(t.db, { name: "Role Holders" });
    const res = await postForm(admin.agent, `/groups/${group.id}/role-assignments`, admin.csrf, {
      roleId: String(await roleId(t.db, "resource_manager")),
      scope: "dataset:sales-2024",
    }).expect(303);
    assert.match(
      flashOf((await follow(admin.agent, res)).text),
      /Role Holders now has the role Resource Manager for dataset:sales-2024/,
    );
    const rows = await t.db.select().from(roleAssignments).where(eq(roleAssignments.groupId, group.id));
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.userId, null);
  });
});

describe("copying roles and assignments", () => {
  test("the copy page searches users and groups, as a page and as a fragment", async () => {
    const target = await createUser(t.db, { username: "copy-target" });
    await createUser(t.db, { username: "copy-template", fullName: "Template Person" });
    const full = await admin.agent.get(`/role-copies/new?to=${target.id}&q=template`).expect(200);
    assert.match(full.text, /^<!doctype html>/);
    assert.match(decode(full.text), /Copying to 1 user: copy-target/);
    assert.match(
      full.text,
      /<input type="radio" id="from-user-\d+" name="from" value="user:\d+" aria-describedby="from-user-\d+-roles">/,
    );
    const part = await asFragment(
      admin.agent.get(`/role-copies/new?to=${target.id}&q=TEMPLATE`),
      "div#copy-sources",
    ).expect(200);
    assert.match(part.text, /^\s*<div id="copy-sources"/);
    assert.match(part.text, /copy-template/);
    assert.doesNotMatch(part.text, /copy-target/);
  });

  test("adds the source's missing assignments to every target, never duplicating or removing", async () => {
    const viewer = await roleId(t.db, "viewer");
    const contributor = await roleId(t.db, "resource_contributor");
    const manager = await roleId(t.db, "resource_manager");
    const source = await createUser(t.db, { username: "source" });
    await t.db.insert(roleAssignments).values([
      { roleId: viewer, userId: source.id, scope: "" },
      { roleId: contributor, userId: source.id, scope: "project:7" },
    ]);
    const a = await createUser(t.db, { username: "target-a" });
    const b = await createUser(t.db, { username: "target-b" });
    await t.db.insert(roleAssignments).values([
      { roleId: viewer, userId: a.id, scope: "" },
      { roleId: manager, userId: b.id, scope: "project:9" },
    ]);
    const res = await postForm(admin.agent, "/role-copies", admin.csrf, {
      from: `user:${source.id}`,
      to: [String(a.id), String(b.id)],
    }).expect(303);
    assert.equal(res.headers.location, "/users");
    assert.match(
      flashOf((await follow(admin.agent, res)).text),
      /Copied 2 role assignments from source to 2 users: 3 added, 1 already there/,
    );
    const byRole = (list: { roleId: number; scope: string }[]) =>
      [...list].sort((x, y) => x.roleId - y.roleId);
    assert.deepEqual(
      await assignmentsOf(a.id),
      byRole([
        { roleId: viewer, scope: "" },
        { roleId: contributor, scope: "project:7" },
      ]),
    );
    assert.deepEqual(
      await assignmentsOf(b.id),
      byRole([
        { roleId: viewer, scope: "" },
        { roleId: contributor, scope: "project:7" },
        { roleId: manager, scope: "project:9" },
      ]),
    );
    const again = await postForm(admin.agent, "/role-copies", admin.csrf, {
      from: `user:${source.id}`,
      to: [String(a.id)],
    });
    assert.match(flashOf((await follow(admin.agent, again)).text), /0 added, 2 already there/);
    assert.equal((await assignmentsOf(a.id)).length, 2);
    assert.equal((await lastAudit(t.db))?.action, "role_assignment.copy");
  });

  test("copies from a group, and lands on the single target's page", async () => {
    const group = await makeGroup(t.db, { name: "Template Group" });
    await t.db
      .insert(roleAssignments)
      .values({ roleId: await roleId(t.db, "viewer"), groupId: group.id, scope: "" });
    const target = await createUser(t.db, { username: "from-group" });
    const res = await postForm(admin.agent, "/role-copies", admin.csrf, {
      from: `group:${group.id}`,
      to: String(target.id),
    }).expect(303);
    assert.equal(res.headers.location, `/users/${target.id}`);
    assert.equal((await assignmentsOf(target.id)).length, 1);
    const rows = await t.db
      .select()
      .from(roleAssignments)
      .where(and(eq(roleAssignments.userId, target.id), isNull(roleAssignments.groupId)));
    assert.equal(rows.length, 1);
  });

  test("re-renders with 422 when no source is chosen", async () => {
    const target = await userNamed(t.db, "from-group");
    const res = await postForm(admin.agent, "/role-copies", admin.csrf, { to: String(target?.id) }).expect(
      422,
    );
    assert.match(res.text, /id="field-from-error"[^>]*>.*Choose the user or group to copy from/s);
  });
});

describe("the copy-roles picker", () => {
  test("shows how many role assignments each user and group holds itself", async () => {
    const target = await createUser(t.db, { username: "picker-target" });
    const holder = await createUser(t.db, { username: "picker-holder" });
    const group = await makeGroup(t.db, { name: "Picker Group" });
    await t.db.insert(roleAssignments).values([
      { roleId: await roleId(t.db, "viewer"), userId: holder.id, scope: "" },
      { roleId: await roleId(t.db, "viewer"), userId: holder.id, scope: "project:1" },
      { roleId: await roleId(t.db, "resource_manager"), groupId: group.id, scope: "" },
    ]);
    const res = await admin.agent.get(`/role-copies/new?to=${target.id}&q=picker`).expect(200);
    const text = decode(res.text);
    assert.match(text, /3 users and groups matching “picker”/);
    assert.match(text, /Picker Group \(internal group\) 1 role assignment\b/);
    assert.match(text, /picker-holder \(internal user\) 2 role assignments/);
    assert.match(text, /picker-target \(internal user\) copying to this user/);
    assert.match(
      res.text,
      new RegExp(`id="from-user-${target.id}" name="from" value="user:${target.id}" disabled`),
    );
  });

  test("pages through every user and group 20 at a time, without JavaScript", async () => {
    await insertBareUsers(
      t.db,
      Array.from({ length: 45 }, (_, i) => `pickpage-${String(i).padStart(2, "0")}`),
    );
    const target = await userNamed(t.db, "picker-target");
    const names = (html: string) =>
      [...html.matchAll(/<label for="from-(?:user|group)-\d+">([^<]+)/g)].map((m) => (m[1] ?? "").trim());
    const link = (html: string, id: string) =>
      new RegExp(`id="${id}" href="([^"]+)"`).exec(html)?.[1]?.replace(/&amp;/g, "&") ?? null;
    const seen: string[] = [];
    let href: string | null = `/role-copies/new?to=${target?.id}&q=pickpage`;
    let pages = 0;
    while (href) {
      const res = await admin.agent.get(href).expect(200);
      seen.push(...names(res.text));
      pages += 1;
      if (pages === 2) assert.match(decode(res.text), /Page 2 of 3/);
      href = link(res.text, "sources-next");
    }
    assert.equal(pages, 3);
    assert.deepEqual(
      seen,
      Array.from({ length: 45 }, (_, i) => `pickpage-${String(i).padStart(2, "0")}`),
    );
    const page = await admin.agent.get(`/role-copies/new?to=${target?.id}`).expect(200);
    assert.match(page.text, /id="sources-next" href="\/role-copies\/new\?to=\d+&amp;after=/);
  });

  test("past 10,000 users, the total and the page count are the database's estimates, and say so", async () => {
    await t.db.execute(sql`insert into users (kind, username, username_key, search_text)
      select 'internal', 'many-' || i, 'many-' || i, 'many-' || i from generate_series(1, 11000) as i`);
    await t.db.execute(sql`analyze users`);
    try {
      const target = await userNamed(t.db, "picker-target");
      const next = await admin.agent.get(`/role-copies/new?to=${target?.id}`).expect(200);
      const href = /id="sources-next" href="([^"]+)"/.exec(next.text)?.[1]?.replace(/&amp;/g, "&");
      assert.ok(href);
      const text = decode((await admin.agent.get(href).expect(200)).text);
      assert.match(text, /About 11,\d{3} users and groups;/);
      assert.match(text, /Page 2 of about 55\d\b/);
    } finally {
      await t.db.execute(sql`delete from users where username like 'many-%'`);
    }
  });
});
