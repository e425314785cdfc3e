import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { auditLog } from "../../src/db/schema.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { asFragment, decode, postForm } from "../helpers/http.ts";

let t: TestApp;
let admin: Awaited<ReturnType<typeof signedInAgent>>;
let targetId: number;

before(async () => {
  t = await createTestApp();
  await createUser(t.db, { username: "Admin", role: "server_admin" });
  admin = await signedInAgent(t.app, "admin");
  // 120 entries in the same microsecond: paging must still neither skip nor repeat one.
  const at = new Date("2026-01-02T03:04:05.678Z");
  await t.db.insert(auditLog).values(
    Array.from({ length: 120 }, (_, i) => ({
      at,
      actorName: "robot",
      action: "user.enable",
      targetType: "user",
      targetId: String(1000 + i),
      targetName: `bulk-${String(i).padStart(3, "0")}`,
    })),
  );
  const target = await createUser(t.db, { username: "target" });
  targetId = target.id;
  await postForm(admin.agent, `/users/${target.id}`, admin.csrf, { fullName: "Tar Get" }).expect(303);
  await postForm(admin.agent, `/users/${target.id}/login-status`, admin.csrf, { status: "disabled" }).expect(
    303,
  );
});
after(() => t.close());

function rows(html: string): string[] {
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? "";
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => decode(m[1] ?? ""));
}

describe("the audit log", () => {
  test("is a section of Settings", async () => {
    const res = await admin.agent.get("/settings").expect(200);
    assert.match(res.text, /<a href="\/settings\/audit-log">Audit log<\/a>/);
  });

  test("shows the newest changes first, with who, what, target and details", async () => {
    const res = await admin.agent.get("/settings/audit-log").expect(200);
    const [first, second] = rows(res.text);
    assert.match(first ?? "", /UTC Admin User disabled target \(user\)/);
    assert.match(second ?? "", /UTC Admin User edited target \(user\) fullName: \(none\) → Tar Get/);
    assert.match(res.text, new RegExp(`<a href="/users/${targetId}">target</a>`));
  });

  test("filters by actor (in any case), by target, and by action", async () => {
    const byActor = rows((await admin.agent.get("/settings/audit-log?actor=ADMIN").expect(200)).text);
    assert.equal(byActor.length, 2);
    const byTarget = rows(
      (await admin.agent.get(`/settings/audit-log?target=user:${targetId}`).expect(200)).text,
    );
    assert.equal(byTarget.length, 2);
    const byName = rows((await admin.agent.get("/settings/audit-log?target=BULK-007").expect(200)).text);
    assert.equal(byName.length, 1);
    const byAction = rows((await admin.agent.get("/settings/audit-log?action=user.update").expect(200)).text);
    assert.equal(byAction.length, 1);
    const none = await admin.agent.get("/settings/audit-log?actor=nobody").expect(200);
    assert.match(none.text, /No entries match this filter/);
  });

  test("pages by keyset through entries that share a timestamp, as pages and as fragments", async () => {
    const seen: string[] = [];
    let href: string | null = "/settings/audit-log?actor=robot";
    let pages = 0;
    while (href) {
      const res: { text: string } = await asFragment(admin.agent.get(href), "section#audit-entries").expect(
        200,
      );
      assert.match(res.text, /^\s*<section id="audit-entries"/);
      seen.push(...rows(res.text).map((r) => /bulk-\d+/.exec(r)?.[0] ?? ""));
      href = /id="audit-next" href="([^"]+)"/.exec(res.text)?.[1]?.replace(/&amp;/g, "&") ?? null;
      pages += 1;
    }
    assert.equal(pages, 3);
    assert.equal(seen.length, 120);
    assert.equal(new Set(seen).size, 120);
    const full = await admin.agent.get("/settings/audit-log?actor=robot").expect(200);
    assert.match(full.text, /^<!doctype html>/);
    assert.match(full.text, /<form id="audit-filter"/);
  });

  test("ignores an unknown action or a tampered cursor", async () => {
    const res = await admin.agent.get("/settings/audit-log?action=drop+table&before=garbage").expect(200);
    assert.equal(rows(res.text).length, 50);
  });
});
