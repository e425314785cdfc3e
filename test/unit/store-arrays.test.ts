import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { boolArray, idsCondition, intArray, textArray } from "../../src/services/sync/store.ts";
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

test("an int array literal of more ids than one chunk holds reaches the database whole", async () => {
  const ids = Array.from({ length: 25_001 }, (_, i) => i * 3 - 7);
  const [row] = await queryRows<{ n: number; total: string; last: number }>(
    t.db,
    sql`select count(*)::int as n, sum(v)::text as total, (array_agg(v order by o desc))[1] as last
        from unnest(${intArray(ids)}::int[]) with ordinality as t(v, o)`,
  );
  assert.deepEqual(
    { n: row?.n, total: row?.total, last: Number(row?.last) },
    { n: ids.length, total: String(ids.reduce((a, b) => a + b, 0)), last: ids.at(-1) },
  );
  assert.equal(intArray([]), "{}");
});

test("an ids condition holds exactly those ids, as a literal for a few and a table for many", async () => {
  for (const [label, ids] of [
    ["a few", [3, 5, 8]],
    ["many", Array.from({ length: 25_000 }, (_, i) => i * 2)],
  ] as const) {
    const [row] = await t.db.transaction(async (tx) => {
      const condition = await idsCondition(tx as never, sql`g`, ids, "kept_ids");
      return queryRows<{ n: number; total: string }>(
        tx as never,
        sql`select count(*)::int as n, coalesce(sum(g), 0)::text as total
            from generate_series(0, 30000) as s(g) where ${condition}`,
      );
    });
    const within = ids.filter((id) => id <= 30_000);
    assert.deepEqual(
      { n: row?.n, total: row?.total },
      { n: within.length, total: String(within.reduce((a, b) => a + b, 0)) },
      label,
    );
  }
});
