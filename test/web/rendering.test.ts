import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import supertest from "supertest";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { createTestDatabase } from "../helpers/database.ts";

let t: TestApp;
before(async () => {
  t = await createTestApp();
  await createUser(t.db, { username: "admin", role: "server_admin" });
  await createUser(t.db, { username: "mallory", fullName: "<script>alert(1)</script>" });
});
after(() => t.close());

describe("full page or partial", () => {
  test("a plain request gets the whole page with the region inside it", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent.get("/users?q=mall").expect(200);
    assert.match(res.text, /^<!doctype html>/);
    assert.match(res.text, /<section id="user-list"/);
    assert.match(res.text, /<a class="skip-link" href="#main">/);
    assert.match(res.headers.vary ?? "", /HX-Request/);
  });

  test("an htmx request for the region gets only the region", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent
      .get("/users?q=mall")
      .set("HX-Request", "true")
      .set("HX-Request-Type", "partial")
      .set("HX-Target", "section#user-list")
      .expect(200);
    assert.match(res.text, /^<section id="user-list"/);
    assert.doesNotMatch(res.text, /<html|<header/);
    assert.match(res.text, /mallory/);
    assert.doesNotMatch(res.text, /\badmin\b/, "the search applies to the partial");
    assert.match(res.headers.vary ?? "", /HX-Request/);
  });

  test("a boosted navigation (htmx, full) gets the whole page", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent
      .get("/users")
      .set("HX-Request", "true")
      .set("HX-Request-Type", "full")
      .expect(200);
    assert.match(res.text, /^<!doctype html>/);
  });

  test("markup stored in a field is shown as text", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent.get("/users?q=mall").expect(200);
    assert.match(res.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.doesNotMatch(res.text, /<script>alert/);
  });

  test("LIKE wildcards typed in the search match themselves", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent.get("/users?q=%25").expect(200);
    assert.match(res.text, /No users or groups match/);
  });
});

describe("headers and error pages", () => {
  test("sends a Content-Security-Policy that allows no inline script", async () => {
    const res = await supertest(t.app).get("/login");
    const csp = res.headers["content-security-policy"] ?? "";
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /script-src-attr 'none'/);
    assert.match(csp, /object-src 'none'/);
    assert.match(csp, /frame-ancestors 'self'/);
    assert.equal(res.headers["x-powered-by"], undefined);
    assert.equal(res.headers["x-content-type-options"], "nosniff");
  });

  test("serves htmx from node_modules", async () => {
    const res = await supertest(t.app).get("/vendor/htmx/htmx.min.js").expect(200);
    assert.match(res.headers["content-type"] ?? "", /javascript/);
    assert.match(res.text, /htmx/);
  });

  test("answers an unknown address with a 404 page", async () => {
    const res = await supertest(t.app).get("/no/such/page").expect(404);
    assert.match(res.text, /Page not found/);
  });

  test("answers a failure with a 500 page that leaks nothing, and logs the detail", async () => {
    const broken = await createTestApp({ database: await createTestDatabase() });
    await broken.database.destroy();
    const res = await supertest(broken.app).get("/login");
    assert.equal(res.status, 500);
    assert.match(res.text, /Something went wrong/);
    assert.match(res.text, /Reference: <code>[0-9a-f-]{36}<\/code>/);
    assert.doesNotMatch(
      res.text,
      /at \w+ \(|Error:|node_modules|closed/i,
      "no stack trace or driver message",
    );
    assert.match(broken.logs.join(""), /"level":50.*request failed/);
  });

  test("rejects an oversized form with 413, not a crash", async () => {
    const res = await supertest(t.app)
      .post("/login")
      .type("form")
      .send({ username: "x".repeat(300_000), password: "y" });
    assert.equal(res.status, 413);
    assert.match(res.text, /too much data/);
  });

  test("refuses a NUL character in an address or a form with 400 and a page that says so, not a crash", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const refused = [
      await agent.get("/users?q=a%00b"),
      await agent.get("/imports/new?kind=users&q=a%00*"),
      await agent
        .post("/imports/selection")
        .type("form")
        .send({ _csrf: csrf, q: "a", copyQ: "x\u0000", action: "find-source" }),
      await supertest(t.app).post("/login").type("form").send({ username: "admin\u0000", password: "y" }),
      // Other control characters get the form's own message beside the field (groups.test.ts).
      await agent.post("/groups").type("form").send({ _csrf: csrf, name: "bad\u0000name" }),
    ];
    for (const res of refused) {
      assert.equal(res.status, 400);
      assert.match(res.text, /That text has a character Roster can(’|'|&#39;)t accept/);
    }
    assert.equal((await agent.get("/users?q=ab")).status, 200, "the same request without it is served");
  });
});
