import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { desc, eq } from "drizzle-orm";
import supertest from "supertest";
import { apiTokens, auditLog, users } from "../../src/db/schema.ts";
import { revokeApiToken } from "../../src/services/api-tokens.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { bearer, concretePath, expireToken, tokenFor } from "./support.ts";

interface Operation {
  method: "get" | "post" | "delete";
  path: string;
  secured: boolean;
}

/** Every operation the OpenAPI document lists: the tests below go through all of them. */
async function operations(t: TestApp): Promise<Operation[]> {
  const doc = (await supertest(t.app).get("/api/v1/openapi.json").expect(200)).body as {
    paths: Record<string, Record<string, unknown>>;
  };
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((method) => ({
      method: method as Operation["method"],
      path,
      secured: path !== "/me",
    })),
  );
}

function call(t: TestApp, op: Operation, headers: Record<string, string> = {}) {
  const request = supertest(t.app)[op.method](concretePath(op.path)).set(headers);
  return op.method === "post" ? request.send({}) : request;
}

function assertProblem(res: supertest.Response, status: number, op: Operation, detail?: RegExp) {
  assert.equal(res.status, status, `${op.method.toUpperCase()} ${op.path}: ${res.text}`);
  assert.match(String(res.headers["content-type"]), /^application\/problem\+json/);
  assert.equal(res.body.status, status);
  if (detail) assert.match(res.body.detail, detail, `${op.method.toUpperCase()} ${op.path}`);
  assert.equal(res.headers["set-cookie"], undefined, "an API answer to a bearer request sets no cookie");
}

describe("API authentication", () => {
  let t: TestApp;
  let ops: Operation[];
  const tokens: Record<string, string> = {};

  before(async () => {
    t = await createTestApp();
    const admin = await createUser(t.db, { username: "admin", role: "server_admin" });
    const viewer = await createUser(t.db, { username: "viewer", role: "viewer" });
    const leaver = await createUser(t.db, { username: "leaver", role: "server_admin" });
    tokens.admin = (await tokenFor(t.db, admin)).token;
    tokens.viewer = (await tokenFor(t.db, viewer)).token;
    const revoked = await tokenFor(t.db, admin, { name: "old" });
    await revokeApiToken(t.db, { id: admin.id, name: "admin" }, admin.id, revoked.id);
    tokens.revoked = revoked.token;
    const expired = await tokenFor(t.db, admin, { name: "short" });
    await expireToken(t.db, expired.id);
    tokens.expired = expired.token;
    tokens.disabled = (await tokenFor(t.db, leaver)).token;
    await t.db.update(users).set({ enabled: false }).where(eq(users.id, leaver.id));
    ops = await operations(t);
    assert.ok(ops.length >= 30, `expected the whole API, found ${ops.length} operations`);
  });
  after(() => t.close());

  test("every route answers 401 problem+json without a token", async () => {
    for (const op of ops) {
      const res = await call(t, op);
      assertProblem(res, 401, op, /Authorization: Bearer/);
      assert.match(String(res.headers["www-authenticate"]), /^Bearer/);
    }
  });

  test("every route answers 401 to a token that isn't one, revoked, expired, or of a disabled user", async () => {
    const cases: [string, RegExp][] = [
      ["roster_not-a-real-token-at-all-0000000000000000000", /not valid/],
      ["something-else", /not a Roster API token/],
      [tokens.revoked ?? "", /revoked/],
      [tokens.expired ?? "", /expired/],
      [tokens.disabled ?? "", /can't sign in/],
    ];
    for (const op of ops) {
      for (const [token, detail] of cases) assertProblem(await call(t, op, bearer(token)), 401, op, detail);
    }
  });

  test("every route but /me answers 403 to the token of a user without the permission", async () => {
    for (const op of ops.filter((o) => o.secured)) {
      assertProblem(await call(t, op, bearer(tokens.viewer ?? "")), 403, op, /no role that allows this/);
    }
    const me = await supertest(t.app)
      .get("/api/v1/me")
      .set(bearer(tokens.viewer ?? ""))
      .expect(200);
    assert.equal(me.body.username, "viewer");
    assert.deepEqual(me.body.permissions, ["resources.view"]);
  });

  test("a valid token acts as its user, sets no cookie and records its last use", async () => {
    const res = await supertest(t.app)
      .get("/api/v1/me")
      .set(bearer(tokens.admin ?? ""))
      .expect(200);
    assert.equal(res.body.username, "admin");
    assert.equal(res.body.token.name, "test");
    assert.equal(res.headers["set-cookie"], undefined);
    const [row] = await t.db.select().from(apiTokens).where(eq(apiTokens.name, "test")).orderBy(apiTokens.id);
    assert.ok(row?.lastUsedAt, "last use recorded");
  });

  test("a role removed takes effect on the token's next request", async () => {
    const temp = await createUser(t.db, { username: "temp", role: "user_manager" });
    const { token } = await tokenFor(t.db, temp);
    await supertest(t.app).get("/api/v1/users").set(bearer(token)).expect(200);
    await t.db.execute(`delete from role_assignments where user_id = ${temp.id}` as never);
    await supertest(t.app).get("/api/v1/users").set(bearer(token)).expect(403);
  });

  test("tokens never reach the log, and the Authorization header is redacted", async () => {
    await supertest(t.app)
      .get("/api/v1/me")
      .set(bearer(tokens.admin ?? ""))
      .expect(200);
    const all = t.logs.join("\n");
    for (const token of Object.values(tokens)) assert.ok(!all.includes(token), "a token was logged");
    assert.match(all, /"authorization":"\[Redacted\]"/);
  });

  test("creating and revoking tokens is audited, without the token", async () => {
    const entries = await t.db.select().from(auditLog).orderBy(desc(auditLog.id));
    const actions = entries.map((e) => e.action);
    assert.ok(actions.includes("api_token.create"));
    assert.ok(actions.includes("api_token.revoke"));
    const text = JSON.stringify(entries);
    for (const token of Object.values(tokens)) assert.ok(!text.includes(token));
  });
});

describe("API with a session cookie", () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
    await createUser(t.db, { username: "admin", role: "server_admin" });
    await createUser(t.db, { username: "bob" });
  });
  after(() => t.close());

  test("reads work, writes need the CSRF token like every form", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const bob = (await agent.get("/api/v1/users?q=bob").expect(200)).body.items[0];
    const refused = await agent.post(`/api/v1/users/${bob.id}/login-status`).send({ enabled: false });
    assert.equal(refused.status, 403);
    assert.match(String(refused.headers["content-type"]), /problem\+json/);
    assert.match(refused.body.title, /CSRF/);
    const [still] = await t.db.select().from(users).where(eq(users.id, bob.id));
    assert.equal(still?.enabled, true, "nothing changed without the token");
    await agent
      .post(`/api/v1/users/${bob.id}/login-status`)
      .set("X-CSRF-Token", csrf)
      .send({ enabled: false })
      .expect(200);
    const [now] = await t.db.select().from(users).where(eq(users.id, bob.id));
    assert.equal(now?.enabled, false);
  });

  test("a bearer request carrying a session cookie too is judged by its token alone", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    await agent.get("/api/v1/me").set("Authorization", "Bearer roster_wrong").expect(401);
  });
});

describe("API rate limit", () => {
  test("answers 429 with Retry-After past the limit, per token", async () => {
    const t = await createTestApp({ deps: { apiRateLimit: { limit: 3, windowMs: 60_000 } } });
    try {
      const admin = await createUser(t.db, { username: "admin", role: "server_admin" });
      const first = await tokenFor(t.db, admin, { name: "one" });
      const second = await tokenFor(t.db, admin, { name: "two" });
      for (let i = 0; i < 3; i++)
        await supertest(t.app).get("/api/v1/me").set(bearer(first.token)).expect(200);
      const limited = await supertest(t.app).get("/api/v1/me").set(bearer(first.token));
      assert.equal(limited.status, 429);
      assert.match(String(limited.headers["content-type"]), /problem\+json/);
      const retry = Number(limited.headers["retry-after"]);
      assert.ok(retry >= 1 && retry <= 60, `Retry-After ${limited.headers["retry-after"]}`);
      await supertest(t.app).get("/api/v1/me").set(bearer(second.token)).expect(200);
    } finally {
      await t.close();
    }
  });
});
