import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { count, eq } from "drizzle-orm";
import supertest from "supertest";
import { rateLimits, roleAssignments, roles, sessions, users } from "../../src/db/schema.ts";
import { createTestApp, createUser, csrfTokenOf, signedInAgent, type TestApp } from "../helpers/app.ts";

let t: TestApp;

before(async () => {
  t = await createTestApp({ deps: { throttle: { windowMs: 60_000, perAccount: 3, perAddress: 100 } } });
});
after(() => t.close());

async function reset() {
  await t.db.delete(users);
  await t.db.delete(sessions);
  await t.db.delete(rateLimits);
}

describe("first start", () => {
  beforeEach(reset);

  test("sends the sign-in page to the one-time setup page while no user exists", async () => {
    const res = await supertest(t.app).get("/login").expect(303);
    assert.equal(res.headers.location, "/setup");
  });

  test("re-renders setup with 422 and messages beside the fields when the input is invalid", async () => {
    const agent = supertest.agent(t.app);
    const page = await agent.get("/setup").expect(200);
    const res = await agent
      .post("/setup")
      .type("form")
      .send({
        _csrf: csrfTokenOf(page.text),
        username: "ad min",
        password: "short",
        passwordConfirmation: "other",
      })
      .expect(422);
    assert.match(res.text, /There is a problem/);
    assert.match(res.text, /id="field-username-error"[^>]*>.*Usernames can&#39;t contain spaces/s);
    assert.match(res.text, /id="field-password-error"[^>]*>.*Use at least 12 characters/s);
    assert.match(res.text, /aria-describedby="field-username-error"/);
    assert.match(res.text, /value="ad min"/, "keeps what was typed");
    assert.doesNotMatch(res.text, /value="short"/, "never echoes a password");
    assert.equal(Number((await t.db.select({ n: count() }).from(users))[0]?.n), 0);
  });

  test("creates the first administrator, signs it in, and is then closed", async () => {
    const agent = supertest.agent(t.app);
    const page = await agent.get("/setup").expect(200);
    const res = await agent
      .post("/setup")
      .type("form")
      .send({
        _csrf: csrfTokenOf(page.text),
        username: "Zoë",
        fullName: "Zoë Admin",
        password: "a long enough password",
        passwordConfirmation: "a long enough password",
      })
      .expect(303);
    assert.equal(res.headers.location, "/");
    const [admin] = await t.db.select().from(users);
    assert.equal(admin?.username, "Zoë");
    assert.notEqual(admin?.passwordHash, "a long enough password");
    assert.match(admin?.passwordHash ?? "", /^\$argon2id\$/);
    const [assignment] = await t.db
      .select({ key: roles.key, scope: roleAssignments.scope })
      .from(roleAssignments)
      .innerJoin(roles, eq(roles.id, roleAssignments.roleId))
      .where(eq(roleAssignments.userId, admin?.id ?? -1));
    assert.deepEqual(assignment, { key: "server_admin", scope: "" });
    const home = await agent.get("/").expect(200);
    assert.match(home.text, /Welcome, Zoë Admin/);
    await supertest(t.app).get("/setup").expect(303).expect("location", "/login");
  });
});

describe("sign-in", () => {
  beforeEach(async () => {
    await reset();
    await createUser(t.db, { username: "alice", password: "alice's long password", role: "server_admin" });
    await createUser(t.db, { username: "bob", password: "bob's long password" });
  });

  test("refuses a wrong password with 401 and the same message as an unknown user", async () => {
    const agent = supertest.agent(t.app);
    const token = csrfTokenOf((await agent.get("/login")).text);
    const wrong = await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "alice", password: "nope" });
    const unknown = await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "nobody", password: "x" });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    assert.match(wrong.text, /The username or password is not correct\./);
    assert.match(unknown.text, /The username or password is not correct\./);
  });

  test("matches the username case-insensitively and after NFC normalization", async () => {
    await createUser(t.db, { username: "Zoë", password: "zoe's long password", role: "viewer" });
    const agent = supertest.agent(t.app);
    const token = csrfTokenOf((await agent.get("/login")).text);
    await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "ZOE\u0308", password: "zoe's long password" })
      .expect(303);
  });

  test("starts a new session id at sign-in and stores the session in the database", async () => {
    const agent = supertest.agent(t.app);
    const page = await agent.get("/login");
    const before = sessionCookie(page.headers["set-cookie"]);
    const res = await agent
      .post("/login")
      .type("form")
      .send({
        _csrf: csrfTokenOf(page.text),
        username: "alice",
        password: "alice's long password",
        returnTo: "/users",
      })
      .expect(303);
    assert.equal(res.headers.location, "/users");
    const afterLogin = sessionCookie(res.headers["set-cookie"]);
    assert.ok(before && afterLogin);
    assert.notEqual(afterLogin, before, "the pre-login session id is not reused");
    const rows = await t.db.select().from(sessions);
    assert.ok(rows.some((r) => (r.sess as { userId?: number }).userId !== undefined));
  });

  test("sets an HttpOnly, SameSite=Lax cookie that expires after the idle time", async () => {
    const res = await supertest(t.app).get("/login");
    const cookie = res.headers["set-cookie"]?.[0] ?? "";
    assert.match(cookie, /^roster\.sid=/);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Lax/);
    assert.doesNotMatch(cookie, /Secure/);
    const expires = Date.parse(/Expires=([^;]+)/.exec(cookie)?.[1] ?? "");
    assert.ok(Math.abs(expires - (Date.now() + 30 * 60_000)) < 60_000);
  });

  test("never follows a returnTo that leaves the site", async () => {
    const agent = supertest.agent(t.app);
    const token = csrfTokenOf((await agent.get("/login")).text);
    const res = await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "alice", password: "alice's long password", returnTo: "//evil.test/x" })
      .expect(303);
    assert.equal(res.headers.location, "/");
  });

  test("throttles an account after repeated failures, even with the right password", async () => {
    const agent = supertest.agent(t.app);
    const token = csrfTokenOf((await agent.get("/login")).text);
    for (let i = 0; i < 3; i++) {
      await agent
        .post("/login")
        .type("form")
        .send({ _csrf: token, username: "alice", password: "wrong" })
        .expect(401);
    }
    const res = await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "alice", password: "alice's long password" })
      .expect(429);
    assert.match(res.text, /Too many failed sign-in attempts/);
    const [row] = (await t.db.select().from(rateLimits)).filter((r) =>
      /^login-account:.*\|alice$/.test(r.key),
    );
    assert.ok((row?.hits ?? 0) >= 3, "the counter lives in the database, shared by all instances");
    // Another account from the same address is not held up.
    await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "bob", password: "bob's long password" })
      .expect(303);
  });

  test("rejects a form without the CSRF token", async () => {
    const res = await supertest(t.app)
      .post("/login")
      .type("form")
      .send({ username: "alice", password: "alice's long password" })
      .expect(403);
    assert.match(res.text, /This form has expired/);
  });

  test("rejects a CSRF token from another session", async () => {
    const other = csrfTokenOf((await supertest(t.app).get("/login")).text);
    const agent = supertest.agent(t.app);
    await agent.get("/login");
    await agent
      .post("/login")
      .type("form")
      .send({ _csrf: other, username: "alice", password: "alice's long password" })
      .expect(403);
  });

  test("signs out: the session is gone and protected pages ask to sign in again", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "alice", "alice's long password");
    await agent.get("/users").expect(200);
    await agent.post("/logout").type("form").send({ _csrf: csrf }).expect(303).expect("location", "/login");
    await agent.get("/users").expect(303).expect("location", "/login?returnTo=%2Fusers");
  });

  test("ends the session of a user who has been disabled", async () => {
    const { agent } = await signedInAgent(t.app, "alice", "alice's long password");
    await t.db.update(users).set({ enabled: false }).where(eq(users.username, "alice"));
    await agent.get("/users").expect(303);
  });

  test("a disabled user cannot sign in", async () => {
    await t.db.update(users).set({ enabled: false }).where(eq(users.username, "bob"));
    const agent = supertest.agent(t.app);
    const token = csrfTokenOf((await agent.get("/login")).text);
    await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "bob", password: "bob's long password" })
      .expect(401);
  });

  test("never writes a password to the log", async () => {
    const agent = supertest.agent(t.app);
    const token = csrfTokenOf((await agent.get("/login")).text);
    await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "alice", password: "Secret-Typo-123" });
    await agent
      .post("/login")
      .type("form")
      .send({ _csrf: token, username: "alice", password: "alice's long password" });
    const all = t.logs.join("");
    assert.match(all, /sign-in refused/);
    assert.doesNotMatch(all, /Secret-Typo-123|alice's long password/);
    assert.doesNotMatch(all, /roster\.sid=/, "session cookies are redacted");
  });
});

function sessionCookie(header: string[] | string | undefined): string | undefined {
  const list = Array.isArray(header) ? header : header ? [header] : [];
  return list.find((c) => c.startsWith("roster.sid="))?.split(";")[0];
}
