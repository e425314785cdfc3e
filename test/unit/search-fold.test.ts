import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { groups, users } from "../../src/db/schema.ts";
import { likePattern, searchFold, searchTextOf } from "../../src/services/names.ts";
import { listEntries } from "../../src/services/user-list.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

describe("searchFold", () => {
  test("drops case and Latin accents, keeps other scripts' marks", () => {
    assert.equal(searchFold("Émile ZOLA"), "emile zola");
    assert.equal(searchFold("Zoe\u0308"), "zoe", "a combining diaeresis goes too");
    assert.equal(searchFold("Đorđe Ørsted Łódź"), "dorde orsted lodz");
    assert.equal(searchFold("İstanbul"), "istanbul");
    assert.equal(searchFold("李小龙"), "李小龙");
    assert.equal(searchFold("नमस्ते"), "नमस्ते", "Devanagari vowel signs are letters' parts");
    assert.equal(searchFold("o'brien@EXAMPLE.test"), "o'brien@example.test");
  });

  test("LIKE patterns fold the same way and keep % and _ literal", () => {
    assert.equal(likePattern("Zoë_%"), "%zoe\\_\\%%");
  });
});

// Migration 0003 folds search texts written before it in SQL: it must agree with searchFold, or
// old rows would not be found by the folded search.
describe("migration 0003 (search texts folded in SQL)", () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t?.close());

  test("turns every old search text into what searchTextOf writes now", async () => {
    const names = [
      "Émile Zola",
      "Zoë Jansen",
      "Đorđe Petrović",
      "Søren Łukasz",
      "李小龙",
      "नमस्ते",
      "Plain Ascii",
    ];
    const old = (name: string) => name.normalize("NFC").toLowerCase();
    for (const [i, name] of names.entries()) {
      await t.db.insert(users).values({
        kind: "internal",
        username: `u${i}`,
        usernameKey: `u${i}`,
        fullName: name,
        searchText: `u${i}\n${old(name)}`,
      });
      await t.db
        .insert(groups)
        .values({ kind: "internal", name: `g${i}`, nameKey: `g${i}`, searchText: old(name) });
    }
    const migration = await readFile(new URL("../../drizzle/0003_search_fold.sql", import.meta.url), "utf8");
    for (const statement of migration.split("--> statement-breakpoint"))
      await t.db.execute(sql.raw(statement));

    const userRows = await t.db.select().from(users).orderBy(users.id);
    assert.deepEqual(
      userRows.map((u) => u.searchText),
      names.map((name, i) => searchTextOf(`u${i}`, name)),
    );
    const groupRows = await t.db.select().from(groups).orderBy(groups.id);
    assert.deepEqual(
      groupRows.map((g) => g.searchText),
      names.map((name) => searchTextOf(name)),
    );
  });
});

// Migration 0006 lists the email domains of rows written before it, in SQL; their search texts
// (without a tab) stay on the index whole, so they are found by their domain too.
describe("migration 0006 (email domains off the trigram index)", () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t?.close());

  test("lists the old rows' domains, folded, and finds the rows by them", async () => {
    const emails = ["Émile.Zola@Écrivains.fr", "søren@łódź.example", "plain@example.test", ""];
    for (const [i, email] of emails.entries()) {
      const username = `old${i}`;
      // As searchTextOf wrote users' search texts before: the email whole, no tab.
      await t.db.insert(users).values({
        kind: "internal",
        username,
        usernameKey: username,
        email,
        searchText: searchTextOf(username, email),
      });
    }
    await t.db.execute(sql`delete from email_domains`);
    const migration = await readFile(
      new URL("../../drizzle/0006_users_search_domains.sql", import.meta.url),
      "utf8",
    );
    // Only its data statement: the table, index and triggers are there already.
    const data = migration
      .split("--> statement-breakpoint")
      .map((statement) => statement.replace(/^\s*--.*$/gm, "").trim())
      .filter((statement) => statement.startsWith("INSERT"));
    assert.equal(data.length, 1);
    for (const statement of data) await t.db.execute(sql.raw(statement));
    const domains = await queryRows<{ domain: string }>(
      t.db,
      sql`select domain from email_domains order by 1`,
    );
    assert.deepEqual(
      domains.map((row) => row.domain),
      ["ecrivains.fr", "example.test", "lodz.example"],
    );
    const found = async (search: string) =>
      (await listEntries(t.db, { filter: "all", search, sort: "name" })).entries.map((e) => e.name);
    assert.deepEqual(await found("ecrivains"), ["old0"]);
    assert.deepEqual(await found("łódź.EXAMPLE"), ["old1"]);
    assert.deepEqual(await found("n@example.t"), ["old2"]);
  });
});
