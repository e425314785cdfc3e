/**
 * Faults of the directory under a running import: slapd paused for longer than the operation
 * timeout, killed and started again, or gone for good. A real import against a real slapd.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { directories, importRuns } from "../../src/db/schema.ts";
import type { ImportHooks } from "../../src/services/import/importer.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
import type { Selection } from "../../src/services/import/types.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  closeImportTestBed,
  type ImportTestBed,
  openImportTestBed,
  runQueued,
  startFixtureSlapd,
  testWorker,
} from "../web/import-support.ts";

let bed: ImportTestBed;

before(async () => {
  if (skipWithoutSlapd) return;
  bed = await openImportTestBed();
});
after(() => closeImportTestBed(bed));

/** A fresh directory (its own slapd, nothing imported from it yet) that gives up on a silent server quickly. */
async function freshDirectory() {
  // The fixture's usernames are another directory's after an earlier test: start from none.
  await bed.t.db.execute(sql`delete from users where directory_id is not null`);
  await bed.t.db.execute(sql`delete from groups where directory_id is not null`);
  const server = await startFixtureSlapd(bed.fixture);
  const row = await addDirectory(bed.t.db, bed.t.config.encryptionKey, server, {
    name: `LDAP ${server.port}`,
    position: server.port,
  });
  await bed.t.db.update(directories).set({ operationTimeoutMs: 1500 }).where(eq(directories.id, row.id));
  return { server, directoryId: row.id };
}

async function importWith(
  directoryId: number,
  selection: Selection,
  hooks: ImportHooks,
  options: { directoryRetryMs?: number } = {},
) {
  const worker = testWorker(bed.t.db, bed.t.config.encryptionKey, { batchSize: 200, hooks, ...options });
  const run = await createRun(bed.t.db, {
    directory: { id: directoryId, name: "LDAP" },
    actor: { id: bed.adminId, name: "admin" },
    query: selection.mode === "query" ? selection.text : "",
    selection,
    copyRolesFrom: null,
    total: null,
  });
  await runQueued(worker);
  await worker.stop();
  const [ended] = await bed.t.db.select().from(importRuns).where(eq(importRuns.id, run.id));
  if (!ended) throw new Error("the run is gone");
  return ended;
}

/** What the database holds for a directory: users, distinct usernames, memberships, distinct ones. */
async function holdings(directoryId: number) {
  const [row] = await queryRows<{ users: number; names: number; members: number; distinct_members: number }>(
    bed.t.db,
    sql`select (select count(*)::int from users where directory_id = ${directoryId}) as users,
               (select count(distinct lower(normalize(username, NFC)))::int from users where directory_id = ${directoryId}) as names,
               (select count(*)::int from group_members m join groups g on g.id = m.group_id where g.directory_id = ${directoryId}) as members,
               (select count(*)::int from (select distinct m.group_id, m.user_id from group_members m
                  join groups g on g.id = m.group_id where g.directory_id = ${directoryId}) d) as distinct_members`,
  );
  if (!row) throw new Error("no counts");
  return row;
}

const everyone: Selection = { mode: "query", text: "everyone", kind: "groups" };
const allPeople: Selection = { mode: "query", text: "(objectClass=inetOrgPerson)", kind: "users" };

describe("an import while the directory has a fault", { skip: skipWithoutSlapd }, () => {
  test("a directory paused for longer than the operation timeout: the run reads on once it answers, counts exact", async () => {
    const { server, directoryId } = await freshDirectory();
    try {
      let batches = 0;
      let paused = false;
      const ended = await importWith(directoryId, everyone, {
        afterBatch() {
          batches += 1;
          if (batches !== 3) return;
          process.kill(server.pid, "SIGSTOP");
          paused = true;
          setTimeout(() => process.kill(server.pid, "SIGCONT"), 4000);
        },
      });
      assert.ok(paused, "the fault was injected");
      assert.equal(ended.status, "succeeded", ended.error ?? "");
      const members = bed.fixture.everyone.usernames.length;
      assert.equal(ended.created, members + 1, "every member and the group, once");
      assert.equal(ended.processed, ended.total);
      const held = await holdings(directoryId);
      assert.equal(held.users, members);
      assert.equal(held.names, members);
      assert.equal(held.members, members);
      assert.equal(held.distinct_members, members);
    } finally {
      process.kill(server.pid, "SIGCONT");
      await server.stop();
    }
  });

  test("a directory killed mid-run and started again: the run reconnects and completes, counts exact", async () => {
    const { server, directoryId } = await freshDirectory();
    try {
      let batches = 0;
      let crashed = false;
      const ended = await importWith(directoryId, allPeople, {
        async afterBatch() {
          batches += 1;
          if (batches !== 4) return;
          await server.crash();
          crashed = true;
          setTimeout(() => void server.restart(), 2500);
        },
      });
      assert.ok(crashed, "the fault was injected");
      assert.equal(ended.status, "succeeded", ended.error ?? "");
      const held = await holdings(directoryId);
      assert.equal(ended.created, held.users, "each user counted once");
      assert.equal(ended.processed, ended.total);
      assert.equal(held.names, held.users, "no duplicate usernames");
      assert.ok(held.users > bed.fixture.everyone.usernames.length);
    } finally {
      await server.stop();
    }
  });

  test("a directory that does not come back: the run fails after the retry window, saying where and why", async () => {
    const { server, directoryId } = await freshDirectory();
    try {
      let batches = 0;
      const ended = await importWith(
        directoryId,
        allPeople,
        {
          async afterBatch() {
            batches += 1;
            if (batches === 2) await server.crash();
          },
        },
        { directoryRetryMs: 3000 },
      );
      assert.equal(ended.status, "failed");
      assert.match(
        ended.error ?? "",
        /^The directory stopped answering for \d+ seconds at entry [\d,]+( of [\d,]+)?: .* Roster kept trying to reconnect/,
      );
      assert.doesNotMatch(ended.error ?? "", /ldaps/, "no TLS hint for a server that was answering");
      const held = await holdings(directoryId);
      assert.ok(held.users > 0, "what was committed is kept");
      assert.equal(held.users, ended.created);
      assert.match(
        ended.error ?? "",
        new RegExp(`at entry ${(ended.processed + 1).toLocaleString("en")}\\b`),
      );
    } finally {
      await server.stop();
    }
  });
});
