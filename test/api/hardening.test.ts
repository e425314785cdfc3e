/**
 * The API under failure and hostile input: every answer is a problem+json, never a hung request
 * or a crash, and an id PostgreSQL can't hold is refused as invalid input.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import supertest from "supertest";
import { importRuns, users } from "../../src/db/schema.ts";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import { makeDirectory } from "../helpers/console.ts";
import { bearer, tokenFor } from "./support.ts";

/** Past PostgreSQL's integer: ids are 32-bit there. */
const HUGE = 3_000_000_000;

function assertProblem(res: supertest.Response, status: number, what: string) {
  assert.equal(res.status, status, `${what}: ${res.status} ${res.text}`);
  assert.match(String(res.headers["content-type"]), /^application\/problem\+json/, what);
  assert.equal(res.body.status, status, what);
}

describe("API hardening", () => {
  let t: TestApp;
  let auth: Record<string, string>;
  let adminId: number;
  let bobId: number;

  before(async () => {
    t = await createTestApp();
    const admin = await createUser(t.db, { username: "admin", role: "server_admin" });
    adminId = admin.id;
    bobId = (await createUser(t.db, { username: "bob" })).id;
    auth = bearer((await tokenFor(t.db, admin)).token);
  });
  after(() => t.close());

  test("a failure while checking a token is answered as a problem, not left hanging", async () => {
    await t.db.execute(sql`alter table api_tokens rename to api_tokens_away`);
    try {
      const res = await supertest(t.app).get("/api/v1/me").set(auth).timeout(10_000);
      assertProblem(res, 500, "GET /me with the token table gone");
      assert.equal(res.headers["set-cookie"], undefined);
    } finally {
      await t.db.execute(sql`alter table api_tokens_away rename to api_tokens`);
    }
    await supertest(t.app).get("/api/v1/me").set(auth).expect(200);
  });

  test("an id too large for the database is invalid input (422), not a 500", async () => {
    const writes: [string, Record<string, unknown>, string][] = [
      ["/api/v1/imports", { directoryId: HUGE, query: { text: "alice" } }, "directoryId"],
      ["/api/v1/synchronizations", { directoryId: HUGE }, "directoryId"],
      ["/api/v1/role-copies", { from: `user:${adminId}`, to: [HUGE] }, "to.0"],
      [`/api/v1/users/${bobId}/role-assignments`, { roleId: HUGE }, "roleId"],
      [`/api/v1/users/${bobId}/conversion`, { directoryId: HUGE }, "directoryId"],
    ];
    for (const [path, body, field] of writes) {
      const res = await supertest(t.app).post(path).set(auth).send(body);
      assertProblem(res, 422, `POST ${path}`);
      assert.ok(res.body.errors?.[field], `POST ${path} names ${field}: ${res.text}`);
    }
    for (const path of ["/api/v1/imports", "/api/v1/synchronizations"]) {
      const res = await supertest(t.app).get(path).query({ directoryId: HUGE }).set(auth);
      assertProblem(res, 422, `GET ${path}?directoryId=${HUGE}`);
      assert.ok(res.body.errors?.directoryId);
    }
    const [bob] = await t.db.select().from(users).where(eq(users.id, bobId));
    assert.equal(bob?.kind, "internal", "nothing changed");
  });

  test("a runs cursor holding an id too large for the database is refused as not Roster's", async () => {
    const cursor = Buffer.from(JSON.stringify({ o: HUGE }), "utf8").toString("base64url");
    for (const path of ["/api/v1/imports", "/api/v1/synchronizations"]) {
      const res = await supertest(t.app).get(path).query({ cursor }).set(auth);
      assertProblem(res, 422, `GET ${path} with a crafted cursor`);
      assert.ok(res.body.errors?.cursor);
    }
  });

  test("a run's report is found under its own kind only, as the run itself is", async () => {
    const [sync] = await t.db
      .insert(importRuns)
      .values({
        kind: "synchronization",
        directoryName: "Gone",
        actorName: "admin",
        selection: { mode: "synchronize" },
        status: "succeeded",
      })
      .returning();
    const [imported] = await t.db
      .insert(importRuns)
      .values({
        directoryName: "Gone",
        actorName: "admin",
        selection: { mode: "query", text: "x", kind: "both" },
        status: "succeeded",
      })
      .returning();
    await supertest(t.app).get(`/api/v1/synchronizations/${sync?.id}/entries`).set(auth).expect(200);
    await supertest(t.app).get(`/api/v1/imports/${imported?.id}/entries`).set(auth).expect(200);
    await supertest(t.app).get(`/api/v1/imports/${sync?.id}`).set(auth).expect(404);
    assertProblem(
      await supertest(t.app).get(`/api/v1/imports/${sync?.id}/entries`).set(auth),
      404,
      "a synchronization's report under /imports",
    );
    assertProblem(
      await supertest(t.app).get(`/api/v1/synchronizations/${imported?.id}/entries`).set(auth),
      404,
      "an import's report under /synchronizations",
    );
  });

  test("an import of every match of a malformed filter is refused (422) before a run is queued", async () => {
    const directory = await makeDirectory(t.db);
    const before = await t.db.select().from(importRuns);
    const res = await supertest(t.app)
      .post("/api/v1/imports")
      .set(auth)
      .send({ directoryId: directory.id, query: { text: "(uid=alice" } });
    assertProblem(res, 422, "POST /imports with a malformed filter");
    assert.match(res.body.errors?.["query.text"] ?? "", /LDAP filter is not valid/);
    assert.equal((await t.db.select().from(importRuns)).length, before.length, "no run queued");
  });
});
