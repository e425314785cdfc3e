import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq } from "drizzle-orm";
import supertest from "supertest";
import { directories, groupMembers, groups, roleAssignments, users } from "../../src/db/schema.ts";
import { BASE_DN, closeImportTestBed, type ImportTestBed, openImportTestBed } from "../web/import-support.ts";
import { bearer, tokenFor } from "./support.ts";

const BIG = 120;

describe("API: directories, search and imports against a real slapd", () => {
  let bed: ImportTestBed;
  let auth: Record<string, string>;
  const api = () => supertest(bed.t.app);

  /** Polls a run until it ends, as a script would. */
  // biome-ignore lint/suspicious/noExplicitAny: a run as JSON, read field by field
  async function until(path: string): Promise<Record<string, any>> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const run = (await api().get(path).set(auth).expect(200)).body;
      if (run.finished) return run;
      assert.ok(Date.now() < deadline, `run still ${run.status} after 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  before(async () => {
    bed = await openImportTestBed({ bigGroupSize: BIG, worker: { start: true } });
    const [admin] = await bed.t.db.select().from(users).where(eq(users.id, bed.adminId));
    auth = bearer((await tokenFor(bed.t.db, admin ?? { id: bed.adminId, username: "admin" })).token);
  });
  after(() => closeImportTestBed(bed));

  test("lists and gets directories without their password", async () => {
    const list = await api().get("/api/v1/directories").set(auth).expect(200);
    assert.equal(list.body.items.length, 1);
    const [item] = list.body.items;
    assert.equal(item.id, bed.directoryId);
    assert.equal(item.hasBindPassword, true);
    assert.ok(!list.text.includes(bed.server.servicePassword), "the service password is never sent");
    assert.ok(!("bindPasswordEncrypted" in item));
    const one = await api().get(`/api/v1/directories/${bed.directoryId}`).set(auth).expect(200);
    assert.equal(one.body.baseDn, BASE_DN);
    const missing = await api().get("/api/v1/directories/9999").set(auth).expect(404);
    assert.match(String(missing.headers["content-type"]), /problem\+json/);
  });

  test("tests the connection step by step and keeps the outcome", async () => {
    const res = await api()
      .post(`/api/v1/directories/${bed.directoryId}/connection-tests`)
      .set(auth)
      .expect(200);
    assert.equal(res.body.ok, true);
    assert.deepEqual(
      res.body.steps.map((s: { step: string }) => s.step),
      ["connect", "bind", "base_dn", "count_users", "count_groups"],
    );
    assert.ok(res.body.users >= BIG);
    const [row] = await bed.t.db.select().from(directories).where(eq(directories.id, bed.directoryId));
    assert.equal(row?.lastTestOk, true);
  });

  test("search says what importing each match would do, and refuses a malformed filter beside q", async () => {
    const res = await api()
      .get(`/api/v1/directories/${bed.directoryId}/entries`)
      .query({ q: "alpha", kind: "users" })
      .set(auth)
      .expect(200);
    const alpha = res.body.items.find((m: { entry: { name: string } }) => m.entry.name === "alpha");
    assert.ok(alpha, "alpha found");
    assert.equal(alpha.status, "new");
    assert.equal(alpha.entry.dn, `uid=alpha,ou=people,${BASE_DN}`);
    const bad = await api()
      .get(`/api/v1/directories/${bed.directoryId}/entries`)
      .query({ q: "(uid=alpha" })
      .set(auth)
      .expect(422);
    assert.match(bad.body.errors.q, /not valid/);
    const blank = await api().get(`/api/v1/directories/${bed.directoryId}/entries`).set(auth).expect(422);
    assert.ok(blank.body.errors.q);
  });

  test("search results are cursor-paged with a next link", async () => {
    const first = await api()
      .get(`/api/v1/directories/${bed.directoryId}/entries`)
      .query({ q: "(objectClass=inetOrgPerson)", kind: "users", limit: 50 })
      .set(auth)
      .expect(200);
    assert.equal(first.body.items.length, 50);
    assert.ok(first.body.total > 100);
    assert.match(String(first.headers.link), /rel="next"/);
    const second = await api().get(first.body.next).set(auth).expect(200);
    const names = new Set(first.body.items.map((m: { entry: { name: string } }) => m.entry.name));
    assert.ok(second.body.items.every((m: { entry: { name: string } }) => !names.has(m.entry.name)));
  });

  let groupRun: number;

  test("an import of every match of a query, polled to the end, with its report", async () => {
    const started = await api()
      .post("/api/v1/imports")
      .set(auth)
      .send({ directoryId: bed.directoryId, query: { text: "everyone", kind: "groups" } })
      .expect(202);
    assert.equal(started.headers.location, `/api/v1/imports/${started.body.id}`);
    groupRun = started.body.id;
    const run = await until(started.headers.location);
    assert.equal(run.status, "succeeded", run.error);
    assert.equal(run.counts.created, BIG + 1, "the group and each member");
    assert.equal(run.counts.failed, 0);
    const [group] = await bed.t.db.select().from(groups).where(eq(groups.name, "everyone"));
    assert.ok(group, "the group is in the database");
    const members = await bed.t.db.select().from(groupMembers).where(eq(groupMembers.groupId, group.id));
    assert.equal(members.length, BIG);
    const report = await api()
      .get(`/api/v1/imports/${run.id}/entries`)
      .query({ limit: 200 })
      .set(auth)
      .expect(200);
    assert.equal(report.body.total, report.body.items.length);
    assert.ok(report.body.items.every((e: { outcome: string }) => e.outcome !== "failed"));
  });

  test("search after the import says the group is up to date", async () => {
    const res = await api()
      .get(`/api/v1/directories/${bed.directoryId}/entries`)
      .query({ q: "everyone", kind: "groups" })
      .set(auth)
      .expect(200);
    assert.equal(res.body.items[0]?.status, "unchanged");
  });

  test("an import of an entry named by DN copies the roles asked for", async () => {
    const started = await api()
      .post("/api/v1/imports")
      .set(auth)
      .send({
        directoryId: bed.directoryId,
        entries: [{ dn: `uid=alpha,ou=people,${BASE_DN}` }],
        copyRolesFrom: "admin",
      })
      .expect(202);
    assert.deepEqual(started.body.copyRolesFrom, { type: "user", id: bed.adminId, name: "admin" });
    const run = await until(`/api/v1/imports/${started.body.id}`);
    assert.equal(run.status, "succeeded", run.error);
    assert.equal(run.counts.created, 1);
    const [alpha] = await bed.t.db.select().from(users).where(eq(users.username, "alpha"));
    assert.equal(alpha?.kind, "external");
    const roles = await bed.t.db
      .select()
      .from(roleAssignments)
      .where(and(eq(roleAssignments.userId, alpha?.id ?? 0)));
    assert.equal(roles.length, 1, "admin's role copied onto alpha");
  });

  test("refuses entries the directory doesn't have, and half-given input, with field errors", async () => {
    const unknown = await api()
      .post("/api/v1/imports")
      .set(auth)
      .send({ directoryId: bed.directoryId, entries: [{ dn: `uid=nobody-here,ou=people,${BASE_DN}` }] })
      .expect(422);
    assert.match(unknown.body.errors["entries.0.dn"], /No user or group/);
    const both = await api()
      .post("/api/v1/imports")
      .set(auth)
      .send({ directoryId: bed.directoryId, query: { text: "x" }, entries: [{ dn: "uid=x" }] })
      .expect(422);
    assert.ok(both.body.errors.query);
    const noDirectory = await api()
      .post("/api/v1/imports")
      .set(auth)
      .send({ query: { text: "x" } })
      .expect(422);
    assert.ok(noDirectory.body.errors.directoryId);
    const badSource = await api()
      .post("/api/v1/imports")
      .set(auth)
      .send({ directoryId: bed.directoryId, query: { text: "x" }, copyRolesFrom: "no-such-user" })
      .expect(422);
    assert.ok(badSource.body.errors.copyRolesFrom);
  });

  test("lists runs newest first, cursor-paged, and refuses to cancel a finished one", async () => {
    const first = await api().get("/api/v1/imports").query({ limit: 1 }).set(auth).expect(200);
    assert.equal(first.body.items.length, 1);
    assert.ok(first.body.next);
    const second = await api().get(first.body.next).set(auth).expect(200);
    assert.equal(second.body.items[0].id, groupRun);
    const cancel = await api().post(`/api/v1/imports/${groupRun}/cancellation`).set(auth).expect(409);
    assert.match(cancel.body.detail, /already ended/);
  });

  test("a synchronization started over the API runs to the end; nothing held is 409", async () => {
    const started = await api()
      .post("/api/v1/synchronizations")
      .set(auth)
      .send({ directoryId: bed.directoryId })
      .expect(202);
    const run = await until(`/api/v1/synchronizations/${started.body.id}`);
    assert.equal(run.status, "succeeded", run.error);
    assert.equal(run.kind, "synchronization");
    await api().get(`/api/v1/synchronizations/${groupRun}`).set(auth).expect(404);
    const listed = await api().get("/api/v1/synchronizations").set(auth).expect(200);
    assert.equal(listed.body.items[0].id, run.id);
    const review = await api()
      .post(`/api/v1/synchronizations/${run.id}/held-changes`)
      .set(auth)
      .send({ decision: "apply" })
      .expect(409);
    assert.match(review.body.detail, /holds no changes/);
    const invalid = await api()
      .post(`/api/v1/synchronizations/${run.id}/held-changes`)
      .set(auth)
      .send({ decision: "maybe" })
      .expect(422);
    assert.match(invalid.body.errors.decision, /apply or to discard/);
  });

  test("imported users are listed and found like on the Users page", async () => {
    const res = await api()
      .get("/api/v1/users")
      .query({ filter: "external", q: "alpha" })
      .set(auth)
      .expect(200);
    assert.deepEqual(
      res.body.items.map((u: { name: string }) => u.name),
      ["alpha"],
    );
  });
});
