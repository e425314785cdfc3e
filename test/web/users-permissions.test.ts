import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import supertest from "supertest";
import { roleAssignments } from "../../src/db/schema.ts";
import {
  createRoleUsers,
  createTestApp,
  createUser,
  csrfTokenOf,
  signedInAgent,
  type TestApp,
} from "../helpers/app.ts";
import { makeGroup, roleId } from "../helpers/console.ts";
import { postForm } from "../helpers/http.ts";

let t: TestApp;
let ids: { user: number; group: number; role: number; assignment: number };

before(async () => {
  t = await createTestApp();
  await createRoleUsers(t.db);
  const user = await createUser(t.db, { username: "subject" });
  const group = await makeGroup(t.db, { name: "Subjects" });
  const role = await roleId(t.db, "viewer");
  const [assignment] = await t.db
    .insert(roleAssignments)
    .values({ roleId: role, userId: user.id })
    .returning();
  ids = { user: user.id, group: group.id, role, assignment: assignment?.id ?? 0 };
});
after(() => t.close());

const pages = () => [
  "/users",
  "/users/new",
  `/users/${ids.user}`,
  `/users/${ids.user}/password`,
  `/users/${ids.user}/conversion`,
  "/groups/new",
  `/groups/${ids.group}`,
  `/groups/${ids.group}/members/new`,
  `/groups/${ids.group}/subgroups/new`,
  "/group-memberships/new",
  "/roles",
  "/roles/new",
  `/roles/${ids.role}`,
  "/role-copies/new",
  "/settings/audit-log",
];

const actions = (): [string, Record<string, string>][] => [
  [
    "/users",
    {
      username: "sneaky",
      password: "a long enough password",
      passwordConfirmation: "a long enough password",
    },
  ],
  ["/users/selection", { action: "disable", user: String(ids.user) }],
  [`/users/${ids.user}`, { fullName: "Changed" }],
  [`/users/${ids.user}/login-status`, { status: "disabled" }],
  [
    `/users/${ids.user}/password`,
    { password: "a long enough password", passwordConfirmation: "a long enough password" },
  ],
  [`/users/${ids.user}/synchronizations`, {}],
  [`/users/${ids.user}/conversion`, { directoryId: "1" }],
  [`/users/${ids.user}/role-assignments`, { roleId: String(ids.role), scope: "x:1" }],
  [`/users/${ids.user}/role-assignments/${ids.assignment}/delete`, {}],
  ["/groups", { name: "Sneaky" }],
  [`/groups/${ids.group}`, { name: "Renamed" }],
  [`/groups/${ids.group}/members`, { user: String(ids.user) }],
  [`/groups/${ids.group}/members/${ids.user}/delete`, {}],
  [`/groups/${ids.group}/subgroups`, { subgroup: "1" }],
  [`/groups/${ids.group}/subgroups/1/delete`, {}],
  [`/groups/${ids.group}/synchronizations`, {}],
  [`/groups/${ids.group}/role-assignments`, { roleId: String(ids.role) }],
  ["/group-memberships", { group: String(ids.group), user: String(ids.user) }],
  ["/roles", { name: "Sneaky", permissions: "users.manage" }],
  [`/roles/${ids.role}`, { name: "Sneaky", permissions: "users.manage" }],
  [`/roles/${ids.role}/delete`, {}],
  ["/role-copies", { from: `user:${ids.user}`, to: String(ids.user) }],
];

describe("pages of the Users application and the audit log", () => {
  test("send anonymous visitors to sign in, and come back after", async () => {
    for (const path of pages()) {
      const res = await supertest(t.app).get(path).expect(303);
      assert.equal(res.headers.location, `/login?returnTo=${encodeURIComponent(path)}`, path);
    }
  });

  test("answer an anonymous htmx request with HX-Redirect, never a swapped sign-in page", async () => {
    for (const path of [
      "/users?q=a",
      `/groups/${ids.group}?after=a`,
      "/role-copies/new?q=a",
      "/settings/audit-log",
    ]) {
      const res = await supertest(t.app)
        .get(path)
        .set("HX-Request", "true")
        .set("HX-Request-Type", "partial");
      assert.equal(res.status, 401, path);
      assert.match(res.headers["hx-redirect"] ?? "", /^\/login\?returnTo=/);
    }
  });

  for (const username of ["viewer", "nobody"]) {
    test(`are refused to ${username} (no user-management permission) with 403`, async () => {
      const { agent } = await signedInAgent(t.app, username);
      for (const path of pages()) {
        const res = await agent.get(path);
        assert.equal(res.status, 403, path);
        assert.match(res.text, /You don(&#39;|')t have permission to do this/);
        assert.doesNotMatch(
          res.text,
          /name="action"|Give role|New user/,
          "no controls leak into the 403 page",
        );
      }
    });
  }

  for (const username of ["admin", "manager"]) {
    test(`open for ${username}`, async () => {
      const { agent } = await signedInAgent(t.app, username);
      for (const path of pages()) {
        const res = await agent.get(path);
        assert.equal(res.status, 200, path);
      }
    });
  }
});

describe("changes in the Users application", () => {
  test("send anonymous visitors to sign in and change nothing", async () => {
    const agent = supertest.agent(t.app);
    const csrf = csrfTokenOf((await agent.get("/login")).text);
    for (const [path, body] of actions()) {
      const res = await postForm(agent, path, csrf, body);
      assert.equal(res.status, 303, path);
      assert.equal(res.headers.location, "/login?returnTo=%2F", path);
    }
  });

  for (const username of ["viewer", "nobody"]) {
    test(`are refused to ${username} with 403 and change nothing`, async () => {
      const before = await snapshot();
      const { agent, csrf } = await signedInAgent(t.app, username);
      for (const [path, body] of actions()) {
        const res = await postForm(agent, path, csrf, body);
        assert.equal(res.status, 403, path);
      }
      assert.deepEqual(await snapshot(), before);
    });
  }

  test("without a CSRF token are refused with 403, even for an administrator", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent.post(`/users/${ids.user}/login-status`).type("form").send({ status: "disabled" });
    assert.equal(res.status, 403);
    assert.match(res.text, /This form has expired/);
  });
});

async function snapshot() {
  const { rows } = await t.database.pool.query(
    `select (select count(*) from users)::int as users, (select count(*) from groups)::int as groups,
            (select count(*) from roles)::int as roles, (select count(*) from role_assignments)::int as assignments,
            (select count(*) from group_members)::int as members, (select count(*) from audit_log)::int as audit,
            (select string_agg(full_name || enabled::text, ',' order by id) from users) as fields`,
  );
  return rows[0];
}
