import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import supertest from "supertest";
import { rateLimits, sessions, users } from "../../src/db/schema.ts";
import { createTestApp, createUser, csrfTokenOf, signedInAgent, type TestApp } from "../helpers/app.ts";
import { makeDirectory } from "../helpers/console.ts";
import { createTestDatabase } from "../helpers/database.ts";
import { asFragment } from "../helpers/http.ts";

let t: TestApp;
before(async () => {
  t = await createTestApp({
    config: { trustProxy: 1 },
    deps: { throttle: { windowMs: 60_000, perAccount: 3, perAddress: 100, perUsername: 6 } },
  });
});
after(() => t.close());

async function ensureUser(username: string, password = "correct horse battery staple") {
  const [existing] = await t.db.select().from(users).where(eq(users.username, username));
  if (!existing) await createUser(t.db, { username, password, role: "server_admin" });
}

/** The log lines written since `from`, parsed. */
function logsSince(from: number): Record<string, unknown>[] {
  return t.logs.slice(from).map((line) => JSON.parse(line));
}

describe("response headers", () => {
  test("the setup and sign-in pages are never stored, and deny powerful browser features", async () => {
    await t.db.delete(users);
    const setup = await supertest(t.app).get("/setup").expect(200);
    await ensureUser("admin");
    const login = await supertest(t.app).get("/login").expect(200);
    for (const res of [setup, login]) {
      assert.equal(res.headers["cache-control"], "no-store");
      for (const feature of ["camera", "microphone", "geolocation", "payment", "usb"]) {
        assert.match(res.headers["permissions-policy"] ?? "", new RegExp(`\\b${feature}=\\(\\)`));
      }
    }
  });

  test("a signed-in page and its htmx fragment are never stored", async () => {
    await ensureUser("admin");
    const { agent } = await signedInAgent(t.app, "admin");
    const page = await agent.get("/settings/audit-log").expect(200);
    const fragment = await asFragment(agent.get("/settings/audit-log?page=1"), "section#audit-log").expect(
      200,
    );
    assert.match(fragment.text, /^\s*<section id="audit-log"/, "the fragment, not the page");
    for (const res of [page, fragment]) {
      assert.equal(res.headers["cache-control"], "no-store");
      assert.match(res.headers["permissions-policy"] ?? "", /\bcamera=\(\)/);
    }
  });

  test("static files keep their own caching", async () => {
    for (const url of ["/static/app.css", "/vendor/htmx/htmx.min.js"]) {
      const res = await supertest(t.app).get(url).expect(200);
      assert.match(res.headers["cache-control"] ?? "", /^public, max-age=/, url);
    }
  });
});

describe("request logging", () => {
  test("answers Roster chose (404, 413, a directory's 502) are logged without a stack trace", async () => {
    await ensureUser("admin");
    const { agent } = await signedInAgent(t.app, "admin");
    const dead = await makeDirectory(t.db, "Dead LDAP"); // ldap://127.0.0.1:1 refuses at once
    const from = t.logs.length;
    await agent.get("/no/such/page").expect(404);
    await supertest(t.app)
      .post("/login")
      .type("form")
      .send({ username: "x".repeat(300_000), password: "y" })
      .expect(413);
    await agent.get(`/imports/new?directory=${dead.id}&q=alpha`).expect(502);
    const lines = logsSince(from);
    const badGateway = lines.filter((l) => (l.res as { statusCode?: number })?.statusCode === 502);
    assert.equal(badGateway.length, 1);
    assert.equal(badGateway[0]?.level, 40, "a warning, not an error");
    assert.ok(
      lines.every((l) => !("err" in l) && !JSON.stringify(l).includes('"stack"')),
      "no stack trace logged",
    );
    assert.ok(
      lines.every((l) => Number(l.level) < 50),
      "nothing logged as an error",
    );
  });

  test("an unexpected failure is logged once at error, with its real stack", async () => {
    const broken = await createTestApp({ database: await createTestDatabase() });
    await broken.database.destroy();
    await supertest(broken.app).get("/login").expect(500);
    const withStack = broken.logs.filter((line) => line.includes('"stack"'));
    assert.equal(withStack.length, 1, "one stack trace, not a made-up second one");
    assert.match(withStack[0] ?? "", /"level":50.*request failed/);
    assert.doesNotMatch(withStack[0] ?? "", /failed with status code/);
  });
});

describe("sign-in throttling", () => {
  const HOME = "198.51.100.20";
  const PASSWORD = "alice's long password";

  beforeEach(async () => {
    await t.db.delete(users);
    await t.db.delete(sessions);
    await t.db.delete(rateLimits);
    await createUser(t.db, { username: "alice", password: PASSWORD, role: "viewer" });
  });

  /** One sign-in attempt from a browser at the given address (TRUST_PROXY is on). */
  async function signInFrom(address: string, username: string, password: string) {
    const agent = supertest.agent(t.app);
    const page = await agent.get("/login").set("X-Forwarded-For", address).expect(200);
    return agent
      .post("/login")
      .set("X-Forwarded-For", address)
      .type("form")
      .send({ _csrf: csrfTokenOf(page.text), username, password });
  }

  test("a username spammed from other addresses still lets its user in from where they signed in before", async () => {
    assert.equal((await signInFrom(HOME, "alice", PASSWORD)).status, 303);
    // One address: refused after its own 3 failures, even the right password.
    for (let i = 0; i < 3; i++) assert.equal((await signInFrom("203.0.113.7", "alice", "wrong")).status, 401);
    assert.equal((await signInFrom("203.0.113.7", "alice", "wrong")).status, 429);
    assert.equal((await signInFrom("203.0.113.7", "alice", PASSWORD)).status, 429);
    // Spread over addresses: after 6 failures on the username, any new address is refused.
    for (let i = 0; i < 3; i++) assert.equal((await signInFrom("203.0.113.8", "alice", "wrong")).status, 401);
    const refused = await signInFrom("203.0.113.9", "alice", "wrong");
    assert.equal(refused.status, 429);
    assert.match(refused.text, /Too many failed sign-in attempts for this username/);
    assert.equal(
      (await signInFrom("203.0.113.9", "alice", PASSWORD)).status,
      429,
      "a guess can't get through",
    );
    // The user at home is not locked out.
    const home = await signInFrom(HOME, "alice", PASSWORD);
    assert.equal(home.status, 303);
    assert.equal(home.headers.location, "/");
    assert.equal((await signInFrom(HOME, "alice", "wrong")).status, 401, "wrong passwords are still refused");
  });

  test("an unknown username is locked the same way, so the lock tells nothing about who exists", async () => {
    for (const address of ["203.0.113.7", "203.0.113.8"]) {
      for (let i = 0; i < 3; i++) assert.equal((await signInFrom(address, "nobody", "wrong")).status, 401);
    }
    assert.equal((await signInFrom("203.0.113.9", "nobody", "wrong")).status, 429);
    assert.equal(
      (await signInFrom("203.0.113.9", "alice", PASSWORD)).status,
      303,
      "other usernames are free",
    );
  });
});

describe("hand-edited links and forms", () => {
  const cursor = (parts: unknown[]) => Buffer.from(JSON.stringify(parts), "utf8").toString("base64url");

  test("a list cursor naming an impossible time or holding a NUL character gets the first page, not a 500", async () => {
    await ensureUser("admin");
    const { agent } = await signedInAgent(t.app, "admin");
    const audit = await agent
      .get(`/settings/audit-log?before=${cursor(["2026-99-99 99:99", 1])}`)
      .expect(200);
    assert.match(audit.text, /<h1[^>]*>Audit log<\/h1>/);
    await agent.get(`/settings/audit-log?after=${cursor(["2026-02-30 10:00:00+00", 1])}`).expect(200);
    const list = await agent.get(`/users?after=${cursor(["a\u0000b", 0])}`).expect(200);
    assert.match(list.text, /<h1>Users and groups<\/h1>/);
    await agent.get(`/users?sort=activity&after=${cursor(["a", 0, 1, "2026-13-01 00:00"])}`).expect(200);
  });

  test("a role or directory id past the database's integers is refused beside the field, not a 500", async () => {
    await ensureUser("admin");
    await ensureUser("someone");
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const [someone] = await t.db.select().from(users).where(eq(users.username, "someone"));
    assert.ok(someone);
    const role = await agent
      .post(`/users/${someone.id}/role-assignments`)
      .type("form")
      .send({ _csrf: csrf, roleId: "99999999999", scope: "global" });
    assert.ok(role.status < 500, `role assignment answered ${role.status}`);
    const conversion = await agent
      .post(`/users/${someone.id}/conversion`)
      .type("form")
      .send({ _csrf: csrf, directoryId: "99999999999" });
    assert.ok(conversion.status < 500, `conversion answered ${conversion.status}`);
  });
});
