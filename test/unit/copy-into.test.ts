import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import { copyInto, copyText, type Db, queryRows, sqlState } from "../../src/db/client.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";

// copyInto writes an import's new users by COPY. Values arrive from a directory, so every character
// must come back as it went in, and a refused COPY must fail its statement like an INSERT would.
describe("copyInto", () => {
  let database: TestDatabase;
  let db: Db;

  before(async () => {
    database = await createTestDatabase();
    db = database.db;
    await db.execute(sql`create table copy_probe (id int primary key, label text, note text)`);
  });
  after(() => database?.destroy());
  beforeEach(async () => {
    await db.execute(sql`delete from copy_probe`);
  });

  const line = (id: number, label: string | null, note: string | null) =>
    `${id}\t${copyText(label)}\t${copyText(note)}`;

  test("every character comes back as it went in", async () => {
    const values = [
      "tab\there",
      "new\nline",
      "carriage\rreturn",
      "back\\slash",
      "\\N",
      "\\.",
      "\\",
      "trailing\\",
      "Zoë Đorđe 李小龙 <b>&amp;</b> \"q\" 'a' ; , = + * ( ) \u{1F600}",
      "",
      "a".repeat(100_000),
    ];
    await db.transaction(async (tx) => {
      await copyInto(
        tx as unknown as Db,
        "copy_probe",
        ["id", "label", "note"],
        [...values.map((value, i) => line(i, value, null)), line(values.length, null, "null label")],
      );
    });
    const rows = await queryRows<{ id: number; label: string | null; note: string | null }>(
      db,
      sql`select id, label, note from copy_probe order by id`,
    );
    assert.deepEqual(
      rows.map((row) => row.label),
      [...values, null],
    );
    assert.equal(rows[0]?.note, null);
    assert.equal(rows.at(-1)?.note, "null label");
  });

  // A timeout: postgres.js on its own never settles a refused COPY (see copyInto).
  test("a refused COPY fails with the server's reason, and the transaction can roll back to a savepoint", {
    timeout: 20_000,
  }, async () => {
    await db.execute(sql`insert into copy_probe (id, label) values (2, 'taken')`);
    let reason: string | undefined;
    await db.transaction(async (tx) => {
      try {
        await tx.transaction((savepoint) =>
          copyInto(
            savepoint as unknown as Db,
            "copy_probe",
            ["id", "label", "note"],
            [line(1, "one", null), line(2, "two", null)],
          ),
        );
      } catch (err) {
        reason = sqlState(err);
      }
      await tx.execute(sql`insert into copy_probe (id, label) values (3, 'after')`);
    });
    assert.equal(reason, "23505", "the unique violation reaches the caller");
    const rows = await queryRows<{ id: number; label: string }>(
      db,
      sql`select id, label from copy_probe order by id`,
    );
    assert.deepEqual(
      rows.map((row) => [row.id, row.label]),
      [
        [2, "taken"],
        [3, "after"],
      ],
    );
  });
});
