import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import supertest from "supertest";
import { groupMembers, groupSubgroups, groups, roleAssignments, roles } from "../../src/db/schema.ts";
import { globalPermissionsOf } from "../../src/services/permissions.ts";
import { createRoleUsers, createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";

let t: TestApp;
before(async () => {
  t = await createTestApp();
  await createRoleUsers(t.db);
});
after(() => t.close());

const protectedPages = ["/users", "/settings"];

describe("permission matrix", () => {
  for (const path of protectedPages) {
    test(`${path}: anonymous visitors are sent to sign in`, async () => {
      const res = await supertest(t.app).get(path).expect(303);
      assert.equal(res.headers.location, `/login?returnTo=${encodeURIComponent(path)}`);
    });

    test(`${path}: an htmx request from an anonymous visitor gets HX-Redirect, not a swapped login page`, async () => {
      const res = await supertest(t.app)
        .get(path)
        .set("HX-Request", "true")
        .set("HX-Request-Type", "partial");
      assert.equal(res.status, 401);
      assert.equal(res.headers["hx-redirect"], `/login?returnTo=${encodeURIComponent(path)}`);
    });

    for (const username of ["viewer", "nobody"]) {
      test(`${path}: ${username} (no user-management permission) gets 403`, async () => {
        const { agent } = await signedInAgent(t.app, username);
        const res = await agent.get(path).expect(403);
        assert.match(res.text, /You don(&#39;|')t have permission to do this/);
      });
    }

    for (const username of ["admin", "manager"]) {
      test(`${path}: ${username} may open it`, async () => {
        const { agent } = await signedInAgent(t.app, username);
        await agent.get(path).expect(200);
      });
    }
  }

  test("users without permission see no Users or Settings links", async () => {
    const { agent } = await signedInAgent(t.app, "viewer");
    const home = await agent.get("/").expect(200);
    assert.doesNotMatch(home.text, /href="\/users"/);
    assert.doesNotMatch(home.text, /href="\/settings"/);
    assert.match(home.text, /no console permissions/);
  });
});

describe("permissions through groups", () => {
  test("a role given to a group applies to members of its subgroups, and a cycle ends", async () => {
    const member = await createUser(t.db, { username: "grouped" });
    const [outer, inner] = await t.db
      .insert(groups)
      .values([
        { kind: "internal", name: "Outer", nameKey: "outer" },
        { kind: "internal", name: "Inner", nameKey: "inner" },
      ])
      .returning();
    assert.ok(outer && inner);
    await t.db.insert(groupSubgroups).values([
      { parentId: outer.id, childId: inner.id },
      { parentId: inner.id, childId: outer.id },
    ]);
    await t.db.insert(groupMembers).values({ groupId: inner.id, userId: member.id });
    assert.equal((await globalPermissionsOf(t.db, member.id)).size, 0);
    const [manager] = await t.db.select().from(roles).where(eq(roles.key, "user_manager"));
    await t.db.insert(roleAssignments).values({ roleId: manager?.id ?? -1, groupId: outer.id });
    assert.ok((await globalPermissionsOf(t.db, member.id)).has("users.manage"));
    const { agent } = await signedInAgent(t.app, "grouped");
    await agent.get("/users").expect(200);
  });

  test("a role with a resource scope does not grant console access", async () => {
    const scoped = await createUser(t.db, { username: "scoped" });
    const [manager] = await t.db.select().from(roles).where(eq(roles.key, "user_manager"));
    await t.db
      .insert(roleAssignments)
      .values({ roleId: manager?.id ?? -1, userId: scoped.id, scope: "project:1" });
    const { agent } = await signedInAgent(t.app, "scoped");
    await agent.get("/users").expect(403);
  });
});
