import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import { groups, users } from "../../src/db/schema.ts";
import { likePattern, searchFold, searchTextOf } from "../../src/services/names.ts";
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
