import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import { directories, importRuns, users } from "../../src/db/schema.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { makeDirectory, makeExternalUser, makeGroup } from "../helpers/console.ts";
import { text } from "../helpers/http.ts";

let t: TestApp;

before(async () => {
  t = await createTestApp();
  await createUser(t.db, { username: "admin", fullName: "Ada Admin", role: "server_admin" });
  await createUser(t.db, { username: "viewer", role: "viewer" });
});
after(() => t.close());

async function homeText(username = "admin") {
  const { agent } = await signedInAgent(t.app, username);
  const res = await agent.get("/").expect(200);
  return { html: res.text, text: text(res.text) };
}

function section(html: string, id: string): string {
  const match = new RegExp(`<section id="${id}"[\\s\\S]*?</section>`).exec(html);
  return match ? text(match[0]) : "";
}

describe("Home", () => {
  test("a new installation is asked to add a directory first", async () => {
    const { html, text: page } = await homeText();
    assert.match(page, /Get started/);
    assert.match(html, /<a class="button" href="\/settings\/directories\/new">Add a directory<\/a>/);
    assert.match(section(html, "recent-runs"), /Nothing has been imported or synchronized yet/);
  });

  test("with a directory but nothing imported, the first step is to import from it", async () => {
    const directory = await makeDirectory(t.db, "Demo directory");
    const { html } = await homeText();
    assert.match(
      html,
      new RegExp(`href="/imports/new\\?directory=${directory.id}">Import from Demo directory</a>`),
    );
  });

  test("counts internal and external users, groups, directories and users the directory disabled", async () => {
    const [directory] = await t.db.select().from(directories);
    assert.ok(directory);
    for (const username of ["ext1", "ext2", "ext3"]) {
      await makeExternalUser(t.db, { username, directoryId: directory.id });
    }
    await t.db
      .update(users)
      .set({ enabled: false, disabledByDirectory: true })
      .where(eq(users.username, "ext3"));
    await makeGroup(t.db, { name: "Staff" });
    const { html, text: page } = await homeText();
    const counts = section(html, "home-counts");
    assert.match(counts, /2 internal users/);
    assert.match(counts, /3 external users/);
    assert.match(counts, /1 group\b/);
    assert.match(counts, /1 directory/);
    assert.match(counts, /1 user disabled by the directory/);
    assert.doesNotMatch(page, /Get started/, "no first step once users are imported");
  });

  test("past 10,000 users of a kind, its count is the database's estimate and says so", async () => {
    await t.db.execute(sql`insert into users (kind, username, username_key, search_text)
      select 'internal', 'many-' || i, 'many-' || i, 'many-' || i from generate_series(1, 11000) as i`);
    await t.db.execute(sql`analyze users`);
    try {
      const counts = section((await homeText()).html, "home-counts");
      assert.match(counts, /about 11,\d{3} internal users/);
      assert.match(counts, /(?<!about )\b1 directory/, 'what is counted exactly says no "about"');
    } finally {
      await t.db.execute(sql`delete from users where username like 'many-%'`);
    }
  });

  test("lists the last runs newest first with their outcome, and directories whose test or run failed", async () => {
    const broken = await makeDirectory(t.db, "Broken LDAP", { lastTestOk: false, lastTestedAt: new Date() });
    const [directory] = await t.db.select().from(directories);
    assert.ok(directory);
    const base = { actorName: "admin", selection: {}, directoryName: directory.name };
    await t.db.insert(importRuns).values([
      { ...base, directoryId: directory.id, status: "succeeded", created: 12, updated: 3, unchanged: 40 },
      {
        ...base,
        directoryId: directory.id,
        kind: "synchronization",
        status: "failed",
        error: "The directory did not answer within 10 seconds.",
      },
    ]);
    const { html } = await homeText();
    const runs = section(html, "recent-runs");
    assert.match(
      runs,
      /Synchronization #2 Demo directory Failed .*Import #1 Demo directory Finished 12 created, 3 updated, 40 unchanged/,
    );
    const problems = section(html, "directory-problems");
    assert.match(
      problems,
      /Demo directory The last synchronization failed \(.* UTC\): The directory did not answer/,
    );
    assert.match(problems, /Broken LDAP The last connection test failed/);
    assert.match(html, new RegExp(`href="/settings/directories/${broken.id}">Broken LDAP</a>`));
  });

  test("someone without console permissions sees only that", async () => {
    const { text: page } = await homeText("viewer");
    assert.match(page, /Your account has no console permissions/);
    assert.doesNotMatch(page, /At a glance|internal users|Get started/);
  });
});
