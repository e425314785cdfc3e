import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, inArray, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { auditLog, directories, groups, importRuns, users } from "../../src/db/schema.ts";
import { userDn } from "../../src/dev/fixtures.ts";
import type { SlapdServer } from "../../src/dev/slapd.ts";
import {
  claimNextRun,
  createRun,
  heartbeat,
  LostClaimError,
  MAX_ATTEMPTS,
  type NewRun,
  recordProgress,
} from "../../src/services/import/run-queue.ts";
import type { Selection } from "../../src/services/import/types.ts";
import { nameKey } from "../../src/services/names.ts";
import { signedInAgent, type TestApp } from "../helpers/app.ts";
import { postForm } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  BASE_DN,
  closeImportTestBed,
  type ImportFixture,
  type ImportTestBed,
  openImportTestBed,
  repointDirectory,
  runQueued,
  stableIdOf,
  startFixtureSlapd,
  testWorker,
} from "./import-support.ts";

let bed: ImportTestBed;
let t: TestApp;
let server: SlapdServer;
let fixture: ImportFixture;
let directoryId: number;

const skip = skipWithoutSlapd;

before(async () => {
  if (skip) return;
  bed = await openImportTestBed({ mapping: { pageSize: 200 } });
  ({ t, server, fixture, directoryId } = bed);
});
after(() => closeImportTestBed(bed));

function queue(selection: Selection, extra: Partial<NewRun> = {}) {
  return createRun(t.db, {
    directory: { id: directoryId, name: "Example LDAP" },
    actor: { id: null, name: "admin" },
    query: selection.mode === "query" ? selection.text : "",
    selection,
    copyRolesFrom: null,
    total: null,
    ...extra,
  });
}

async function runRow(id: number) {
  const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
  if (!run) throw new Error(`no run ${id}`);
  return run;
}

const people = () => (fixture.ldif.match(/^objectClass: inetOrgPerson$/gm) ?? []).length - 1; // contractor1: outside ou=people

async function duplicates(): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    t.db,
    sql`select count(*)::int as n from (
          select directory_id, external_id from users where external_id is not null
          group by directory_id, external_id having count(*) > 1) d`,
  );
  return Number(row?.n);
}

async function externalUsers(): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    t.db,
    sql`select count(*)::int as n from users where directory_id = ${directoryId}`,
  );
  return Number(row?.n);
}

describe("runs shared by several workers", { skip }, () => {
  test("a queued run is claimed by exactly one of several workers", async () => {
    const run = await queue({ mode: "query", text: "alpha", kind: "users" });
    const claims = await Promise.all(["w1", "w2", "w3", "w4"].map((id) => claimNextRun(t.db, id, 30_000)));
    const won = claims.filter((c) => c !== null);
    assert.equal(won.length, 1);
    assert.equal(won[0]?.run.id, run.id);
    assert.equal((await runRow(run.id)).claimedBy, won[0]?.workerId);
    await t.db
      .update(importRuns)
      .set({ status: "cancelled", claimedBy: null })
      .where(eq(importRuns.id, run.id));
  });

  test("two overlapping runs at once never create a duplicate user or membership", async () => {
    const all = await queue({ mode: "query", text: "*", kind: "users" });
    const group = await queue({ mode: "query", text: "everyone", kind: "groups" });
    const w1 = testWorker(t.db, t.config.encryptionKey, { batchSize: 300, workerId: "w1" });
    const w2 = testWorker(t.db, t.config.encryptionKey, { batchSize: 300, workerId: "w2" });
    await Promise.all([w1.runOnce(), w2.runOnce()]);
    const [a, b] = [await runRow(all.id), await runRow(group.id)];
    assert.equal(a.status, "succeeded", a.error ?? "");
    assert.equal(b.status, "succeeded", b.error ?? "");
    assert.notEqual(a.claimedBy ?? a.id, b.claimedBy ?? b.id);
    assert.equal(await duplicates(), 0);
    assert.equal(await externalUsers(), people());
    // Every user was created by exactly one of the two runs; the other found it there.
    assert.equal(a.created + b.created, people() + 1, "each user once, plus the group");
    assert.equal(a.created + a.unchanged, people());
    const [everyone] = await t.db.select().from(groups).where(eq(groups.nameKey, "everyone"));
    const [members] = await queryRows<{ n: number; distinct: number }>(
      t.db,
      sql`select count(*)::int as n, count(distinct user_id)::int as distinct from group_members where group_id = ${everyone?.id ?? -1}`,
    );
    assert.equal(members?.n, 2500);
    assert.equal(members?.distinct, 2500);
  });

  test("a user another run creates while a run inserts what it expects to be new is found, not duplicated", async () => {
    await t.db.execute(sql`delete from group_members`);
    await t.db.execute(sql`delete from users where directory_id is not null`);
    const last = fixture.everyone.usernames.at(-1) ?? "";
    const lastDn = userDn(fixture.everyone.usernames.length - 1, { baseDn: BASE_DN });
    let theirs: Promise<number | undefined> | undefined;
    // After the first batch (all new) the run inserts without looking first; the last generated
    // user, in its last batch, appears in between as another run would create it. Two writers end
    // batches at once: the hook inserts on the first call only, decided before it awaits anything.
    const insertTheirs = async () => {
      const [row] = await t.db
        .insert(users)
        .values({
          kind: "external",
          username: last,
          usernameKey: nameKey(last),
          directoryId,
          externalId: stableIdOf(lastDn),
          dn: lastDn,
        })
        .returning({ id: users.id });
      return row?.id;
    };
    const worker = testWorker(t.db, t.config.encryptionKey, {
      batchSize: 300,
      hooks: {
        afterBatch: async () => {
          theirs ??= insertTheirs();
          await theirs;
        },
      },
    });
    const run = await queue({ mode: "query", text: "*", kind: "users" });
    await runQueued(worker);
    const done = await runRow(run.id);
    assert.equal(done.status, "succeeded", done.error ?? "");
    assert.equal(done.failed, 0);
    assert.equal(done.created, people() - 1);
    assert.equal(done.created + done.updated + done.unchanged, people());
    assert.equal(await externalUsers(), people());
    assert.equal(await duplicates(), 0);
    const [kept] = await t.db
      .select()
      .from(users)
      .where(eq(users.usernameKey, nameKey(last)));
    assert.equal(kept?.id, await theirs, "the row the other run created is the one synchronized");
    assert.ok(kept?.lastSyncedAt, "and this run synchronized it");
  });

  test("a run whose worker died is taken over; the dead worker can write nothing more", async () => {
    const run = await queue({ mode: "query", text: "cycle", kind: "users" });
    const dead = await claimNextRun(t.db, "dead-worker", 30_000);
    assert.equal(dead?.run.id, run.id);
    assert.equal(await claimNextRun(t.db, "w2", 30_000), null, "a live claim is not taken");
    await t.db
      .update(importRuns)
      .set({ heartbeatAt: sql`now() - interval '1 hour'` })
      .where(eq(importRuns.id, run.id));
    const w2 = testWorker(t.db, t.config.encryptionKey, { workerId: "w2" });
    assert.equal(await w2.runOnce(), true);
    const done = await runRow(run.id);
    assert.equal(done.status, "succeeded");
    assert.equal(done.attempts, 2);
    assert.equal(done.unchanged, 3);
    if (!dead) throw new Error("unreachable");
    assert.deepEqual(await heartbeat(t.db, dead), { held: false, cancelRequested: false });
    await assert.rejects(
      t.db.transaction((tx) =>
        recordProgress(tx as never, dead, {
          processed: 1,
          counts: { created: 1, updated: 0, unchanged: 0, skipped: 0, failed: 0 },
          entries: [],
        }),
      ),
      LostClaimError,
    );
    assert.equal((await runRow(run.id)).processed, done.processed);
  });

  test("a run taken over starts its total afresh: an earlier attempt's group members are not counted twice", async () => {
    const everyone = {
      dn: fixture.everyone.groupDn,
      kind: "group" as const,
      name: "everyone",
      externalId: "e",
    };
    const picked = await queue({ mode: "entries", entries: [everyone] }, { total: 1 });
    const byQuery = await queue({ mode: "query", text: "everyone", kind: "groups" }, { total: 1 });
    try {
      for (const run of [picked, byQuery]) {
        const first = await claimNextRun(t.db, "w1", 30_000);
        assert.equal(first?.run.id, run.id);
        if (!first) throw new Error("unreachable");
        // The group's batch: itself, and its 2,500 members to come.
        await t.db.transaction((tx) =>
          recordProgress(tx as never, first, {
            processed: 1,
            counts: { created: 1, updated: 0, unchanged: 0, skipped: 0, failed: 0 },
            totalGrowth: 2500,
            entries: [],
          }),
        );
        assert.equal((await runRow(run.id)).total, 2501);
        await t.db
          .update(importRuns)
          .set({ heartbeatAt: sql`now() - interval '1 hour'` })
          .where(eq(importRuns.id, run.id));
        const second = await claimNextRun(t.db, "w2", 30_000);
        assert.equal(second?.run.id, run.id);
        assert.equal(second?.run.processed, 0);
      }
      assert.equal((await runRow(picked.id)).total, 1, "the entries chosen");
      assert.equal(
        (await runRow(byQuery.id)).total,
        null,
        "unknown until the worker has counted the matches again",
      );
    } finally {
      await t.db.delete(importRuns).where(inArray(importRuns.id, [picked.id, byQuery.id]));
    }
  });

  test(`a run abandoned ${MAX_ATTEMPTS} times is given up with its reason`, async () => {
    const run = await queue({ mode: "query", text: "alpha", kind: "users" });
    await t.db
      .update(importRuns)
      .set({
        status: "running",
        claimedBy: "gone",
        attempts: MAX_ATTEMPTS,
        heartbeatAt: sql`now() - interval '1 hour'`,
      })
      .where(eq(importRuns.id, run.id));
    assert.equal(await claimNextRun(t.db, "w3", 30_000), null);
    const failed = await runRow(run.id);
    assert.equal(failed.status, "failed");
    assert.match(failed.error ?? "", /stopped responding 3 times/);
    const audit = await t.db.select().from(auditLog).where(eq(auditLog.action, "import.failed"));
    assert.ok(audit.some((e) => (e.details as { run?: number }).run === run.id));
  });

  test("an instance shutting down puts its run back in the queue, and another finishes it", async () => {
    const run = await queue({ mode: "query", text: "a*", kind: "users" });
    const leaving = testWorker(t.db, t.config.encryptionKey, {
      batchSize: 200,
      workerId: "leaving",
      hooks: { afterBatch: () => void leaving.stop() },
    });
    await leaving.runOnce();
    const released = await runRow(run.id);
    assert.equal(released.status, "queued");
    assert.equal(released.claimedBy, null);
    await runQueued(testWorker(t.db, t.config.encryptionKey, { workerId: "staying" }));
    assert.equal((await runRow(run.id)).status, "succeeded");
  });

  test("a run of a deleted directory fails with that reason", async () => {
    const other = await addDirectory(t.db, t.config.encryptionKey, server, {
      name: "Short-lived",
      position: 5,
    });
    const run = await createRun(t.db, {
      directory: { id: other.id, name: other.name },
      actor: { id: null, name: "admin" },
      query: "alpha",
      selection: { mode: "query", text: "alpha", kind: "users" },
      copyRolesFrom: null,
      total: null,
    });
    await t.db.delete(directories).where(eq(directories.id, other.id));
    await runQueued(testWorker(t.db, t.config.encryptionKey));
    const failed = await runRow(run.id);
    assert.equal(failed.status, "failed");
    assert.equal(failed.error, "The directory was deleted.");
  });
});

describe("a directory that goes away in the middle of a run", { skip }, () => {
  test("the run fails with the reason, its batches are whole, and running it again completes it", async () => {
    await t.db.execute(sql`delete from group_members`);
    await t.db.execute(sql`delete from users where directory_id is not null`);
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const run = await queue({ mode: "query", text: "*", kind: "users" }, { total: people() });
    let stopped = false;
    const interrupted = testWorker(t.db, t.config.encryptionKey, {
      batchSize: 400,
      // It waits this long for the directory to come back (directory-faults.test.ts: it does).
      directoryRetryMs: 1000,
      hooks: {
        afterBatch: async () => {
          if (stopped) return;
          stopped = true;
          await server.stop();
        },
      },
    });
    await runQueued(interrupted);
    const failed = await runRow(run.id);
    assert.equal(failed.status, "failed");
    assert.match(
      failed.error ?? "",
      /^The directory stopped answering for \d+ seconds at entry [\d,]+ of [\d,]+: /,
    );
    assert.ok(failed.created > 0 && failed.created < people(), `some, not all (${failed.created})`);
    assert.equal(failed.created % 400, 0, "whole batches only");
    assert.equal(failed.processed, failed.created);
    assert.equal(await externalUsers(), failed.created, "what the counters say is what was written");
    const page = await agent.get(`/imports/${run.id}`);
    assert.match(page.text, /The directory stopped answering for \d+ seconds/);

    server = bed.server = await startFixtureSlapd(fixture); // same LDIF, same stable ids: the directory is back
    await repointDirectory(t.db, t.config.encryptionKey, directoryId, server);
    const res = await postForm(agent, "/imports", csrf, { rerun: String(run.id) }).expect(303);
    const again = Number(/(\d+)$/.exec(res.headers.location ?? "")?.[1]);
    await runQueued(testWorker(t.db, t.config.encryptionKey, { batchSize: 400 }));
    const completed = await runRow(again);
    assert.equal(completed.status, "succeeded");
    assert.equal(completed.unchanged, failed.created);
    assert.equal(completed.created, people() - failed.created);
    assert.equal(await externalUsers(), people());
    assert.equal(await duplicates(), 0);
  });
});

describe("a database error in one batch", { skip }, () => {
  test("the run fails with the error instead of finishing without that batch, and running it again completes it", async () => {
    await t.db.execute(sql`delete from group_members`);
    await t.db.execute(sql`delete from users where directory_id is not null`);
    // One user in the middle of the directory can't be written: its batch fails, not retryably,
    // while the run reads the next pages. A run that lost it would end "succeeded" without them.
    const victim = fixture.everyone.usernames[1300] ?? "";
    assert.match(victim, /^[a-z0-9.]+$/);
    await t.db.execute(
      sql.raw(`create function refuse_one_user() returns trigger language plpgsql as $$
        begin
          if new.username = '${victim}' then raise exception 'refused by the test'; end if;
          return new;
        end $$`),
    );
    await t.db.execute(
      sql`create trigger refuse_one_user before insert on users for each row execute function refuse_one_user()`,
    );
    const run = await queue({ mode: "query", text: "*", kind: "users" }, { total: people() });
    try {
      await runQueued(testWorker(t.db, t.config.encryptionKey, { batchSize: 400 }));
    } finally {
      await t.db.execute(sql`drop trigger refuse_one_user on users`);
      await t.db.execute(sql`drop function refuse_one_user()`);
    }
    const failed = await runRow(run.id);
    assert.equal(failed.status, "failed");
    assert.match(failed.error ?? "", /^A database error stopped the import \(P0001\): refused by the test/);
    assert.ok(failed.created < people(), `not all (${failed.created})`);
    assert.equal(failed.processed, failed.created);
    assert.equal(await externalUsers(), failed.created, "what the counters say is what was written");

    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const res = await postForm(agent, "/imports", csrf, { rerun: String(run.id) }).expect(303);
    const again = await runRow(Number(/(\d+)$/.exec(res.headers.location ?? "")?.[1]));
    await runQueued(testWorker(t.db, t.config.encryptionKey, { batchSize: 400 }));
    const completed = await runRow(again.id);
    assert.equal(completed.status, "succeeded");
    assert.equal(completed.created, people() - failed.created);
    assert.equal(await externalUsers(), people());
    assert.equal(await duplicates(), 0);
  });
});
