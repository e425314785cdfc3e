/**
 * Importing from a real Active Directory (Samba AD DC) through the import pages and the worker:
 * the directory is the Active Directory preset saved through Settings with only the URL, CA, bind
 * account and base DN typed in. The fixture's Everyone group has 2,500 members (two range
 * windows), Cycle A ⊃ B ⊃ C ⊃ A, and every tenth bulk user is disabled (userAccountControl 514).
 * Tests that change the directory come last.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import { queryRows } from "../../src/db/client.ts";
import { directories, groups, importRuns, roleAssignments } from "../../src/db/schema.ts";
import { addComputer, addGroup, deleteUser, renameUser, setUserEnabled } from "../../src/dev/ad-fixtures.ts";
import { openDirectory } from "../../src/ldap/client.ts";
import { dnEquals } from "../../src/ldap/dn.ts";
import { guidToFilterValue } from "../../src/ldap/mapping.ts";
import { SYSTEM_ACTOR as SYSTEM } from "../../src/services/audit.ts";
import { type Directory, toLoaded } from "../../src/services/directories.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
import type { ImportWorker } from "../../src/services/import/worker.ts";
import { nameKey } from "../../src/services/names.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { requestSynchronization } from "../../src/services/sync/schedule.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { roleId } from "../helpers/console.ts";
import { postForm, text } from "../helpers/http.ts";
import { rowsOf, runCounts, runQueued, testWorker } from "../web/import-support.ts";
import {
  type AdDomain,
  addAdDirectory,
  addAdDirectoryThroughSettings,
  adSkip,
  assignmentsOf,
  startAdDomain,
  timingsOf,
  userById,
  userByName,
} from "./support.ts";

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("importing from Active Directory (Samba AD DC)", { skip: adSkip }, () => {
  let domain: AdDomain;
  let t: TestApp;
  let worker: ImportWorker;
  let directory: Directory;
  let admin: Awaited<ReturnType<typeof signedInAgent>>;

  const searchUrl = (q: string, kind: string) =>
    `/imports/new?${new URLSearchParams({ directory: String(directory.id), kind, q })}`;

  async function search(q: string, kind = "users") {
    return admin.agent.get(searchUrl(q, kind)).expect(200);
  }

  /** Searches, ticks every row of the first page, presses Import, lets the worker run it. */
  async function importRows(q: string, kind = "users") {
    const rows = rowsOf((await search(q, kind)).text).filter((row) => row.key !== "");
    assert.ok(rows.length > 0, `nothing matches ${q}`);
    const res = await postForm(admin.agent, "/imports", admin.csrf, {
      directory: String(directory.id),
      kind,
      q,
      page: "1",
      shown: rows.map((row) => row.info),
      pick: rows.map((row) => row.key),
      copyFrom: "",
    }).expect(303);
    const id = Number(/^\/imports\/(\d+)$/.exec(res.headers.location ?? "")?.[1]);
    assert.ok(id > 0, `redirected to ${res.headers.location}`);
    await runQueued(worker);
    const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
    assert.ok(run, "the run exists");
    assert.equal(run.status, "succeeded", run.error ?? "");
    const page = await admin.agent.get(`/imports/${id}`).expect(200);
    return { run, page: text(page.text) };
  }

  async function groupNamed(name: string) {
    const [group] = await t.db
      .select()
      .from(groups)
      .where(eq(groups.nameKey, nameKey(name)));
    assert.ok(group, `no group ${name}`);
    return group;
  }

  async function memberNames(name: string): Promise<string[]> {
    const group = await groupNamed(name);
    const rows = await queryRows<{ username: string }>(
      t.db,
      sql`select u.username from group_members m join users u on u.id = m.user_id
          where m.group_id = ${group.id} order by u.username`,
    );
    return rows.map((row) => row.username);
  }

  async function subgroupNames(name: string): Promise<string[]> {
    const group = await groupNamed(name);
    const rows = await queryRows<{ name: string }>(
      t.db,
      sql`select g.name from group_subgroups s join groups g on g.id = s.child_id
          where s.parent_id = ${group.id} order by g.name`,
    );
    return rows.map((row) => row.name);
  }

  before(async () => {
    [domain, t] = await Promise.all([startAdDomain({ bulkUsers: 2500 }), createTestApp()]);
    await createUser(t.db, { username: "admin", role: "server_admin" });
    admin = await signedInAgent(t.app, "admin");
    directory = await addAdDirectoryThroughSettings(admin.agent, t.db, domain);
    worker = testWorker(t.db, t.config.encryptionKey, { batchSize: 1000 });
  });

  after(async () => {
    await worker?.stop();
    await t?.close();
    await domain?.stop();
  });

  describe("the search page", () => {
    test("lists AD users with the same columns and statuses as for OpenLDAP", async (ctx) => {
      ctx.diagnostic(timingsOf(domain));
      const res = await search("alice");
      const rows = rowsOf(res.text);
      assert.deepEqual(
        rows.map((row) => [row.name, row.status]),
        [["alice", "New"]],
      );
      assert.match(
        text(res.text),
        /alice User Alice Smith ?alice@example\.test CN=Alice Smith, ?OU=Staff, ?OU=Roster, ?DC=example, ?DC=test New Creates an external user/,
      );
      const picked = JSON.parse(rows[0]?.info ?? "{}");
      assert.match(picked.id, GUID, "the row is chosen by its objectGUID");
    });

    test("finds non-ASCII names, escaped DNs and raw filters on AD attributes", async () => {
      const names = async (q: string, kind = "users") =>
        rowsOf((await search(q, kind)).text).map((r) => r.name);
      assert.deepEqual(await names("李小龙"), ["李小龙"]);
      assert.deepEqual(await names("Đorđe"), ["đorđe"]);
      const john = await search("John Smith");
      assert.deepEqual(
        rowsOf(john.text).map((row) => row.name),
        ["jsmith"],
      );
      assert.match(
        text(john.text),
        /jsmith User John Smith ?jsmith@example\.test CN=Smith\\, John, ?OU=Staff/,
      );
      assert.deepEqual(await names("R&D, Europe", "groups"), ["R&D, Europe"]);
      const disabled = await names("(&(department=Sales)(userAccountControl:1.2.840.113556.1.4.803:=2))");
      assert.deepEqual(disabled, ["carol"]);
    });

    test("shows groups with their member counts, 2,500 read past the first range window", async () => {
      const page = text((await search("Everyone", "groups")).text);
      assert.match(
        page,
        /Everyone Group 2,500 members All bulk users CN=Everyone, ?OU=Groups, ?OU=Roster, ?DC=example, ?DC=test New/,
      );
      const cycles = rowsOf((await search("Cycle*", "groups")).text);
      assert.deepEqual(cycles.map((row) => [row.name, row.status]).sort(), [
        ["Cycle A", "New"],
        ["Cycle B", "New"],
        ["Cycle C", "New"],
      ]);
      assert.match(
        text((await search("Cycle A", "groups")).text),
        /Cycle A Group 2 members CN=Cycle A, ?OU=Groups, ?OU=Roster, ?DC=example, ?DC=test New/,
      );
    });
  });

  describe("importing", () => {
    test("chosen users become external users keyed on objectGUID; a disabled account is disabled", async () => {
      const q = "(|(sAMAccountName=alice)(sAMAccountName=bob)(sAMAccountName=carol)(sAMAccountName=zoë))";
      const { run } = await importRows(q);
      assert.deepEqual(runCounts(run), { created: 4, updated: 0, unchanged: 0, skipped: 0, failed: 0 });
      const alice = await userByName(t.db, "alice");
      assert.ok(alice);
      assert.equal(alice.kind, "external");
      assert.equal(alice.fullName, "Alice Smith");
      assert.equal(alice.department, "Engineering");
      assert.equal(alice.phone, "+1 555 0100");
      assert.match(alice.externalId ?? "", GUID);
      assert.equal(alice.enabled, true);
      assert.equal((await userByName(t.db, "zoë"))?.fullName, "Zoë Saldaña");
      const carol = await userByName(t.db, "carol");
      assert.equal(carol?.enabled, false, "userAccountControl has ACCOUNTDISABLE (0x2)");
      assert.deepEqual(
        rowsOf((await search(q)).text).map((row) => row.status),
        ["Up to date", "Up to date", "Up to date", "Up to date"],
      );
    });

    test("“Select all matches” imports what a raw AD filter finds", async () => {
      const params = {
        directory: String(directory.id),
        kind: "users",
        q: "(displayName=Đorđe*)",
        page: "1",
      };
      await postForm(admin.agent, "/imports/selection", admin.csrf, {
        ...params,
        copyFrom: "",
        total: "0",
        action: "select-matches",
      }).expect(303);
      const res = await postForm(admin.agent, "/imports", admin.csrf, { ...params, copyFrom: "" }).expect(
        303,
      );
      const id = Number(/^\/imports\/(\d+)$/.exec(res.headers.location ?? "")?.[1]);
      await runQueued(worker);
      const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
      assert.deepEqual(run?.selection, { mode: "query", text: "(displayName=Đorđe*)", kind: "users" });
      assert.deepEqual(run && runCounts(run), {
        created: 1,
        updated: 0,
        unchanged: 0,
        skipped: 0,
        failed: 0,
      });
      assert.equal((await userByName(t.db, "đorđe"))?.fullName, "Đorđe Balašević");
    });

    test("the stable id finds the same entry with <GUID=…> and with an escaped-byte filter", async () => {
      const alice = await userByName(t.db, "alice");
      const externalId = alice?.externalId ?? "";
      const opened = await openDirectory(
        toLoaded(directory, createSecretBox(t.config.encryptionKey)).connection,
      );
      assert.ok(opened.ok);
      try {
        const byGuid = await opened.session.readEntry(`<GUID=${externalId}>`, ["sAMAccountName"]);
        assert.equal(byGuid?.sAMAccountName, "alice");
        const found = [];
        const filter = `(objectGUID=${guidToFilterValue(externalId)})`;
        for await (const page of opened.session.searchPages(domain.server.baseDn, filter, "sub", ["1.1"])) {
          found.push(...page.map((entry) => entry.dn));
        }
        assert.deepEqual(found, [domain.ad.named.alice.dn]);
      } finally {
        await opened.session.close();
      }
    });

    // That member lists are read in explicit range windows (member;range=0-1499, then 1500-*), as real
    // AD requires, is asserted on the requests themselves in ldap.test.ts.
    test("a group of 2,500 members is imported completely", async (ctx) => {
      const started = performance.now();
      const { run, page } = await importRows("Everyone", "groups");
      ctx.diagnostic(`imported the 2,500-member group in ${Math.round(performance.now() - started)} ms`);
      assert.deepEqual(runCounts(run), { created: 2501, updated: 0, unchanged: 0, skipped: 0, failed: 0 });
      const members = await memberNames("Everyone");
      assert.equal(members.length, 2500);
      assert.deepEqual(
        new Set(members),
        new Set(domain.ad.bulkUsers.map((user) => user.sAMAccountName.normalize("NFC"))),
      );
      const [state] = await queryRows<{ enabled: number; disabled: number }>(
        t.db,
        sql`select count(*) filter (where u.enabled)::int as enabled, count(*) filter (where not u.enabled)::int as disabled
            from group_members m join users u on u.id = m.user_id
            where m.group_id = ${(await groupNamed("Everyone")).id}`,
      );
      const disabled = domain.ad.bulkUsers.filter((user) => !user.enabled).length;
      assert.deepEqual(state, { enabled: 2500 - disabled, disabled });
      assert.match(
        page,
        /Finished: 2,501 of 2,501 entries processed \(100%\)\. 100% Created 2,501 Updated 0 Unchanged 0 Skipped 0 Failed 0/,
      );
    });

    test("importing the group again changes nothing and says so", async () => {
      const { run } = await importRows("Everyone", "groups");
      assert.deepEqual(runCounts(run), { created: 0, updated: 0, unchanged: 2501, skipped: 0, failed: 0 });
      assert.equal((await memberNames("Everyone")).length, 2500);
    });

    test("Domain Users lists nobody in member: its members are the users whose primary group it is", async () => {
      const opened = await openDirectory(
        toLoaded(directory, createSecretBox(t.config.encryptionKey)).connection,
      );
      assert.ok(opened.ok);
      let expected: string[];
      try {
        // Counted independently: every user of the domain whose primaryGroupID is Domain Users' RID.
        expected = [];
        for await (const page of opened.session.searchPages(
          domain.server.baseDn,
          "(&(objectCategory=person)(objectClass=user)(primaryGroupID=513))",
          "sub",
          ["sAMAccountName"],
        )) {
          expected.push(...page.map((entry) => String(entry.sAMAccountName).normalize("NFC")));
        }
      } finally {
        await opened.session.close();
      }
      assert.ok(expected.length > 2500, `${expected.length} users have Domain Users as primary group`);
      assert.match(
        text((await search("Domain Users", "groups")).text),
        new RegExp(`Domain Users Group ${expected.length.toLocaleString("en-US")} members .* (New|Update)`),
      );
      const { run } = await importRows("Domain Users", "groups");
      assert.equal(run.failed, 0);
      assert.deepEqual(new Set(await memberNames("Domain Users")), new Set(expected));
      assert.ok(expected.includes("alice"));
    });

    test("a directory whose user base is OU=Staff imports none of a group's members elsewhere", async () => {
      // Another directory of the same domain, rooted at OU=Roster, whose users are those of OU=Staff.
      const staffOnly = await addAdDirectory(t.db, createSecretBox(t.config.encryptionKey), domain, SYSTEM, {
        name: "AD, staff only",
        baseDn: domain.ad.rootOu,
        // Its groups named by description: "Everyone" is the other directory's group already.
        mapping: { userBase: domain.ad.ou.staff, attrGroupName: "description" },
      });
      const everyone = await createRun(t.db, {
        directory: { id: staffOnly.id, name: staffOnly.name },
        actor: { id: null, name: "admin" },
        query: "(cn=Everyone)",
        selection: { mode: "query", text: "(cn=Everyone)", kind: "groups" },
        copyRolesFrom: null,
        total: null,
      });
      await runQueued(worker);
      const [bulk] = await t.db.select().from(importRuns).where(eq(importRuns.id, everyone.id));
      assert.equal(bulk?.status, "succeeded", bulk?.error ?? "");
      assert.deepEqual(
        { created: bulk?.created, skipped: bulk?.skipped },
        { created: 1, skipped: 2500 },
        "the group only: its 2,500 members live in OU=Bulk",
      );
      const reasons = await queryRows<{ reason: string }>(
        t.db,
        sql`select distinct reason from import_run_entries where run_id = ${everyone.id} and outcome = 'skipped'`,
      );
      assert.equal(reasons.length, 1, reasons.map((r) => r.reason).join("\n"));
      assert.ok(
        reasons[0]?.reason.endsWith(
          `, but not imported: Outside the directory's user search base (${domain.ad.ou.staff}).`,
        ),
        reasons[0]?.reason,
      );
    });

    test("a computer account in a group is skipped and labelled as a computer, not a user", async () => {
      const ws = await addComputer(domain.server, domain.ad.ou.staff, "WS01");
      await addGroup(domain.server, domain.ad.ou.groups, "Workstations", [ws, domain.ad.named.bob.dn]);
      const { run, page } = await importRows("Workstations", "groups");
      assert.equal(run.skipped, 1);
      assert.deepEqual(await memberNames("Workstations"), ["bob"]);
      const skipped = await queryRows<{ entry_kind: string; name: string; reason: string }>(
        t.db,
        sql`select entry_kind, name, reason from import_run_entries where run_id = ${run.id} and outcome = 'skipped'`,
      );
      assert.deepEqual(
        skipped.map((entry) => [entry.entry_kind, entry.name]),
        [["computer", "WS01"]],
      );
      assert.match(skipped[0]?.reason ?? "", /not imported: A computer account, not a person/);
      const report = text((await admin.agent.get(`/imports/${run.id}?outcome=skipped`).expect(200)).text);
      assert.match(report, /Computer WS01 CN=WS01,OU=Staff,/);
      assert.ok(page.includes("Skipped"), page);
    });

    test("nested groups become subgroups, and the cycle A ⊃ B ⊃ C ⊃ A is survived", async () => {
      const { run } = await importRows("Cycle A", "groups");
      assert.equal(run.failed, 0);
      assert.deepEqual(await subgroupNames("Cycle A"), ["Cycle B"]);
      assert.deepEqual(await subgroupNames("Cycle B"), ["Cycle C"]);
      assert.deepEqual(await subgroupNames("Cycle C"), ["Cycle A"]);
      assert.deepEqual(await memberNames("Cycle A"), ["alice"]);
      assert.deepEqual(await memberNames("Cycle B"), ["bob"]);
      assert.deepEqual(await memberNames("Cycle C"), ["zoë"]);
      const engineering = await importRows("Engineering", "groups");
      assert.equal(engineering.run.failed, 0);
      assert.deepEqual(await subgroupNames("Engineering"), ["R&D, Europe"]);
      assert.deepEqual(await memberNames("R&D, Europe"), ["jsmith"]);
    });
  });

  describe("changes made in AD, imported again", () => {
    test("an account disabled in AD is disabled by the next import", async () => {
      await setUserEnabled(domain.server, domain.ad.named.alice.dn, false);
      try {
        const rows = rowsOf((await search("alice")).text);
        assert.deepEqual(
          rows.map((row) => row.status),
          ["Update"],
        );
        const { run } = await importRows("alice");
        assert.deepEqual(runCounts(run), { created: 0, updated: 1, unchanged: 0, skipped: 0, failed: 0 });
        assert.equal((await userByName(t.db, "alice"))?.enabled, false);
      } finally {
        await setUserEnabled(domain.server, domain.ad.named.alice.dn, true);
      }
    });

    test("an account enabled in AD is enabled by the next import", async () => {
      assert.equal((await userByName(t.db, "carol"))?.enabled, false, "carol was imported disabled");
      await setUserEnabled(domain.server, domain.ad.named.carol.dn, true);
      assert.deepEqual(
        rowsOf((await search("carol")).text).map((row) => row.status),
        ["Update"],
      );
      const { run, page } = await importRows("carol");
      assert.deepEqual(runCounts(run), { created: 0, updated: 1, unchanged: 0, skipped: 0, failed: 0 });
      assert.match(page, /Changed: sign-in enabled \(enabled in the directory\)\./);
      assert.equal((await userByName(t.db, "carol"))?.enabled, true);
      await importRows("alice");
      assert.equal((await userByName(t.db, "alice"))?.enabled, true, "alice, enabled again in AD");
    });

    test("an account an administrator disabled stays disabled when AD enables it", async () => {
      const bob = await userByName(t.db, "bob");
      assert.ok(bob?.enabled, "bob was imported enabled");
      await postForm(admin.agent, `/users/${bob.id}/login-status`, admin.csrf, { status: "disabled" }).expect(
        303,
      );
      await setUserEnabled(domain.server, domain.ad.named.bob.dn, false);
      try {
        assert.equal((await importRows("bob")).run.unchanged, 1);
        await setUserEnabled(domain.server, domain.ad.named.bob.dn, true);
        assert.deepEqual(
          rowsOf((await search("bob")).text).map((row) => row.status),
          ["Up to date"],
        );
        assert.equal((await importRows("bob")).run.unchanged, 1);
        assert.equal((await userByName(t.db, "bob"))?.enabled, false, "the administrator's choice stands");
      } finally {
        await setUserEnabled(domain.server, domain.ad.named.bob.dn, true);
      }
    });

    test("a renamed and moved user is updated in place, matched by objectGUID, roles intact", async () => {
      const original = domain.ad.bulkUsers[0];
      assert.ok(original);
      const before = await userByName(t.db, original.sAMAccountName);
      assert.ok(before);
      await t.db.insert(roleAssignments).values({ roleId: await roleId(t.db, "viewer"), userId: before.id });
      const roles = await assignmentsOf(t.db, before.id);
      const newDn = await renameUser(domain.server, original.dn, {
        cn: "Renamed, Person",
        parentDn: domain.ad.ou.former,
        sAMAccountName: "renamed1",
      });
      const rows = rowsOf((await search("renamed1")).text);
      assert.deepEqual(
        rows.map((row) => [row.name, row.status]),
        [["renamed1", "Update"]],
      );
      const { run } = await importRows("renamed1");
      assert.deepEqual(runCounts(run), { created: 0, updated: 1, unchanged: 0, skipped: 0, failed: 0 });
      const after = await userById(t.db, before.id);
      assert.equal(after?.username, "renamed1");
      assert.equal(after?.externalId, before.externalId);
      assert.ok(after?.dn && dnEquals(after.dn, newDn), `${after?.dn} is ${newDn}`);
      assert.deepEqual(await assignmentsOf(t.db, before.id), roles);
      assert.equal(await userByName(t.db, original.sAMAccountName), undefined, "no duplicate");
      const again = await importRows("Everyone", "groups");
      assert.equal(again.run.created, 0, "the group's import finds the renamed member by objectGUID");
      const members = await memberNames("Everyone");
      assert.equal(members.length, 2500);
      assert.ok(members.includes("renamed1"));
    });
  });

  describe("synchronizing", () => {
    test("a full synchronization, then an incremental one that reads only what changed in AD", async () => {
      const syncWorker = testWorker(t.db, t.config.encryptionKey, { batchSize: 1000, watermarkMarginMs: 0 });
      const synchronize = async () => {
        const { run } = await requestSynchronization(
          t.db,
          { id: directory.id, name: directory.name },
          { id: null, name: "admin" },
        );
        await runQueued(syncWorker);
        const [ended] = await t.db.select().from(importRuns).where(eq(importRuns.id, run.id));
        assert.ok(ended);
        assert.equal(ended.status, "succeeded", ended.error ?? ended.heldReason ?? "");
        return ended;
      };
      const full = await synchronize();
      assert.equal(full.syncMethod, "full");
      assert.equal(full.created, 0);
      await setUserEnabled(domain.server, domain.ad.named.alice.dn, false);
      try {
        const first = await synchronize();
        assert.equal(first.syncMethod, "incremental", first.syncNote ?? "");
        assert.match(
          first.syncNote ?? "",
          /^Entries the domain controller changed since its update \d+, and the objects deleted since\.$/,
        );
        assert.equal((await userByName(t.db, "alice"))?.enabled, false, "disabled in AD, disabled here");
        assert.ok(first.processed < 50, `only what changed (${first.processed}: ${first.syncNote})`);
        await setUserEnabled(domain.server, domain.ad.named.alice.dn, true);
        const second = await synchronize();
        assert.equal(second.syncMethod, "incremental");
        assert.equal((await userByName(t.db, "alice"))?.enabled, true, "enabled again in AD, here too");
        assert.ok(second.processed < 50, `only what changed, not all 2,512 users (${second.processed})`);
      } finally {
        await setUserEnabled(domain.server, domain.ad.named.alice.dn, true);
      }
      // Carol is in no group: only her tombstone tells, read with the Show Deleted control. Reading
      // CN=Deleted Objects takes a right AD gives administrators only (or whom they grant it to):
      // this directory binds as one now. (Without it, the daily presence pass finds her gone.)
      await t.db
        .update(directories)
        .set({
          bindDn: domain.server.adminDn,
          bindPasswordEncrypted: createSecretBox(t.config.encryptionKey).encrypt(domain.server.adminPassword),
        })
        .where(eq(directories.id, directory.id));
      await deleteUser(domain.server, domain.ad.named.carol.dn);
      const third = await synchronize();
      assert.equal(third.syncMethod, "incremental");
      const carol = await userByName(t.db, "carol");
      assert.deepEqual(
        { missing: carol?.missingInDirectory, enabled: carol?.enabled },
        { missing: true, enabled: false },
        "deleted in AD: disabled and marked missing by the next incremental run",
      );
      assert.ok(third.processed < 50, `only what changed (${third.processed})`);

      // Update numbers are one controller's own: another one answering means reading everything.
      await t.db
        .update(directories)
        .set({ syncState: sql`jsonb_set(sync_state, '{sequence,server}', '"CN=NTDS Settings,CN=OTHER-DC"')` })
        .where(eq(directories.id, directory.id));
      const elsewhere = await synchronize();
      assert.equal(elsewhere.syncMethod, "full");
      assert.match(elsewhere.syncNote ?? "", /^Another domain controller answered/);
      assert.equal(elsewhere.created + elsewhere.updated, 0, "nothing changed meanwhile");
      const back = await synchronize();
      assert.equal(back.syncMethod, "incremental", "the full run recorded this controller again");
    });
  });
});
