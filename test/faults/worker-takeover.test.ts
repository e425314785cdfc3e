/**
 * A worker that dies in the middle of an import (its instance killed, its claim gone stale): another
 * takes the run over and reads on from the checkpoint its committed batches left, so nothing is
 * imported, counted or reported twice. A real import against a real slapd.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { importRuns } from "../../src/db/schema.ts";
import { generateUsers, groupDn, groupEntry, userDn } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
import type { Selection } from "../../src/services/import/types.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  runCounts,
  runQueued,
  stableIdOf,
  testWorker,
  withStableIds,
} from "../web/import-support.ts";

const PEOPLE = 1500;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => userDn(from + i));
/** all-staff ⊃ team (users 0–999) and contractors (900–1399: 100 in both), plus users 1400–1402. */
const TEAM = range(0, 1000);
const CONTRACTORS = range(900, 1400);
const DIRECT = range(1400, 1403);
const ALL_STAFF = groupDn("all-staff");

function directoryLdif(): string {
  return withStableIds(
    generateUsers(PEOPLE) +
      groupEntry({ cn: "team", members: TEAM }) +
      groupEntry({ cn: "contractors", members: CONTRACTORS }) +
      groupEntry({ cn: "all-staff", members: [...DIRECT, groupDn("team"), groupDn("contractors")] }),
  );
}

let t: TestApp;
let server: SlapdServer;
let directoryId: number;

before(async () => {
  if (skipWithoutSlapd) return;
  server = await startSlapd({ ldif: directoryLdif() });
  t = await createTestApp();
  await createUser(t.db, { username: "admin", role: "server_admin" });
  directoryId = (await addDirectory(t.db, t.config.encryptionKey, server)).id;
});
after(async () => {
  await t?.close();
  await server?.stop();
});

/**
 * Runs the import with a worker that "dies" after its `dieAfter`-th committed batch: its claim is
 * taken from it and its heartbeat made stale, as when its process is killed. A second worker then
 * takes the run over. Returns the run as it ended, and how many entries the first worker committed.
 */
async function importWithTakeover(selection: Selection, dieAfter: number) {
  await t.db.execute(sql`delete from users where directory_id is not null`);
  await t.db.execute(sql`delete from groups where directory_id is not null`);
  const run = await createRun(t.db, {
    directory: { id: directoryId, name: "LDAP" },
    actor: { id: null, name: "admin" },
    query: selection.mode === "query" ? selection.text : "",
    selection,
    copyRolesFrom: null,
    total: null,
  });
  let batches = 0;
  const dying = testWorker(t.db, t.config.encryptionKey, {
    batchSize: 200,
    workerId: "dying",
    hooks: {
      async afterBatch() {
        batches += 1;
        if (batches !== dieAfter) return;
        await t.db
          .update(importRuns)
          .set({ claimedBy: "a-killed-process", heartbeatAt: sql`now() - interval '1 hour'` })
          .where(eq(importRuns.id, run.id));
      },
    },
  });
  await dying.runOnce(); // once: a dead worker claims nothing again
  await dying.stop();
  const [abandoned] = await t.db.select().from(importRuns).where(eq(importRuns.id, run.id));
  assert.equal(abandoned?.status, "running", "the first worker stopped without finishing");
  const committed = abandoned?.processed ?? 0;
  let takenBatches = 0;
  const counting = testWorker(t.db, t.config.encryptionKey, {
    batchSize: 200,
    workerId: "taking",
    hooks: {
      afterBatch() {
        takenBatches += 1;
      },
    },
  });
  await runQueued(counting);
  await counting.stop();
  const [ended] = await t.db.select().from(importRuns).where(eq(importRuns.id, run.id));
  if (!ended) throw new Error("the run is gone");
  return { run: ended, committed, takenBatches };
}

async function holdings() {
  const [row] = await queryRows<{
    users: number;
    names: number;
    groups: number;
    report_lines: number;
    distinct_report_lines: number;
  }>(
    t.db,
    sql`select (select count(*)::int from users where directory_id = ${directoryId}) as users,
               (select count(distinct lower(normalize(username, NFC)))::int from users where directory_id = ${directoryId}) as names,
               (select count(*)::int from groups where directory_id = ${directoryId}) as groups,
               (select count(*)::int from import_run_entries) as report_lines,
               (select count(*)::int from (select distinct run_id, entry_kind, dn from import_run_entries) d) as distinct_report_lines`,
  );
  if (!row) throw new Error("no counts");
  return row;
}

async function membersOf(cn: string): Promise<{ users: number; subgroups: number }> {
  const [row] = await queryRows<{ users: number; subgroups: number }>(
    t.db,
    sql`select (select count(*)::int from group_members m where m.group_id = g.id) as users,
               (select count(*)::int from group_subgroups s where s.parent_id = g.id) as subgroups
        from groups g where g.directory_id = ${directoryId} and g.name = ${cn}`,
  );
  if (!row) throw new Error(`no group ${cn}`);
  return row;
}

describe("a run whose worker died is taken over and read on from its checkpoint", {
  skip: skipWithoutSlapd,
}, () => {
  test("users: the second worker imports only what the first had not committed; counts and report exact", async () => {
    await t.db.execute(sql`delete from import_runs`);
    const { run, committed, takenBatches } = await importWithTakeover(
      { mode: "query", text: "(objectClass=inetOrgPerson)", kind: "users" },
      3,
    );
    assert.equal(run.status, "succeeded", run.error ?? "");
    assert.equal(run.attempts, 2);
    assert.ok(committed >= 600 && committed < PEOPLE, `the first worker committed part (${committed})`);
    assert.equal(run.resumedFrom, committed, "the run says where it read on from");
    assert.ok(run.resumedAt, "and when");
    assert.ok(
      takenBatches <= Math.ceil((PEOPLE - committed) / 200) + 1,
      `the second worker wrote only the rest (${takenBatches} batches)`,
    );
    assert.deepEqual(
      runCounts(run),
      { created: PEOPLE, updated: 0, unchanged: 0, skipped: 0, failed: 0 },
      "each user counted once, as created",
    );
    assert.equal(run.processed, PEOPLE);
    assert.equal(run.total, PEOPLE);
    const held = await holdings();
    assert.equal(held.users, PEOPLE);
    assert.equal(held.names, PEOPLE, "no duplicate usernames");
    assert.equal(held.report_lines, PEOPLE, "every creation listed once");
    assert.equal(held.distinct_report_lines, PEOPLE);
    const [left] = await queryRows<{ n: number }>(
      t.db,
      sql`select count(*)::int as n from import_run_handled where run_id = ${run.id}`,
    );
    assert.equal(left?.n, 0, "a finished run's checkpoint is dropped");

    const { agent } = await signedInAgent(t.app, "admin");
    const page = await agent.get(`/imports/${run.id}`).expect(200);
    assert.match(
      page.text,
      new RegExp(
        `another took it over at <time[^>]*>[^<]+</time> and read on from entry ${(committed + 1).toLocaleString("en-US")},`,
      ),
    );
  });

  for (const dieAfter of [3, 5]) {
    test(`nested groups, the worker dying after batch ${dieAfter}: every member once, memberships and report exact`, async () => {
      await t.db.execute(sql`delete from import_runs`);
      const allStaff = {
        kind: "group" as const,
        dn: ALL_STAFF,
        name: "all-staff",
        externalId: stableIdOf(ALL_STAFF),
      };
      const { run, committed } = await importWithTakeover({ mode: "entries", entries: [allStaff] }, dieAfter);
      assert.equal(run.status, "succeeded", run.error ?? "");
      assert.equal(run.attempts, 2);
      assert.ok(committed > 0, `the first worker committed part (${committed})`);
      const users = 1403; // 0–1402: team, contractors (100 shared) and the three direct members
      assert.deepEqual(runCounts(run), {
        created: users + 3,
        updated: 0,
        unchanged: 0,
        skipped: 0,
        failed: 0,
      });
      assert.equal(run.processed, users + 3);
      assert.equal(run.total, users + 3);
      assert.deepEqual(await membersOf("team"), { users: 1000, subgroups: 0 });
      assert.deepEqual(await membersOf("contractors"), { users: 500, subgroups: 0 });
      assert.deepEqual(await membersOf("all-staff"), { users: 3, subgroups: 2 });
      const held = await holdings();
      assert.equal(held.users, users);
      assert.equal(held.groups, 3);
      assert.equal(held.report_lines, users + 3, "every creation listed once");
      assert.equal(held.distinct_report_lines, users + 3);
      const reasons = await queryRows<{ name: string; reason: string }>(
        t.db,
        sql`select name, reason from import_run_entries where entry_kind = 'group' order by name`,
      );
      assert.deepEqual(
        reasons.map((r) => ({ name: r.name, reason: r.reason })),
        [
          { name: "all-staff", reason: "With 3 members and 2 subgroups." },
          { name: "contractors", reason: "With 500 members." },
          { name: "team", reason: "With 1,000 members." },
        ],
      );
    });
  }
});
