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
      const res: { text: string } = await asFragment(admin.agent.get(href), "section#audit-log").expect(200);
      assert.match(res.text, /^\s*<section id="audit-log"/);
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

function linkOf(html: string, id: string): string | null {
  const match = new RegExp(`id="${id}" href="([^"]+)"`).exec(html);
  return match?.[1] ? match[1].replace(/&amp;/g, "&") : null;
}

describe("the audit log's pages, dates, actions and export", () => {
  before(async () => {
    await t.db.insert(auditLog).values([
      {
        at: new Date("2025-12-31T23:59:59.999Z"),
        actorName: "robot",
        action: "import.succeeded",
        targetType: "directory",
        targetId: "7",
        targetName: "Corporate LDAP",
        details: { query: '=cmd|" /C calc"!A0', created: 3 },
      },
      {
        at: new Date("2026-01-03T00:00:00.000Z"),
        actorName: "robot",
        action: "directory.update",
        targetType: "directory",
        targetId: "7",
        targetName: "Corporate LDAP",
      },
    ]);
  });

  test("says which page of how many, with newest, newer, older and oldest links", async () => {
    const first = await admin.agent.get("/settings/audit-log?actor=robot").expect(200);
    assert.match(decode(first.text), /Page 1 of 3/);
    assert.equal(linkOf(first.text, "audit-first"), null);
    const oldest = await admin.agent.get(linkOf(first.text, "audit-last") ?? "").expect(200);
    assert.match(decode(oldest.text), /Page 3 of 3/);
    const oldestRows = rows(oldest.text);
    assert.equal(oldestRows.length, 22, "the oldest page holds what the full pages leave");
    assert.match(oldestRows[oldestRows.length - 1] ?? "", /Import finished Corporate LDAP \(directory\)/);
    assert.equal(linkOf(oldest.text, "audit-next"), null);
    const middle = await admin.agent.get(linkOf(oldest.text, "audit-previous") ?? "").expect(200);
    assert.match(decode(middle.text), /Page 2 of 3/);
    const newest = await admin.agent.get(linkOf(middle.text, "audit-previous") ?? "").expect(200);
    assert.deepEqual(rows(newest.text), rows(first.text));
    assert.equal(linkOf(newest.text, "audit-previous"), null, "no newer page before the newest");
  });

  test("filters by a date range in UTC days, both days included", async () => {
    const day = rows(
      (await admin.agent.get("/settings/audit-log?from=2026-01-02&to=2026-01-02").expect(200)).text,
    );
    assert.equal(day.length, 50);
    const count = async (query: string) => {
      const csv = await admin.agent.get(`/settings/audit-log.csv?${query}`).expect(200);
      return csv.text.split("\r\n").length - 2;
    };
    assert.equal(await count("from=2026-01-02&to=2026-01-02"), 120);
    assert.equal(await count("to=2025-12-31"), 1, "the last millisecond of the day is in it");
    assert.equal(await count("from=2026-01-03&actor=robot"), 1, "midnight starts the next day");
  });

  test("a date that isn't one, or an end before the start, is said beside its field with 422", async () => {
    const bad = await admin.agent.get("/settings/audit-log?from=2026-02-30").expect(422);
    assert.match(
      bad.text,
      /<p class="error" id="field-from-error"><span class="visually-hidden">Error:<\/span> Enter the start date as YYYY-MM-DD/,
    );
    assert.match(bad.text, /aria-describedby="field-from-hint field-from-error" aria-invalid="true"/);
    assert.match(bad.text, /class="error-summary"/);
    assert.equal(rows(bad.text).length, 50, "the rest of the filter still applies");
    const backwards = await admin.agent.get("/settings/audit-log?from=2026-02-01&to=2026-01-01").expect(422);
    assert.match(decode(backwards.text), /The end date must be on or after the start date/);
  });

  test("offers import, synchronization and directory actions by name, in groups", async () => {
    const res = await admin.agent.get("/settings/audit-log").expect(200);
    assert.match(
      res.text,
      /<optgroup label="Imports">\s*<option value="import.succeeded">Import finished<\/option>/,
    );
    assert.match(
      res.text,
      /<optgroup label="Directories">[\s\S]*?<option value="directory.enable">Directory enabled<\/option>/,
    );
    assert.match(res.text, /<optgroup label="Synchronizations">/);
    const imports = rows(
      (await admin.agent.get("/settings/audit-log?action=import.succeeded").expect(200)).text,
    );
    assert.equal(imports.length, 1);
    assert.match(imports[0] ?? "", /robot Import finished Corporate LDAP \(directory\) query: =cmd/);
  });

  test("exports every matching entry as CSV, newest first, quoted as needed", async () => {
    const res = await admin.agent.get("/settings/audit-log.csv?actor=robot").expect(200);
    assert.match(res.headers["content-type"] ?? "", /^text\/csv; charset=utf-8/);
    const lines = res.text.split("\r\n");
    assert.equal(lines[0], "\uFEFFWhen (UTC),Who,What,Action,Target type,Target id,Target,Details");
    assert.equal(lines.length, 1 + 122 + 1);
    assert.equal(
      lines[1],
      "2026-01-03T00:00:00.000Z,robot,Directory edited,directory.update,directory,7,Corporate LDAP,",
    );
    assert.equal(
      lines[122],
      `2025-12-31T23:59:59.999Z,robot,Import finished,import.succeeded,directory,7,Corporate LDAP,"query: =cmd|"" /C calc""!A0; created: 3"`,
      "a formula not at the start of a cell is only quoted",
    );
    const page = await admin.agent.get("/settings/audit-log?actor=robot&to=2026-01-02").expect(200);
    assert.equal(linkOf(page.text, "audit-export"), "/settings/audit-log.csv?actor=robot&to=2026-01-02");
  });

  test("the export is for user managers only", async () => {
    await createUser(t.db, { username: "audit-viewer", role: "viewer" });
    const viewer = await signedInAgent(t.app, "audit-viewer");
    await viewer.agent.get("/settings/audit-log.csv").expect(403);
  });
});
