import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq, sql } from "drizzle-orm";
import { Attribute, Change, Client } from "ldapts";
import supertest from "supertest";
import { queryRows } from "../../src/db/client.ts";
import { auditLog, directoryDefaultRoles, importRuns, roleAssignments, users } from "../../src/db/schema.ts";
import type { SlapdServer } from "../../src/dev/slapd.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
import type { ImportWorker } from "../../src/services/import/worker.ts";
import { userSearchText } from "../../src/services/names.ts";
import { createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { roleId, userNamed } from "../helpers/console.ts";
import { asFragment, postForm, text } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  closeImportTestBed,
  type ImportFixture,
  type ImportTestBed,
  openImportTestBed,
  rowsOf,
  runCounts,
  runQueued,
  stableIdOf,
  testWorker,
} from "./import-support.ts";

let bed: ImportTestBed;
let t: TestApp;
let server: SlapdServer;
let fixture: ImportFixture;
let worker: ImportWorker;
let directoryId: number;
let otherDirectoryId: number;
let viewerRoleId: number;

const skip = skipWithoutSlapd;

before(async () => {
  if (skip) return;
  bed = await openImportTestBed({ worker: { batchSize: 500 } });
  ({ t, server, fixture, directoryId, worker } = bed);
  await createUser(t.db, { username: "viewer", role: "viewer" });
  await createUser(t.db, { username: "nobody" });
  otherDirectoryId = (
    await addDirectory(t.db, t.config.encryptionKey, server, { name: "Other LDAP", position: 2 })
  ).id;
  viewerRoleId = await roleId(t.db, "viewer");
  await t.db.insert(directoryDefaultRoles).values({ directoryId, roleId: viewerRoleId, scope: "" });
});
after(() => closeImportTestBed(bed));

const searchUrl = (q: string, kind = "users") =>
  `/imports/new?${new URLSearchParams({ directory: String(directoryId), kind, q })}`;

/** Searches, ticks every row of the first page, presses Import, runs the worker; returns the run. */
async function importRows(q: string, options: { kind?: string; copyFrom?: string } = {}) {
  const { agent, csrf } = await signedInAgent(t.app, "admin");
  const kind = options.kind ?? "users";
  const rows = rowsOf((await agent.get(searchUrl(q, kind))).text).filter((r) => r.key !== "");
  const res = await postForm(agent, "/imports", csrf, {
    directory: String(directoryId),
    kind,
    q,
    page: "1",
    shown: rows.map((r) => r.info),
    pick: rows.map((r) => r.key),
    copyFrom: options.copyFrom ?? "",
  }).expect(303);
  return finish(agent, res.headers.location);
}

async function importAllMatches(q: string, kind = "users") {
  const { agent, csrf } = await signedInAgent(t.app, "admin");
  const params = { directory: String(directoryId), kind, q, page: "1", copyFrom: "" };
  await postForm(agent, "/imports/selection", csrf, {
    ...params,
    total: "0",
    action: "select-matches",
  }).expect(303);
  const res = await postForm(agent, "/imports", csrf, params).expect(303);
  return finish(agent, res.headers.location);
}

async function finish(agent: ReturnType<typeof supertest.agent>, location: string | undefined) {
  const id = Number(/^\/imports\/(\d+)$/.exec(location ?? "")?.[1]);
  assert.ok(id > 0, `redirected to ${location}`);
  await runQueued(worker);
  const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
  if (!run) throw new Error("no run");
  const page = await agent.get(`/imports/${id}`).expect(200);
  return { run, page: page.text, agent };
}

describe("importing users", { skip }, () => {
  test("chosen users become external users with the directory's default roles", async () => {
    const { run, page } = await importRows("(|(uid=alpha)(uid=sobrien)(uid=xss))");
    assert.equal(run.status, "succeeded");
    assert.deepEqual(runCounts(run), { created: 3, updated: 0, unchanged: 0, skipped: 0, failed: 0 });
    const sobrien = await userNamed(t.db, "sobrien");
    assert.equal(sobrien?.kind, "external");
    assert.equal(sobrien?.directoryId, directoryId);
    assert.equal(sobrien?.externalId, stableIdOf("cn=O'Brien\\, Seán,ou=people,dc=example,dc=test"));
    assert.equal(sobrien?.fullName, "O'Brien, Seán");
    assert.equal(sobrien?.email, "sobrien@example.test");
    assert.equal(sobrien?.dn, "cn=O'Brien\\2C Seán,ou=people,dc=example,dc=test");
    assert.equal(sobrien?.searchText, userSearchText("sobrien", "O'Brien, Seán", "sobrien@example.test"));
    assert.equal(sobrien?.passwordHash, null);
    const granted = await t.db
      .select()
      .from(roleAssignments)
      .where(and(eq(roleAssignments.userId, sobrien?.id ?? -1), eq(roleAssignments.roleId, viewerRoleId)));
    assert.equal(granted.length, 1, "the directory's default role");
    assert.match(text(page), /Finished: 3 of 3 entries processed \(100%\)/);
    assert.match(text(page), /Created 3 Updated 0 Unchanged 0 Skipped 0 Failed 0/);
    // The server sends cn=O'Brien\2C Seán; people read RFC 4514's cn=O'Brien\, Seán.
    assert.match(text(page), /User sobrien cn=O'Brien\\, Seán,ou=people,dc=example,dc=test/);
    assert.match(page, /<td class="entry-name">xss<\/td>/);
  });

  test("an internal user with the username is synchronized, stays internal and keeps its roles", async () => {
    const bravo = await createUser(t.db, { username: "Bravo", fullName: "Old Name", role: "user_manager" });
    const before = await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, bravo.id));
    const { run, page } = await importRows("bravo");
    assert.deepEqual(runCounts(run), { created: 0, updated: 1, unchanged: 0, skipped: 0, failed: 0 });
    const after = await userNamed(t.db, "bravo");
    assert.equal(after?.id, bravo.id);
    assert.equal(after?.kind, "internal");
    assert.equal(after?.username, "Bravo", "an internal user keeps its username");
    assert.equal(after?.fullName, "Bravo Cycle");
    assert.equal(after?.email, "bravo@example.test");
    assert.ok(after?.passwordHash);
    assert.deepEqual(
      await t.db.select().from(roleAssignments).where(eq(roleAssignments.userId, bravo.id)),
      before,
    );
    assert.match(text(page), /User bravo .* Internal user synchronized: full name and email\./);
  });

  test("a username that differs only by case or normalization form is the same user", async () => {
    const zoe = await createUser(t.db, { username: "ZOË", fullName: "Zoë Precomposed" }); // NFC, upper case
    const upper = await createUser(t.db, { username: "zoë.upper" });
    const count = async () => (await t.db.select().from(users)).length;
    const before = await count();
    const { run } = await importRows("(|(uid=zoe\\cc\\88)(uid=Zoë.Upper))"); // zoë written decomposed
    assert.deepEqual(runCounts(run), { created: 0, updated: 2, unchanged: 0, skipped: 0, failed: 0 });
    assert.equal(await count(), before, "no second user");
    assert.equal((await userNamed(t.db, "zoë"))?.id, zoe.id);
    assert.equal((await userNamed(t.db, "zoë"))?.fullName, "Zoë Decomposed");
    assert.equal((await userNamed(t.db, "ZOË.UPPER"))?.id, upper.id);
  });

  test("Unicode usernames and names import and display correctly", async () => {
    const { run, page } = await importRows("(|(uid=đorđe)(uid=李小龙))");
    assert.deepEqual(runCounts(run), { created: 2, updated: 0, unchanged: 0, skipped: 0, failed: 0 });
    assert.equal((await userNamed(t.db, "ĐORĐE"))?.fullName, "Đorđe Balašević");
    assert.equal((await userNamed(t.db, "李小龙"))?.username, "李小龙");
    assert.match(page, /<td class="entry-name">đorđe<\/td>/);
    assert.match(page, /<td class="entry-name">李小龙<\/td>/);
  });

  test("a user whose username belongs to another directory is skipped and reported", async () => {
    await t.db.insert(users).values({
      kind: "external",
      username: "charlie",
      usernameKey: "charlie",
      searchText: "charlie",
      directoryId: otherDirectoryId,
      externalId: "elsewhere-1",
    });
    const { run, agent } = await importRows("charlie");
    assert.deepEqual(runCounts(run), { created: 0, updated: 0, unchanged: 0, skipped: 1, failed: 0 });
    const report = await agent.get(`/imports/${run.id}?outcome=skipped`).expect(200);
    assert.match(
      text(report.text),
      /User charlie uid=charlie,ou=people,dc=example,dc=test The username belongs to a user of the directory “Other LDAP”\./,
    );
    assert.equal((await userNamed(t.db, "charlie"))?.directoryId, otherDirectoryId, "never taken over");
  });

  test("all matches of a search import past the size limit, and the summary adds up", async () => {
    const { run } = await importAllMatches("*");
    const inLdap = (fixture.ldif.match(/^objectClass: inetOrgPerson$/gm) ?? []).length - 1; // contractor1 is outside ou=people
    assert.equal(run.status, "succeeded");
    assert.equal(run.processed, inLdap);
    assert.equal(run.total, inLdap);
    assert.equal(run.created + run.updated + run.unchanged + run.skipped + run.failed, inLdap);
    assert.equal(run.skipped, 1, "charlie");
    assert.equal(run.failed, 0);
    const [row] = await queryRows<{ n: number }>(
      t.db,
      sql`select count(*)::int as n from users where directory_id = ${directoryId} and kind = 'external'`,
    );
    const internalsSynced = 3; // Bravo, ZOË, zoë.upper stay internal
    assert.equal(Number(row?.n), inLdap - 1 - internalsSynced);
  });

  test("importing the same selection again changes nothing and reports everything unchanged", async () => {
    const snapshot = async () =>
      queryRows(t.db, sql`select id, username, full_name, updated_at, last_synced_at from users order by id`);
    const assignments = async () => (await t.db.select().from(roleAssignments)).length;
    const before = await snapshot();
    const assignmentsBefore = await assignments();
    const { run } = await importAllMatches("*");
    assert.equal(run.created, 0);
    assert.equal(run.updated, 0);
    assert.equal(run.unchanged, run.processed - run.skipped);
    assert.deepEqual(await snapshot(), before, "not even a timestamp changed");
    assert.equal(await assignments(), assignmentsBefore);
  });

  test("a chosen user that can no longer be imported is reported once, as skipped with its reason", async () => {
    const dn = `cn=Soon Nameless,ou=people,${server.baseDn}`;
    const admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    try {
      await admin.add(dn, { objectClass: "inetOrgPerson", cn: "Soon Nameless", sn: "Nameless", uid: "soon" });
      const { searchEntries } = await admin.search(dn, { scope: "base", attributes: ["entryUUID"] });
      const externalId = String(searchEntries[0]?.entryUUID ?? "");
      // Chosen while it had a username; by the time the run reads it, it has none.
      const run = await createRun(t.db, {
        directory: { id: directoryId, name: "Example LDAP" },
        actor: { id: null, name: "admin" },
        query: "soon",
        selection: { mode: "entries", entries: [{ dn, kind: "user", name: "soon", externalId }] },
        copyRolesFrom: null,
        total: 1,
      });
      await admin.modify(
        dn,
        new Change({ operation: "delete", modification: new Attribute({ type: "uid" }) }),
      );
      await runQueued(worker);
      const [done] = await t.db.select().from(importRuns).where(eq(importRuns.id, run.id));
      assert.equal(done?.status, "succeeded");
      assert.deepEqual(
        { processed: done?.processed, skipped: done?.skipped, failed: done?.failed },
        { processed: 1, skipped: 1, failed: 0 },
      );
      const { agent } = await signedInAgent(t.app, "admin");
      const report = text((await agent.get(`/imports/${run.id}`)).text);
      assert.match(report, /Can't be imported: The entry has no uid \(username\)\./);
      assert.doesNotMatch(report, /no longer in the directory/);
    } finally {
      await admin.del(dn).catch(() => {});
      await admin.unbind();
    }
  });

  test("a username given to a new person while its holder is renamed is not handed over", async () => {
    const admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    const keeper = `uid=keeper,ou=people,${server.baseDn}`;
    const renamed = `uid=keeper-old,ou=people,${server.baseDn}`;
    try {
      await admin.add(keeper, {
        objectClass: "inetOrgPerson",
        uid: "keeper",
        cn: "Kept Keeper",
        sn: "Keeper",
      });
      await importRows("keeper");
      const [before] = await t.db.select().from(users).where(eq(users.usernameKey, "keeper"));
      // In the directory the holder is renamed, and a new person gets the username.
      await admin.modifyDN(keeper, "uid=keeper-old");
      await admin.modify(
        renamed,
        new Change({
          operation: "replace",
          modification: new Attribute({ type: "uid", values: ["keeper-old"] }),
        }),
      );
      await admin.add(keeper, {
        objectClass: "inetOrgPerson",
        uid: "keeper",
        cn: "New Keeper",
        sn: "Keeper",
      });
      const { agent } = await signedInAgent(t.app, "admin");
      const [row] = rowsOf((await agent.get(searchUrl("(uid=keeper)"))).text);
      assert.equal(row?.status, "Conflict");
      const { run } = await importRows("(uid=keeper)");
      assert.equal(run.skipped, 1);
      const [after] = await t.db.select().from(users).where(eq(users.usernameKey, "keeper"));
      assert.equal(after?.externalId, before?.externalId, "still the renamed entry's user");
      assert.equal(after?.fullName, "Kept Keeper");
      // Imported in the order the message asks for, both end up right.
      await importRows("(uid=keeper-old)");
      const second = await importRows("(uid=keeper)");
      assert.equal(second.run.created, 1);
      const [moved] = await t.db.select().from(users).where(eq(users.usernameKey, "keeper-old"));
      assert.equal(moved?.id, before?.id, "the holder keeps its Roster user, renamed");
    } finally {
      for (const dn of [keeper, renamed]) await admin.del(dn).catch(() => {});
      await admin.unbind();
    }
  });

  test("roles of a chosen user are copied onto every imported user", async () => {
    const source = await createUser(t.db, { username: "template" });
    const managerRole = await roleId(t.db, "resource_manager");
    await t.db.insert(roleAssignments).values({ roleId: managerRole, userId: source.id, scope: "project:7" });
    const { run, page } = await importRows("(|(uid=pkim)(uid=agarcia)(uid=alpha))", {
      copyFrom: `user:${source.id}`,
    });
    assert.equal(run.status, "succeeded");
    assert.deepEqual(run.copyRolesFrom, { type: "user", id: source.id, name: "template" });
    for (const username of ["pkim", "agarcia", "alpha"]) {
      const user = await userNamed(t.db, username);
      const copied = await t.db
        .select()
        .from(roleAssignments)
        .where(and(eq(roleAssignments.userId, user?.id ?? -1), eq(roleAssignments.roleId, managerRole)));
      assert.deepEqual(
        copied.map((a) => a.scope),
        ["project:7"],
        username,
      );
    }
    assert.match(text(page), /Copies roles from User template/);
  });

  test("each finished run writes an audit-log entry with its summary", async () => {
    const { run } = await importRows("leepark");
    const [entry] = await t.db
      .select()
      .from(auditLog)
      .where(
        and(
          eq(auditLog.action, "import.succeeded"),
          eq(auditLog.targetId, String(directoryId)),
          sql`${auditLog.details}->>'run' = ${String(run.id)}`,
        ),
      );
    assert.equal(entry?.actorName, "admin");
    assert.equal(entry?.targetName, "Example LDAP");
    const details = (entry?.details ?? {}) as Record<string, unknown>;
    assert.deepEqual(
      { created: details.created, unchanged: details.unchanged },
      { created: 0, unchanged: 1 },
    );
  });
});

describe("the run page", { skip }, () => {
  test("while a run waits, it polls its progress with htmx and refreshes itself without JavaScript", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const run = await createRun(t.db, {
      directory: { id: directoryId, name: "Example LDAP" },
      actor: { id: null, name: "admin" },
      query: "alpha",
      selection: { mode: "query", text: "alpha", kind: "users" },
      copyRolesFrom: null,
      total: 1,
    });
    const full = await agent.get(`/imports/${run.id}`).expect(200);
    assert.match(full.text, /^<!doctype html>/);
    assert.match(
      full.text,
      new RegExp(
        `<section id="import-progress"[^>]*hx-get="/imports/${run.id}" hx-trigger="every 1s" hx-target="this" hx-swap="outerHTML"`,
      ),
    );
    assert.match(full.text, /<noscript><meta http-equiv="refresh" content="2"><\/noscript>/);
    assert.match(text(full.text), /Waiting to start: 0 of 1 entry processed \(0%\)/);
    assert.match(full.text, /Cancel import/);
    const partial = await asFragment(agent.get(`/imports/${run.id}`), "section#import-progress").expect(200);
    assert.match(partial.text, /^\s*<section id="import-progress"/);
    assert.doesNotMatch(partial.text, /<html|<h1>|hx-partial/);

    await runQueued(worker);
    const last = await asFragment(agent.get(`/imports/${run.id}`), "section#import-progress").expect(200);
    assert.doesNotMatch(last.text.split("</section>")[0] ?? "", /hx-trigger/, "polling stops");
    assert.match(
      last.text,
      /<hx-partial hx-target="#import-report" hx-swap="outerHTML">\s*<section id="import-report"/,
    );
    assert.match(
      last.text,
      /<hx-partial hx-target="#import-actions" hx-swap="outerHTML">\s*<div id="import-actions"/,
    );
    assert.match(last.text, /Run this import again/);
    const done = await agent.get(`/imports/${run.id}`).expect(200);
    assert.doesNotMatch(done.text, /hx-trigger|http-equiv="refresh"/);
    assert.match(text(done.text), /Finished: 1 of 1 entry processed \(100%\)/);
  });

  test("while a run runs, its page gives the pace and the time left; once ended, how long it took", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const run = await createRun(t.db, {
      directory: { id: directoryId, name: "Example LDAP" },
      actor: { id: null, name: "admin" },
      query: "*",
      selection: { mode: "query", text: "*", kind: "users" },
      copyRolesFrom: null,
      total: 2000,
    });
    try {
      await t.db
        .update(importRuns)
        .set({
          status: "running",
          processed: 500,
          startedAt: sql`now() - interval '10 seconds'`,
          heartbeatAt: sql`now()`,
        })
        .where(eq(importRuns.id, run.id));
      const running = text((await agent.get(`/imports/${run.id}`).expect(200)).text);
      assert.match(
        running,
        /Importing: 500 of 2,000 entries processed \(25%\)\. 25% 50 entries a second · about 30 s left/,
      );
      assert.doesNotMatch(running, /Took /);
      await t.db
        .update(importRuns)
        .set({
          status: "succeeded",
          processed: 2000,
          created: 2000,
          finishedAt: sql`started_at + interval '62 seconds'`,
        })
        .where(eq(importRuns.id, run.id));
      const done = text((await agent.get(`/imports/${run.id}`).expect(200)).text);
      assert.match(
        done,
        /Finished: 2,000 of 2,000 entries processed \(100%\)\. 100% Created 2,000 Updated 0 Unchanged 0 Skipped 0 Failed 0 Took 1 min 2 s, 32 entries a second\./,
      );
      assert.doesNotMatch(done, /left/);
    } finally {
      await t.db
        .update(importRuns)
        .set({ status: "cancelled", finishedAt: sql`now()` })
        .where(eq(importRuns.id, run.id));
    }
  });

  test("“has started” is not said of a run that has ended; the last poll brings its end time and drops the flash", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const rows = rowsOf((await agent.get(searchUrl("bravo")).expect(200)).text);
    const start = await postForm(agent, "/imports", csrf, {
      directory: String(directoryId),
      kind: "users",
      q: "bravo",
      page: "1",
      shown: rows.map((r) => r.info),
      pick: rows.map((r) => r.key),
    }).expect(303);
    const location = start.headers.location ?? "";
    // While it waits, the flash confirms it; the run's facts have no end yet.
    const waiting = await agent.get(location).expect(200);
    assert.match(text(waiting.text), /The import has started\./);
    assert.doesNotMatch(text(waiting.text), /Ended/);
    await runQueued(worker);
    const last = await asFragment(agent.get(location), "section#import-progress").expect(200);
    assert.match(
      last.text,
      /<hx-partial hx-target="#import-facts" hx-swap="outerHTML">\s*<dl class="facts" id="import-facts">/,
    );
    assert.match(text(last.text), /Ended \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    assert.match(last.text, /<hx-partial hx-target="#main > .flash-success" hx-swap="delete">/);

    // Without JavaScript, a run that ended before its page loaded says so, not that it started.
    const again = await postForm(agent, "/imports", csrf, {
      directory: String(directoryId),
      kind: "users",
      q: "bravo",
      page: "1",
      shown: rows.map((r) => r.info),
      pick: rows.map((r) => r.key),
    }).expect(303);
    await runQueued(worker);
    const ended = text((await agent.get(again.headers.location ?? "").expect(200)).text);
    assert.doesNotMatch(ended, /has started/);
    assert.match(ended, /Finished: 1 of 1 entry processed/);
    assert.match(ended, /Ended \d{4}-/);
  });

  test("a queued run can be cancelled at once; a running one stops after its batch", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const queued = await createRun(t.db, {
      directory: { id: directoryId, name: "Example LDAP" },
      actor: { id: null, name: "admin" },
      query: "*",
      selection: { mode: "query", text: "*", kind: "users" },
      copyRolesFrom: null,
      total: null,
    });
    const res = await postForm(agent, `/imports/${queued.id}/cancellation`, csrf).expect(303);
    assert.equal(res.headers.location, `/imports/${queued.id}`);
    const page = await agent.get(`/imports/${queued.id}`);
    assert.match(text(page.text), /The import was cancelled before it started\./);
    assert.match(text(page.text), /Cancelled: 0/);

    const running = await createRun(t.db, {
      directory: { id: directoryId, name: "Example LDAP" },
      actor: { id: null, name: "admin" },
      query: "*",
      selection: { mode: "query", text: "*", kind: "users" },
      copyRolesFrom: null,
      total: null,
    });
    const cancelling = testWorker(t.db, t.config.encryptionKey, {
      batchSize: 500,
      hooks: {
        afterBatch: async (claim) => {
          if (claim.run.id === running.id)
            await postForm(agent, `/imports/${running.id}/cancellation`, csrf).expect(303);
        },
      },
    });
    await runQueued(cancelling);
    const [stopped] = await t.db.select().from(importRuns).where(eq(importRuns.id, running.id));
    assert.equal(stopped?.status, "cancelled");
    // The batches under way when the cancellation arrives are completed: whole batches only.
    assert.ok(
      stopped && stopped.processed % 500 === 0 && stopped.processed < 2500,
      `stopped early, after whole batches (${stopped?.processed})`,
    );
    assert.equal(
      stopped?.created + stopped?.updated + stopped?.unchanged + stopped?.skipped,
      stopped?.processed,
    );
    const again = await postForm(agent, `/imports/${running.id}/cancellation`, csrf).expect(303);
    assert.match(
      text((await agent.get(again.headers.location ?? "")).text),
      /The import had already ended\./,
    );
  });

  test("what a run has handled is kept in the database, a row per user, until it ends", async () => {
    const run = await createRun(t.db, {
      directory: { id: directoryId, name: "Example LDAP" },
      actor: { id: null, name: "admin" },
      query: "*",
      selection: { mode: "query", text: "*", kind: "users" },
      copyRolesFrom: null,
      total: null,
    });
    const seen: { processed: number; handled: number }[] = [];
    const watching = testWorker(t.db, t.config.encryptionKey, {
      batchSize: 500,
      hooks: {
        afterBatch: async (claim) => {
          if (claim.run.id !== run.id) return;
          // One snapshot: the run's counters and its handled users, committed together per batch.
          const [row] = await queryRows<{ processed: number; handled: number }>(
            t.db,
            sql`select r.processed,
                       (select count(*)::int from import_run_users h where h.run_id = r.id) as handled
                from import_runs r where r.id = ${run.id}`,
          );
          if (row) seen.push({ processed: Number(row.processed), handled: Number(row.handled) });
        },
      },
    });
    await runQueued(watching);
    assert.ok(seen.length >= 2, `several batches (${seen.length})`);
    for (const { processed, handled } of seen) assert.equal(handled, processed);
    const [left] = await queryRows<{ n: number }>(
      t.db,
      sql`select count(*)::int as n from import_run_users where run_id = ${run.id}`,
    );
    assert.equal(left?.n, 0, "the run's end drops them");
  });

  test("runs are listed, newest first, and under their directory", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const all = await agent.get("/imports").expect(200);
    assert.match(text(all.text), /#1 .* admin Example LDAP .* Finished 3 0 0 0 0/);
    const mine = await agent.get(`/settings/directories/${directoryId}/imports`).expect(200);
    assert.match(mine.text, /<h1>Imports from Example LDAP<\/h1>/);
    assert.match(mine.text, /href="\/imports\/1"/);
    const other = await agent.get(`/settings/directories/${otherDirectoryId}/imports`).expect(200);
    assert.match(text(other.text), /No import has run yet/);
    await agent.get("/settings/directories/99999/imports").expect(404);
    await agent.get("/imports/99999").expect(404);
  });

  test("a run page refuses anonymous visitors and users without permission", async () => {
    const res = await supertest(t.app).get("/imports/1").expect(303);
    assert.equal(res.headers.location, "/login?returnTo=%2Fimports%2F1");
    const fragment = await asFragment(supertest(t.app).get("/imports/1"), "section#import-progress");
    assert.equal(fragment.status, 401);
    for (const username of ["viewer", "nobody"]) {
      const { agent } = await signedInAgent(t.app, username);
      await agent.get("/imports/1").expect(403);
      await asFragment(agent.get("/imports/1"), "section#import-progress").expect(403);
    }
  });
});

describe("a directory's first import", { skip }, () => {
  test("inserts at once, and still synchronizes an internal user whose username it meets", async () => {
    // A bed of its own: here the directory must hold no user yet, and the run must be the first.
    const own = await openImportTestBed();
    const ownWorker = testWorker(own.t.db, own.t.config.encryptionKey, { batchSize: 500 });
    try {
      const internal = await createUser(own.t.db, { username: "Meta", fullName: "Old Name" });
      await createRun(own.t.db, {
        directory: { id: own.directoryId, name: "Example LDAP" },
        actor: { id: null, name: "admin" },
        query: "(|(uid=meta)(uid=pkim))",
        selection: { mode: "query", text: "(|(uid=meta)(uid=pkim))", kind: "users" },
        copyRolesFrom: null,
        total: null,
      });
      assert.equal(await runQueued(ownWorker), 1);
      const [run] = await own.t.db.select().from(importRuns);
      assert.equal(run?.status, "succeeded");
      assert.deepEqual(run && runCounts(run), {
        created: 1,
        updated: 1,
        unchanged: 0,
        skipped: 0,
        failed: 0,
      });
      const stored = await own.t.db.select().from(users).where(eq(users.usernameKey, "meta"));
      assert.equal(stored.length, 1, "no second user for the taken username");
      assert.equal(stored[0]?.id, internal.id);
      assert.equal(stored[0]?.kind, "internal");
      assert.equal(stored[0]?.fullName, "Star*Paren(s)\\Back");
      const [pkim] = await own.t.db.select().from(users).where(eq(users.usernameKey, "pkim"));
      assert.equal(pkim?.kind, "external");
      assert.equal(pkim?.directoryId, own.directoryId);
    } finally {
      await closeImportTestBed(own, ownWorker);
    }
  });
});
