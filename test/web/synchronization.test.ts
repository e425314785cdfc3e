/**
 * Synchronizing a directory: a real slapd edited between runs, a real worker, the database as the
 * judge. Every kind of change arrives; what the directory no longer has is removed — unless the
 * safety guard holds it for review — and the schedule queues each synchronization once.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq, sql } from "drizzle-orm";
import { Attribute, Change, Client } from "ldapts";
import { queryRows } from "../../src/db/client.ts";
import { auditLog, directories, importRuns, users } from "../../src/db/schema.ts";
import { generateUsers, groupDn, groupEntry, userDn, userFixture } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import type { ImportRun } from "../../src/services/import/run-queue.ts";
import { queueDueSynchronizations } from "../../src/services/sync/schedule.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { flashOf, postForm, text } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  memberUsernames,
  queueEverything,
  runQueued,
  synchronizeWith,
  testWorker,
  withStableIds,
} from "./import-support.ts";

const PEOPLE = 200;
const STAFF = groupDn("staff");

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => userDn(from + i));
const uid = (index: number) => userFixture(index).uid;

let t: TestApp;
let server: SlapdServer;
let admin: Client;
let directoryId: number;

before(async () => {
  if (skipWithoutSlapd) return;
  server = await startSlapd({
    ldif: withStableIds(
      generateUsers(PEOPLE) +
        groupEntry({ cn: "staff", members: range(0, 100) }) +
        groupEntry({ cn: "ops", members: [...range(100, 130), STAFF] }),
    ),
  });
  admin = new Client({ url: server.url });
  await admin.bind(server.rootDn, server.rootPassword);
  t = await createTestApp();
  await createUser(t.db, { username: "admin", role: "server_admin" });
  directoryId = (await addDirectory(t.db, t.config.encryptionKey, server, { mapping: { pageSize: 50 } })).id;
  // Everything imported once: all users, all groups.
  await queueEverything(t.db, directoryId);
  await runQueued(worker());
});
after(async () => {
  await admin?.unbind().catch(() => {});
  await t?.close();
  await server?.stop();
});

function worker(options: Parameters<typeof testWorker>[2] = {}) {
  // No margin: the fixture's entries were all written a moment ago, as were the test's changes.
  return testWorker(t.db, t.config.encryptionKey, { batchSize: 50, watermarkMarginMs: 0, ...options });
}

function synchronize(options: Parameters<typeof testWorker>[2] = {}, full = false): Promise<ImportRun> {
  return synchronizeWith(t.db, directoryId, worker(options), full);
}

async function userNamed(username: string) {
  const [user] = await t.db.select().from(users).where(eq(users.username, username));
  return user;
}

const membersOf = (name: string) => memberUsernames(t.db, name);

async function disabledByDirectory(): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    t.db,
    sql`select count(*)::int as n from users where directory_id = ${directoryId} and missing_in_directory and not enabled`,
  );
  return Number(row?.n);
}

async function reportLines(runId: number): Promise<string[]> {
  const rows = await queryRows<{ line: string }>(
    t.db,
    sql`select outcome || ' ' || name || ': ' || reason as line from import_run_entries where run_id = ${runId} order by id`,
  );
  return rows.map((r) => r.line);
}

const replace = (dn: string, type: string, values: string[]) =>
  admin.modify(dn, new Change({ operation: "replace", modification: new Attribute({ type, values }) }));
const members = (operation: "add" | "delete", group: string, dns: string[]) =>
  admin.modify(
    group,
    new Change({ operation, modification: new Attribute({ type: "member", values: dns }) }),
  );

describe("synchronizing a directory", { skip: skipWithoutSlapd }, () => {
  test("every kind of change arrives: modified, renamed, deleted, added to and removed from a group, a new member", async () => {
    const renamedBefore = await userNamed(uid(30));
    await replace(userDn(5), "mail", ["moved.on@example.test"]);
    await admin.modifyDN(userDn(30), "uid=renamed.person");
    // What the refint overlay would do for a rename (the deletion below is left listed on purpose).
    await members("delete", STAFF, [userDn(30)]);
    await members("add", STAFF, ["uid=renamed.person,ou=people,dc=example,dc=test"]);
    await admin.del(userDn(10)); // also still listed in staff: no referential integrity here
    await members("add", STAFF, [userDn(150)]);
    await members("delete", STAFF, [userDn(20)]);
    await admin.add("uid=new.hire,ou=people,dc=example,dc=test", {
      objectClass: "inetOrgPerson",
      uid: "new.hire",
      cn: "New Hire",
      sn: "Hire",
    });
    await members("add", STAFF, ["uid=new.hire,ou=people,dc=example,dc=test"]);

    const run = await synchronize();
    assert.equal(run.status, "succeeded", run.error ?? "");
    assert.equal(run.kind, "synchronization");
    assert.equal(run.syncMethod, "full");
    assert.equal(run.syncNote, "The first synchronization of this directory reads every entry.");

    assert.equal((await userNamed(uid(5)))?.email, "moved.on@example.test");
    const renamed = await userNamed("renamed.person");
    assert.equal(renamed?.id, renamedBefore?.id, "a renamed entry is the same user, found by its stable id");
    const gone = await userNamed(uid(10));
    assert.deepEqual(
      { missing: gone?.missingInDirectory, enabled: gone?.enabled },
      { missing: true, enabled: false },
      "disabled and marked missing, never deleted",
    );
    const staff = await membersOf("staff");
    assert.ok(staff.includes(uid(150)), "added to the group in the directory");
    assert.ok(staff.includes("new.hire"), "a new member is imported as a group import would");
    assert.ok(!staff.includes(uid(20)), "removed from the group in the directory");
    assert.ok(!staff.includes(uid(10)), "a deleted member leaves its groups");
    assert.ok(staff.includes("renamed.person"), "a renamed member stays a member");
    assert.equal(staff.length, 100);
    assert.equal((await userNamed(uid(20)))?.enabled, true, "leaving a group disables no one");
    const [ops] = await queryRows<{ n: number }>(
      t.db,
      sql`select count(*)::int as n from group_subgroups s join groups g on g.id = s.parent_id where g.name = 'ops'`,
    );
    assert.equal(ops?.n, 1, "ops keeps staff as its subgroup");

    assert.equal(run.created, 1, "new.hire");
    assert.equal(await disabledByDirectory(), 1);
    const lines = await reportLines(run.id);
    assert.ok(lines.includes(`created new.hire: `), lines.join("\n"));
    assert.ok(lines.some((l) => l.startsWith(`updated ${uid(10)}: Disabled and marked missing`)));
    assert.ok(
      lines.includes(
        `updated ${uid(20)}: Removed from the group staff: the directory no longer lists it as a member.`,
      ),
    );
    assert.ok(lines.some((l) => l.startsWith(`updated ${uid(5)}: `) && l.includes("email")));
    const audit = await t.db.select().from(auditLog).where(eq(auditLog.action, "synchronization.succeeded"));
    assert.ok(audit.some((e) => (e.details as { run?: number }).run === run.id));

    const again = await synchronize({}, true);
    assert.equal(again.status, "succeeded");
    assert.equal(again.syncMethod, "full");
    assert.deepEqual(
      { created: again.created, updated: again.updated, skipped: again.skipped, failed: again.failed },
      { created: 0, updated: 0, skipped: 1, failed: 0 },
      "nothing changed since (the deleted member staff still lists is skipped, with its reason)",
    );
  });

  test("an incremental synchronization reads only what changed; its presence pass finds deletions", async () => {
    await new Promise((resolve) => setTimeout(resolve, 1100)); // a new second on the directory's clock
    await replace(userDn(6), "telephoneNumber", ["+1 555 000 0006"]);
    await members("add", STAFF, [userDn(151)]);
    await members("delete", STAFF, [userDn(21)]);
    await admin.del(userDn(22)); // and out of staff, as the refint overlay would do
    await members("delete", STAFF, [userDn(22)]);
    await admin.del(userDn(160)); // in no group: only the presence pass can notice
    const run = await synchronize();
    assert.equal(run.status, "succeeded", run.error ?? "");
    assert.equal(run.syncMethod, "incremental");
    assert.match(
      run.syncNote ?? "",
      /^Entries changed since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(the directory's clock\)\.$/,
    );
    assert.equal((await userNamed(uid(6)))?.phone, "+1 555 000 0006");
    const staff = await membersOf("staff");
    assert.ok(staff.includes(uid(151)), "a new member of a changed group");
    assert.ok(!staff.includes(uid(21)), "a member who left it");
    assert.equal(staff.length, 99);
    const left = await userNamed(uid(22));
    assert.deepEqual(
      { missing: left?.missingInDirectory, enabled: left?.enabled },
      { missing: true, enabled: false },
      "a member gone from the directory is disabled at once: looked up by its stable id, not found",
    );
    assert.equal((await userNamed(uid(21)))?.enabled, true, "one who only left the group stays");
    assert.equal(
      (await userNamed(uid(160)))?.enabled,
      true,
      "a deletion is not seen without a presence pass",
    );
    // User 6, staff, and staff's new member (and what changed in the second the last run ended in):
    // the 99 members staff still lists are not read again.
    assert.ok(run.processed < 20, `not staff's 100 members (${run.processed})`);
    assert.ok(
      (await reportLines(run.id)).includes(
        `updated ${uid(21)}: Removed from the group staff: the directory no longer lists it as a member.`,
      ),
    );

    const quiet = await synchronize();
    assert.equal(quiet.syncMethod, "incremental");
    assert.ok(quiet.processed < 20, `what changed in the last second, again at most (${quiet.processed})`);

    // A day later, the incremental run also checks every entry's presence.
    await t.db.execute(
      sql`update directories set sync_state = jsonb_set(sync_state, '{presenceAt}', to_jsonb((now() - interval '25 hours')::text))
          where id = ${directoryId}`,
    );
    const withPresence = await synchronize();
    assert.equal(withPresence.syncMethod, "incremental");
    assert.match(withPresence.syncNote ?? "", /and every entry's presence, to find deleted ones\.$/);
    const gone = await userNamed(uid(160));
    assert.deepEqual(
      { missing: gone?.missingInDirectory, enabled: gone?.enabled },
      { missing: true, enabled: false },
    );
    assert.equal(await disabledByDirectory(), 3, "users 10 and 22 before, user 160 now");
  });

  test("a directory edited while a synchronization runs: the next one picks the edit up", async () => {
    await new Promise((resolve) => setTimeout(resolve, 1100));
    let edited = false;
    const during = await synchronize(
      {
        hooks: {
          async afterBatch() {
            if (edited) return;
            edited = true;
            // User 3 was in the first batch, already read; the ops group changes a second later and
            // is read later (groups come after users): the newest change the run reads is after
            // user 3's, which it never read.
            await replace(userDn(3), "telephoneNumber", ["+1 555 333 0003"]);
            await new Promise((resolve) => setTimeout(resolve, 1100));
            await replace(groupDn("ops"), "description", ["Operations"]);
          },
        },
      },
      true,
    );
    assert.ok(edited);
    assert.equal(during.status, "succeeded", during.error ?? "");
    assert.notEqual((await userNamed(uid(3)))?.phone, "+1 555 333 0003", "read before its change");
    const next = await synchronize();
    assert.equal(next.syncMethod, "incremental");
    assert.equal((await userNamed(uid(3)))?.phone, "+1 555 333 0003", "the next run reads it");
  });

  test("a filter that hides most users holds the removals for review; discard, then apply", async () => {
    const before = await disabledByDirectory();
    // Only the first 60 of 200: the other 140 (70%) would look deleted.
    const only = Array.from({ length: 60 }, (_, i) => `(uid=${uid(i)})`).join("");
    await t.db
      .update(directories)
      .set({ userFilter: `(&(objectClass=inetOrgPerson)(|${only}))` })
      .where(eq(directories.id, directoryId));
    try {
      const held = await synchronize();
      assert.equal(held.status, "held");
      assert.match(held.heldReason ?? "", /^This synchronization would disable \d+ users/);
      assert.match(
        held.heldReason ?? "",
        /more than the directory's limit of 50 \(5% of its 198 users in Roster, at least 50\)/,
      );
      assert.equal(await disabledByDirectory(), before, "nothing disabled yet");

      const { agent, csrf } = await signedInAgent(t.app, "admin");
      const page = await agent.get(`/imports/${held.id}`).expect(200);
      assert.match(text(page.text), /Held for review: [\d,]+ removals/);
      assert.match(text(page.text), new RegExp(`Disable and mark missing the user ${uid(150)}`));
      const discarded = await postForm(agent, `/imports/${held.id}/held-changes`, csrf, {
        decision: "discard",
      }).expect(303);
      assert.equal(discarded.headers.location, `/imports/${held.id}`);
      const after = await agent.get(`/imports/${held.id}`).expect(200);
      assert.match(flashOf(after.text), /discarded: nothing was removed/);
      assert.match(text(after.text), /Discarded by admin/);
      assert.equal(await disabledByDirectory(), before);

      const second = await synchronize();
      assert.equal(second.status, "held");
      const [first] = await t.db.select().from(importRuns).where(eq(importRuns.id, held.id));
      assert.equal(first?.review, "discarded", "a decided run stays decided");
      await postForm(agent, `/imports/${second.id}/held-changes`, csrf, { decision: "apply" }).expect(303);
      const [removals] = await queryRows<{ n: number }>(
        t.db,
        sql`select count(*)::int as n from sync_removals where run_id = ${second.id} and change = 'disable_user'`,
      );
      assert.equal(await disabledByDirectory(), before + Number(removals?.n), "each held user disabled");
      assert.ok(Number(removals?.n) > 50);
      const [applied] = await t.db.select().from(importRuns).where(eq(importRuns.id, second.id));
      assert.equal(applied?.review, "applied");
      const twice = await postForm(agent, `/imports/${second.id}/held-changes`, csrf, {
        decision: "apply",
      }).expect(303);
      assert.equal(twice.headers.location, `/imports/${second.id}`);
      assert.match(flashOf((await agent.get(`/imports/${second.id}`)).text), /already decided on/);
    } finally {
      await t.db
        .update(directories)
        .set({ userFilter: "(objectClass=inetOrgPerson)" })
        .where(eq(directories.id, directoryId));
    }
    const back = await synchronize();
    assert.equal(back.status, "succeeded", back.heldReason ?? back.error ?? "");
    assert.equal(await disabledByDirectory(), 3, "the users are back (only the deleted ones stay missing)");
  });

  test("a bind account locked in the middle of a run fails it: nothing is removed", async () => {
    const disabled = await disabledByDirectory();
    const memberships = await membersOf("staff");
    let locked = false;
    try {
      const run = await synchronize(
        {
          directoryRetryMs: 4000,
          hooks: {
            async afterBatch() {
              if (locked) return;
              locked = true;
              await replace(server.serviceDn, "userPassword", ["changed-by-someone-else"]);
              await server.crash();
              await server.restart();
            },
          },
          // Full: every page of users is read, the first batch is far from the last read.
        },
        true,
      );
      assert.ok(locked, "the fault was injected");
      assert.equal(run.status, "failed");
      assert.match(run.error ?? "", /password|credentials|bind/i);
      assert.equal(await disabledByDirectory(), disabled, "no user disabled");
      assert.deepEqual(await membersOf("staff"), memberships, "no membership removed");
    } finally {
      await admin.unbind().catch(() => {});
      admin = new Client({ url: server.url });
      await admin.bind(server.rootDn, server.rootPassword);
      await replace(server.serviceDn, "userPassword", [server.servicePassword]);
    }
  });

  test("a group whose member list did not change still loses a member whose entry was deleted", async () => {
    const settled = await synchronize({}, true);
    assert.equal(settled.status, "succeeded", settled.heldReason ?? settled.error ?? "");
    const [stored] = await queryRows<{ hash: string | null }>(
      t.db,
      sql`select member_list_hash as hash from groups where name = 'staff'`,
    );
    assert.ok(stored?.hash, "the list Roster follows is remembered");
    const staff = await membersOf("staff");
    const index = Array.from({ length: 100 }, (_, i) => i).find((i) => i > 40 && staff.includes(uid(i)));
    assert.ok(index !== undefined, "staff has a member to delete");
    const member = uid(index);
    // Deleted, with its DN left in the list (no referential integrity): the list is the same text.
    await admin.del(userDn(index));

    const run = await synchronize({}, true);
    assert.equal(run.status, "succeeded", run.heldReason ?? run.error ?? "");
    assert.ok(!(await membersOf("staff")).includes(member), "the deleted member leaves the group");
    assert.deepEqual(
      { missing: (await userNamed(member))?.missingInDirectory, enabled: (await userNamed(member))?.enabled },
      { missing: true, enabled: false },
    );
    assert.ok(
      (await reportLines(run.id)).includes(
        `updated ${member}: Removed from the group staff: the directory no longer lists it as a member.`,
      ),
      (await reportLines(run.id)).join("\n"),
    );
  });
});

describe("the schedule", { skip: skipWithoutSlapd }, () => {
  test("a due synchronization is queued exactly once, however many instances look; a missed one once", async () => {
    await t.db
      .update(directories)
      .set({ syncIntervalMinutes: 15, nextSyncAt: sql`now() - interval '3 hours'` })
      .where(eq(directories.id, directoryId));
    const queued = await Promise.all([1, 2, 3, 4].map(() => queueDueSynchronizations(t.db)));
    assert.equal(queued.flat().length, 1);
    const [row] = await queryRows<{ minutes: number }>(
      t.db,
      sql`select round(extract(epoch from next_sync_at - now()) / 60)::int as minutes from directories where id = ${directoryId}`,
    );
    assert.equal(row?.minutes, 15, "the next one counts from now");
    assert.equal((await queueDueSynchronizations(t.db)).length, 0);
    await t.db
      .update(directories)
      .set({ nextSyncAt: sql`now() - interval '1 minute'` })
      .where(eq(directories.id, directoryId));
    assert.equal((await queueDueSynchronizations(t.db)).length, 0, "not while one is queued");
    await runQueued(worker());
    const runs = await t.db
      .select()
      .from(importRuns)
      .where(and(eq(importRuns.directoryId, directoryId), eq(importRuns.actorName, "Schedule")));
    assert.equal(runs.length, 1);
    assert.equal(runs[0]?.status, "succeeded", runs[0]?.error ?? "");
  });

  test("the schedule page: settings saved, bad input answered beside the field, Synchronize now", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const base = `/settings/directories/${directoryId}/synchronization`;
    const page = await agent.get(base).expect(200);
    assert.match(page.text, /<option value="15" selected>Every 15 minutes<\/option>/);
    assert.match(text(page.text), /Last synchronization #\d+/);

    const bad = await postForm(agent, base, csrf, {
      interval: "7",
      holdPercent: "lots",
      holdMinimum: "50",
    }).expect(422);
    assert.match(text(bad.text), /Choose how often from the list\./);
    assert.match(text(bad.text), /Enter a whole number from 0 to 100\./);
    assert.match(bad.text, /id="field-holdPercent"[^>]*aria-invalid="true"/);

    await postForm(agent, base, csrf, { interval: "off", holdPercent: "10", holdMinimum: "20" }).expect(303);
    const [saved] = await t.db.select().from(directories).where(eq(directories.id, directoryId));
    assert.deepEqual(
      {
        interval: saved?.syncIntervalMinutes,
        next: saved?.nextSyncAt,
        percent: saved?.holdRemovalsPercent,
        minimum: saved?.holdRemovalsMinimum,
      },
      { interval: null, next: null, percent: 10, minimum: 20 },
    );
    assert.match(text((await agent.get(base)).text), /Only when asked \(the schedule is off\)/);

    const now = await postForm(
      agent,
      `/settings/directories/${directoryId}/synchronizations`,
      csrf,
      {},
    ).expect(303);
    const runId = Number(/\/imports\/(\d+)$/.exec(now.headers.location ?? "")?.[1]);
    assert.ok(runId > 0);
    const again = await postForm(
      agent,
      `/settings/directories/${directoryId}/synchronizations`,
      csrf,
      {},
    ).expect(303);
    assert.equal(again.headers.location, `/imports/${runId}`, "one at a time");
    await runQueued(worker());
    const shown = await agent.get(`/imports/${runId}`).expect(200);
    assert.match(text(shown.text), new RegExp(`Synchronization #${runId} of`));
    assert.match(text(shown.text), /Every user and group imported from the directory \(asked for\)/);
    await t.db
      .update(directories)
      .set({ holdRemovalsPercent: 5, holdRemovalsMinimum: 50 })
      .where(eq(directories.id, directoryId));
  });

  test("nothing is queued for a directory nothing was imported from, nor for a disabled one", async () => {
    const other = await addDirectory(t.db, t.config.encryptionKey, server, { name: "Empty", position: 2 });
    await t.db
      .update(directories)
      .set({ nextSyncAt: sql`now() - interval '1 minute'` })
      .where(eq(directories.id, other.id));
    await t.db
      .update(directories)
      .set({ enabled: false, syncIntervalMinutes: 15, nextSyncAt: sql`now() - interval '1 minute'` })
      .where(eq(directories.id, directoryId));
    try {
      assert.deepEqual(await queueDueSynchronizations(t.db), []);
      const [moved] = await t.db.select().from(directories).where(eq(directories.id, other.id));
      assert.ok((moved?.nextSyncAt?.getTime() ?? 0) > Date.now(), "its next time moved on all the same");
    } finally {
      await t.db.update(directories).set({ enabled: true }).where(eq(directories.id, directoryId));
      await t.db.delete(directories).where(eq(directories.id, other.id));
    }
  });
});
