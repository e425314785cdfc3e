import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, desc, eq } from "drizzle-orm";
import supertest from "supertest";
import { auditLog, groupMembers, groups, roleAssignments, roles, users } from "../../src/db/schema.ts";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import { bearer, tokenFor } from "./support.ts";

describe("API: users, groups, roles and the audit log", () => {
  let t: TestApp;
  let auth: Record<string, string>;
  let adminId: number;
  let viewerRoleId: number;
  const api = () => supertest(t.app);

  before(async () => {
    t = await createTestApp();
    const admin = await createUser(t.db, { username: "admin", role: "server_admin" });
    adminId = admin.id;
    for (const name of ["ann", "bea", "cid", "dot", "eve"])
      await createUser(t.db, { username: name, fullName: `${name} Example` });
    auth = bearer((await tokenFor(t.db, admin, { name: "automation" })).token);
    const [viewer] = await t.db.select().from(roles).where(eq(roles.key, "viewer"));
    viewerRoleId = viewer?.id ?? 0;
  });
  after(() => t.close());

  const idOf = async (username: string) =>
    (await t.db.select().from(users).where(eq(users.username, username)))[0]?.id ?? 0;

  test("lists users cursor-paged, searched as the Users page searches", async () => {
    const seen: string[] = [];
    let next: string | null = "/api/v1/users?limit=2";
    while (next) {
      const page: supertest.Response = await api().get(next).set(auth).expect(200);
      assert.ok(page.body.items.length <= 2);
      seen.push(...page.body.items.map((u: { name: string }) => u.name));
      next = page.body.next;
      if (next) assert.equal(page.headers.link, `<${next}>; rel="next"`);
    }
    assert.deepEqual(seen, ["admin", "ann", "bea", "cid", "dot", "eve"]);
    const found = await api().get("/api/v1/users").query({ q: "BEA" }).set(auth).expect(200);
    assert.deepEqual(
      found.body.items.map((u: { name: string }) => u.name),
      ["bea"],
    );
    const bad = await api().get("/api/v1/users").query({ filter: "robots" }).set(auth).expect(422);
    assert.ok(bad.body.errors.filter);
    await api().get("/api/v1/users").query({ cursor: "not-ours" }).set(auth).expect(422);
  });

  test("gets a user with groups and roles; a missing one is 404 problem+json", async () => {
    const res = await api().get(`/api/v1/users/${adminId}`).set(auth).expect(200);
    assert.equal(res.body.username, "admin");
    assert.equal(res.body.roleAssignments[0].role.name, "Server Administrator");
    assert.equal(res.body.roleAssignments[0].viaGroup, null);
    const missing = await api().get("/api/v1/users/99999").set(auth).expect(404);
    assert.equal(missing.body.status, 404);
    await api().get("/api/v1/users/abc").set(auth).expect(404);
  });

  test("disables and enables sign-in, audited as done with the token", async () => {
    const ann = await idOf("ann");
    const off = await api()
      .post(`/api/v1/users/${ann}/login-status`)
      .set(auth)
      .send({ enabled: false })
      .expect(200);
    assert.equal(off.body.enabled, false);
    const [row] = await t.db.select().from(users).where(eq(users.id, ann));
    assert.equal(row?.enabled, false);
    const entries = await t.db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(2);
    assert.deepEqual(entries.map((e) => e.action).sort(), ["api_token.use", "user.disable"]);
    const use = entries.find((e) => e.action === "api_token.use")?.details as Record<string, unknown>;
    assert.equal(use.token, "automation");
    assert.equal(use.request, `POST /api/v1/users/${ann}/login-status`);
    await api().post(`/api/v1/users/${ann}/login-status`).set(auth).send({ enabled: true }).expect(200);
    const invalid = await api()
      .post(`/api/v1/users/${ann}/login-status`)
      .set(auth)
      .send({ enabled: "yes" })
      .expect(422);
    assert.ok(invalid.body.errors.enabled);
  });

  test("refuses, as 409, to disable the token's own account", async () => {
    const res = await api()
      .post(`/api/v1/users/${adminId}/login-status`)
      .set(auth)
      .send({ enabled: false })
      .expect(409);
    assert.match(res.body.detail, /your own account/);
    const [row] = await t.db.select().from(users).where(eq(users.id, adminId));
    assert.equal(row?.enabled, true);
  });

  test("gives and removes a role; a bad scope is a field error", async () => {
    const bea = await idOf("bea");
    const given = await api()
      .post(`/api/v1/users/${bea}/role-assignments`)
      .set(auth)
      .send({ roleId: viewerRoleId, scope: "project:7" })
      .expect(201);
    assert.equal(given.body.role, "Viewer");
    await api()
      .post(`/api/v1/users/${bea}/role-assignments`)
      .set(auth)
      .send({ roleId: viewerRoleId, scope: "project:7" })
      .expect(200);
    const [row] = await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, bea));
    assert.equal(row?.scope, "project:7");
    const bad = await api()
      .post(`/api/v1/users/${bea}/role-assignments`)
      .set(auth)
      .send({ roleId: "x" })
      .expect(422);
    assert.ok(bad.body.errors.roleId);
    await api().delete(`/api/v1/users/${bea}/role-assignments/${row?.id}`).set(auth).expect(204);
    assert.equal(
      (await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, bea))).length,
      0,
    );
    await api().delete(`/api/v1/users/${bea}/role-assignments/${row?.id}`).set(auth).expect(404);
  });

  test("copies roles onto users", async () => {
    const [cid, dot] = [await idOf("cid"), await idOf("dot")];
    const res = await api()
      .post("/api/v1/role-copies")
      .set(auth)
      .send({ from: `user:${adminId}`, to: [cid, dot] })
      .expect(200);
    assert.equal(res.body.added, 2);
    const held = await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, dot));
    assert.equal(held.length, 1);
    const bad = await api().post("/api/v1/role-copies").set(auth).send({ from: "admin", to: [] }).expect(422);
    assert.ok(bad.body.errors.to);
  });

  test("converting an internal user needs a directory that exists", async () => {
    const eve = await idOf("eve");
    const res = await api()
      .post(`/api/v1/users/${eve}/conversion`)
      .set(auth)
      .send({ directoryId: 4242 })
      .expect(422);
    assert.ok(res.body.errors.directoryId, JSON.stringify(res.body));
    const [row] = await t.db.select().from(users).where(eq(users.id, eve));
    assert.equal(row?.kind, "internal");
  });

  test("lists and gets groups with their member count and roles", async () => {
    const [group] = await t.db
      .insert(groups)
      .values({ kind: "internal", name: "Ops", nameKey: "ops", searchText: "ops" })
      .returning();
    await t.db.insert(groupMembers).values({ groupId: group?.id ?? 0, userId: await idOf("ann") });
    await t.db.insert(roleAssignments).values({ roleId: viewerRoleId, groupId: group?.id ?? 0 });
    const list = await api().get("/api/v1/groups").set(auth).expect(200);
    assert.deepEqual(
      list.body.items.map((g: { name: string }) => g.name),
      ["Ops"],
    );
    const one = await api().get(`/api/v1/groups/${group?.id}`).set(auth).expect(200);
    assert.equal(one.body.memberCount, 1);
    assert.equal(one.body.roleAssignments[0].role.name, "Viewer");
    const ann = await api()
      .get(`/api/v1/users/${await idOf("ann")}`)
      .set(auth)
      .expect(200);
    assert.deepEqual(ann.body.roleAssignments[0].viaGroup, { id: group?.id, name: "Ops" });
    const sync = await api().post(`/api/v1/groups/${group?.id}/synchronizations`).set(auth).expect(409);
    assert.match(sync.body.detail, /Only external groups/);
  });

  test("lists roles with their holders", async () => {
    const list = await api().get("/api/v1/roles").set(auth).expect(200);
    const viewer = list.body.items.find((r: { key: string }) => r.key === "viewer");
    assert.ok(viewer.assignmentCount >= 1);
    const one = await api().get(`/api/v1/roles/${viewerRoleId}`).set(auth).expect(200);
    assert.ok(one.body.holders.some((h: { name: string }) => h.name === "Ops"));
  });

  test("the audit log filters and pages by cursor", async () => {
    const res = await api().get("/api/v1/audit-log").query({ action: "user.disable" }).set(auth).expect(200);
    assert.deepEqual(
      res.body.items.map((e: { target: { name: string } }) => e.target.name),
      ["ann"],
    );
    const first = await api().get("/api/v1/audit-log").query({ limit: 1 }).set(auth).expect(200);
    const second = await api().get(first.body.next).set(auth).expect(200);
    assert.ok(second.body.items[0].id < first.body.items[0].id);
    const mine = await t.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.actorName, "admin")));
    assert.ok(mine.length > 3);
  });

  test("a body that isn't JSON is a 400 problem, not a page", async () => {
    const res = await api()
      .post(`/api/v1/users/${adminId}/login-status`)
      .set(auth)
      .set("Content-Type", "application/json")
      .send("{nope")
      .expect(400);
    assert.match(String(res.headers["content-type"]), /problem\+json/);
    assert.match(res.body.detail, /not valid JSON/);
  });
});
