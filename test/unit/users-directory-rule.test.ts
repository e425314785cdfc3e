import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import { type Db, queryRows, sqlState } from "../../src/db/client.ts";
import { directories, users } from "../../src/db/schema.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";

// users.directory_id is guarded by the triggers of migration 0004 instead of a foreign key: the
// same rule, checked once per statement. These tests hold them to what the foreign key did.
describe("users.directory_id (checked per statement)", () => {
  let database: TestDatabase;
  let db: Db;
  let nextPosition = 1;

  before(async () => {
    database = await createTestDatabase();
    db = database.db;
  });
  after(() => database?.destroy());
  beforeEach(async () => {
    await db.delete(users);
  });

  async function addDirectory(): Promise<number> {
    const position = nextPosition++;
    const [row] = await db
      .insert(directories)
      .values({
        ...presetMapping("openldap"),
        name: `directory ${position}`,
        position,
        urls: ["ldap://127.0.0.1:1"],
        baseDn: `dc=d${position},dc=test`,
      })
      .returning({ id: directories.id });
    assert.ok(row);
    return row.id;
  }

  function external(username: string, directoryId: number | null) {
    return {
      kind: "external" as const,
      username,
      usernameKey: username,
      directoryId,
      externalId: `id-${username}`,
    };
  }

  /** The SQLSTATE the work fails with; undefined when it succeeds. */
  async function failure(work: Promise<unknown>): Promise<string | undefined> {
    try {
      await work;
    } catch (err) {
      return sqlState(err);
    }
    return undefined;
  }

  /** A promise and the function that resolves it: one transaction waits for the test's signal. */
  function signal(): { promise: Promise<void>; send: () => void } {
    let send!: () => void;
    const promise = new Promise<void>((resolve) => {
      send = resolve;
    });
    return { promise, send };
  }

  const stored = () =>
    db
      .select({ username: users.username, directoryId: users.directoryId })
      .from(users)
      .orderBy(users.username);

  test("a user can only name a directory that exists, when inserted and when updated", async () => {
    const directory = await addDirectory();
    const missing = directory + 1000;
    await db.insert(users).values([external("ann", directory), external("bob", null)]);

    assert.equal(
      await failure(db.insert(users).values([external("cy", directory), external("dee", missing)])),
      "23503",
      "one row naming a missing directory fails the statement",
    );
    assert.equal(
      await failure(db.update(users).set({ directoryId: missing }).where(eq(users.username, "bob"))),
      "23503",
    );
    await db.update(users).set({ directoryId: directory }).where(eq(users.username, "bob"));
    await db.update(users).set({ fullName: "Ann" }).where(eq(users.username, "ann"));
    assert.deepEqual(await stored(), [
      { username: "ann", directoryId: directory },
      { username: "bob", directoryId: directory },
    ]);
  });

  test("deleting a directory keeps its users and clears their directory; other users keep theirs", async () => {
    const gone = await addDirectory();
    const kept = await addDirectory();
    await db.insert(users).values([external("ann", gone), external("bob", kept), external("cy", gone)]);
    await db.delete(directories).where(eq(directories.id, gone));
    assert.deepEqual(await stored(), [
      { username: "ann", directoryId: null },
      { username: "bob", directoryId: kept },
      { username: "cy", directoryId: null },
    ]);
  });

  // Two connections at once need a PostgreSQL server; PGlite has one.
  const onServer = process.env.DATABASE_URL ? {} : { skip: "needs DATABASE_URL (two connections at once)" };

  test(
    "a directory being written to is deleted only after the writer commits, and its new users are cleared",
    onServer,
    async () => {
      const directory = await addDirectory();
      const inserted = signal();
      const commit = signal();
      const writer = db.transaction(async (tx) => {
        await tx.insert(users).values([external("ann", directory), external("bob", directory)]);
        inserted.send();
        await commit.promise;
      });
      await inserted.promise;
      let deleted = false;
      const deletion = db
        .delete(directories)
        .where(eq(directories.id, directory))
        .then(() => {
          deleted = true;
        });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const waited = !deleted;
      commit.send();
      await writer;
      await deletion;
      assert.ok(waited, "the deletion waits for the writer's lock on the directory");
      assert.deepEqual(await stored(), [
        { username: "ann", directoryId: null },
        { username: "bob", directoryId: null },
      ]);
    },
  );

  test("a writer that comes after a deletion it waited for fails, and writes nothing", onServer, async () => {
    const directory = await addDirectory();
    const deleted = signal();
    const commit = signal();
    const deletion = db.transaction(async (tx) => {
      await tx.delete(directories).where(eq(directories.id, directory));
      deleted.send();
      await commit.promise;
    });
    await deleted.promise;
    const writing = failure(db.insert(users).values(external("ann", directory)));
    await new Promise((resolve) => setTimeout(resolve, 300));
    commit.send();
    await deletion;
    assert.equal(await writing, "23503");
    assert.deepEqual(await stored(), []);
    const [row] = await queryRows<{ n: number }>(
      db,
      sql`select count(*)::int as n from directories where id = ${directory}`,
    );
    assert.equal(row?.n, 0);
  });
});
