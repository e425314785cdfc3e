import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { boolArray, intArray, textArray } from "../../src/services/sync/store.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

let t: TestApp;
before(async () => {
  t = await createTestApp();
});
after(() => t?.close());

test("array literals reach the database value for value, whatever the text holds", async () => {
  const texts = [
    "plain",
    "",
    "NULL",
    null,
    'O"Brien',
    "back\\slash\\",
    "a,b",
    "{braces}",
    " spaced ",
    "Zoë 李小龙 Đorđe",
    "<script>alert(1)</script>",
    "x".repeat(10_000),
  ];
  const rows = await queryRows<{ text: string | null; flag: boolean; n: number; i: number }>(
    t.db,
    sql`select v.text, v.flag, v.n, v.i from unnest(
          ${textArray(texts)}::text[],
          ${boolArray(texts.map((_, i) => i % 2 === 0))}::boolean[],
          ${intArray(texts.map((_, i) => i * 7))}::int[]
        ) with ordinality as v(text, flag, n, i) order by v.i`,
  );
  assert.deepEqual(
    rows.map((row) => row.text),
    texts,
  );
  assert.deepEqual(
    rows.map((row) => row.flag),
    texts.map((_, i) => i % 2 === 0),
  );
  assert.deepEqual(
    rows.map((row) => Number(row.n)),
    texts.map((_, i) => i * 7),
  );
});
