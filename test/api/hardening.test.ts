/**
 * The API under failure and hostile input: every answer is a problem+json, never a hung request
 * or a crash.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import supertest from "supertest";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import { bearer, tokenFor } from "./support.ts";

function assertProblem(res: supertest.Response, status: number, what: string) {
  assert.equal(res.status, status, `${what}: ${res.status} ${res.text}`);
  assert.match(String(res.headers["content-type"]), /^application\/problem\+json/, what);
  assert.equal(res.body.status, status, what);
}

describe("API hardening", () => {
  let t: TestApp;
  let auth: Record<string, string>;

  before(async () => {
    t = await createTestApp();
    const admin = await createUser(t.db, { username: "admin", role: "server_admin" });
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
});
