import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import supertest from "supertest";
import { createApi } from "../../src/api/router.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { concretePath } from "./support.ts";

type Doc = { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };

describe("OpenAPI description", () => {
  let t: TestApp;
  let doc: Doc;

  before(async () => {
    t = await createTestApp();
    doc = (await supertest(t.app).get("/api/v1/openapi.json").expect(200)).body;
  });
  after(() => t.close());

  test("is a valid OpenAPI 3.1 document", async () => {
    assert.equal(doc.openapi, "3.1.0");
    const result = await new Validator().validate(doc as never);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
  });

  test("every documented operation exists: it answers 401, not the API's 404", async () => {
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const method of Object.keys(methods)) {
        const res = await supertest(t.app)[method as "get"](concretePath(path));
        assert.equal(res.status, 401, `${method.toUpperCase()} ${path} answered ${res.status}: ${res.text}`);
        assert.ok(methods[method]?.responses["401"], `${method.toUpperCase()} ${path} documents its 401`);
      }
    }
  });

  test("every route the API's router answers is documented", () => {
    const api = createApi({
      db: t.db,
      secretBox: createSecretBox(t.config.encryptionKey),
      sessionCookie: "x",
    });
    const mounted = api.router.stack.flatMap((layer) => {
      const route = layer.route as { path: string; methods: Record<string, boolean> } | undefined;
      if (!route) return [];
      return Object.keys(route.methods).map((method) => `${method} ${route.path}`);
    });
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, methods]) =>
        Object.keys(methods).map((method) => `${method} ${path.replace(/\{(\w+)\}/g, ":$1")}`),
      ),
    );
    const undocumented = mounted.filter((route) => route !== "get /openapi.json" && !documented.has(route));
    assert.deepEqual(undocumented, []);
    assert.equal(mounted.length - 1, documented.size, "as many routes mounted as documented");
  });

  test("the browsable documentation is for signed-in users, served without a CDN", async () => {
    const anonymous = await supertest(t.app).get("/api/docs").expect(303);
    assert.match(String(anonymous.headers.location), /^\/login/);
    await createUser(t.db, { username: "reader" });
    const { agent } = await signedInAgent(t.app, "reader");
    const page = await agent.get("/api/docs").expect(200);
    assert.match(page.text, /src="\/vendor\/swagger-ui\/swagger-ui-bundle\.js"/);
    assert.doesNotMatch(page.text, /https?:\/\/(?!127\.0\.0\.1)[^"]*\.js/);
    assert.match(String(page.headers["content-security-policy"]), /script-src 'self'/);
    await agent.get("/vendor/swagger-ui/swagger-ui-bundle.js").expect(200);
    const init = await agent.get("/api/docs/init.js").expect(200);
    assert.match(init.text, /\/api\/v1\/openapi\.json/);
  });
});
