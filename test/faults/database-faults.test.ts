/**
 * Faults of the PostgreSQL server under a live Roster: its connections terminated mid-work. Needs a
 * server (DATABASE_URL); the PGlite pass skips it.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import { pino } from "pino";
import supertest from "supertest";
import { connectPostgres, isConnectionLost, openDatabase, queryRows } from "../../src/db/client.ts";
import { importRuns } from "../../src/db/schema.ts";
import { handleUncaught } from "../../src/server.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
import { createTestApp } from "../helpers/app.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/database.ts";
import { closedPort, skipWithoutSlapd } from "../ldap/support.ts";
import {
  closeImportTestBed,
  type ImportTestBed,
  openImportTestBed,
  runQueued,
  testWorker,
} from "../web/import-support.ts";

const serverUrl = process.env.DATABASE_URL;
const needsServer = serverUrl ? false : "needs a PostgreSQL server (DATABASE_URL)";

/** Terminates every connection Roster holds to the test's database (not this admin connection's own). */
async function terminateRosterBackends(database: TestDatabase): Promise<number> {
  const admin = connectPostgres(serverUrl ?? "", { max: 1, onnotice: () => {} });
  try {
    const [name] = await queryRows<{ name: string }>(database.db, sql`select current_database() as name`);
    const killed = await admin`
      select pg_terminate_backend(pid) as ok from pg_stat_activity
      where datname = ${name?.name ?? ""} and pid <> pg_backend_pid()`;
    return killed.length;
  } finally {
    await admin.end();
  }
}

async function retryOnLostConnection<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await work();
    } catch (err) {
      if (attempt >= 3 || !isConnectionLost(err)) throw err;
    }
  }
}

describe("the database driver when PostgreSQL terminates its connections", { skip: needsServer }, () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(() => database?.destroy());

  test("keeps the process alive: every transaction cut short rejects with a connection error, later ones work", async () => {
    // Small writes are flushed on the next tick; a connection closed in between used to throw
    // from a timer (postgres.js 3.4.9, porsager/postgres #1154): no await caught it, the process died.
    let ok = 0;
    const failures: unknown[] = [];
    const until = Date.now() + 3000;
    const worker = async () => {
      while (Date.now() < until) {
        try {
          await database.db.transaction(async (tx) => {
            await tx.execute(sql`select 1`);
            await tx.execute(sql`select pg_sleep(0.001)`);
            await tx.execute(sql`select ${"x".repeat(10)}::text`);
          });
          ok += 1;
        } catch (err) {
          failures.push(err);
        }
      }
    };
    const kills: Promise<unknown>[] = [];
    const killer = setInterval(() => kills.push(terminateRosterBackends(database).catch(() => 0)), 40);
    try {
      await Promise.all([worker(), worker(), worker(), worker(), worker(), worker()]);
    } finally {
      clearInterval(killer);
      await Promise.all(kills);
    }
    // A connection killed at the very end may still be taken once; the pool then opens a new one.
    const after = await retryOnLostConnection(() =>
      queryRows<{ n: number }>(database.db, sql`select 2 as n`),
    );
    assert.equal(after[0]?.n, 2);
    assert.ok(ok > 0);
  });
});

describe("an import run whose database connections are terminated mid-run", {
  skip: needsServer || skipWithoutSlapd,
}, () => {
  let bed: ImportTestBed;
  before(async () => {
    bed = await openImportTestBed();
  });
  after(() => closeImportTestBed(bed));

  test("retries the batch on a new connection and completes with exact counts and no duplicates", async () => {
    // The 3rd and the 6th statement that writes users end their own connection mid-transaction,
    // as pg_terminate_backend from an operator would (a sequence: its count survives the rollback).
    await bed.t.db.execute(sql`create sequence fault_writes`);
    await bed.t.db.execute(
      sql.raw(`
      create function terminate_some_writes() returns trigger language plpgsql as $$
      begin
        if nextval('fault_writes') in (3, 6) then perform pg_terminate_backend(pg_backend_pid()); end if;
        return null;
      end $$`),
    );
    await bed.t.db.execute(
      sql`create trigger terminate_some_writes after insert on users for each statement execute function terminate_some_writes()`,
    );
    const worker = testWorker(bed.t.db, bed.t.config.encryptionKey, { batchSize: 200 });
    const run = await createRun(bed.t.db, {
      directory: { id: bed.directoryId, name: "Example LDAP" },
      actor: { id: bed.adminId, name: "admin" },
      query: "everyone",
      selection: { mode: "query", text: "everyone", kind: "groups" },
      copyRolesFrom: null,
      total: null,
    });
    await runQueued(worker);
    await worker.stop();
    const [writes] = await queryRows<{ n: string }>(
      bed.t.db,
      sql`select last_value::text as n from fault_writes`,
    );
    assert.ok(Number(writes?.n) > 6, "both faults were injected");

    const [ended] = await bed.t.db.select().from(importRuns).where(sql`${importRuns.id} = ${run.id}`);
    assert.equal(ended?.status, "succeeded", ended?.error ?? "");
    const expected = bed.fixture.everyone.usernames.length;
    assert.equal(ended?.created, expected + 1, "every member and the group created once");
    assert.equal(ended?.processed, ended?.total);

    const [counts] = await queryRows<{
      users: number;
      distinct_names: number;
      members: number;
      distinct_members: number;
    }>(
      bed.t.db,
      sql`select (select count(*)::int from users where directory_id = ${bed.directoryId}) as users,
                 (select count(distinct lower(normalize(username, NFC)))::int from users) as distinct_names,
                 (select count(*)::int from group_members) as members,
                 (select count(*)::int from (select distinct group_id, user_id from group_members) m) as distinct_members`,
    );
    assert.equal(counts?.users, expected);
    assert.equal(counts?.members, expected);
    assert.equal(counts?.distinct_members, counts?.members);
  });
});

describe("a request while the database is unreachable", () => {
  test("answers 503 with a page that says so", async (t) => {
    const port = await closedPort();
    const database = await openDatabase({
      databaseUrl: `postgres://roster@127.0.0.1:${port}/roster`,
      dataDir: null,
    });
    const broken = await createTestApp({ database: { ...database, destroy: () => database.close() } });
    t.after(() => database.close());
    const res = await supertest(broken.app).get("/login");
    assert.equal(res.status, 503);
    assert.match(res.text, /The database is unreachable/);
    assert.equal(res.headers["retry-after"], "5");
    assert.ok(!broken.logs.some((line) => /"level":50/.test(line)), "logged as a warning, not an error");
  });
});

describe("the last-resort handler of uncaught errors", () => {
  const quietLogger = () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _e, done) {
        lines.push(String(chunk));
        done();
      },
    });
    return { logger: pino({ level: "info" }, sink), lines };
  };

  test("keeps serving after a lost database connection", () => {
    const { logger, lines } = quietLogger();
    const exits: number[] = [];
    handleUncaught(
      Object.assign(new Error("write CONNECTION_CLOSED"), { code: "CONNECTION_CLOSED" }),
      logger,
      (c) => exits.push(c),
    );
    assert.deepEqual(exits, []);
    assert.match(lines.join(""), /database connection lost/);
  });

  test("stops the process on anything else, with one line naming the error", () => {
    const { logger, lines } = quietLogger();
    const exits: number[] = [];
    handleUncaught(new TypeError("Cannot read properties of null (reading 'write')"), logger, (c) =>
      exits.push(c),
    );
    assert.deepEqual(exits, [1]);
    assert.match(
      lines.join(""),
      /Roster stopped on an unexpected error: TypeError: Cannot read properties of null/,
    );
  });
});
