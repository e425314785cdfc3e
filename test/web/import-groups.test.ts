import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { and, eq, sql } from "drizzle-orm";
import { Attribute, Change, Client } from "ldapts";
import { type Db, queryRows } from "../../src/db/client.ts";
import { groups, importRuns, roleAssignments, roles, users } from "../../src/db/schema.ts";
import type { SlapdServer } from "../../src/dev/slapd.ts";
import type { ImportWorker } from "../../src/services/import/worker.ts";
import { nameKey } from "../../src/services/names.ts";
import { signedInAgent, type TestApp } from "../helpers/app.ts";
import { postForm, text } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  closeImportTestBed,
  groupDnOf,
  type ImportFixture,
  type ImportTestBed,
  openImportTestBed,
  rowsOf,
  runQueued,
  testWorker,
} from "./import-support.ts";

let bed: ImportTestBed;
let t: TestApp;
let server: SlapdServer;
let fixture: ImportFixture;
let worker: ImportWorker;
let directoryId: number;
let posixDirectoryId: number;

const skip = skipWithoutSlapd;

before(async () => {
  if (skip) return;
  bed = await openImportTestBed({ worker: { batchSize: 1000 } });
  ({ t, server, fixture, directoryId, worker } = bed);
  posixDirectoryId = (
    await addDirectory(t.db, t.config.encryptionKey, server, {
      name: "Posix view",
      position: 2,
      mapping: { groupFilter: "(objectClass=posixGroup)", attrMember: "memberUid", memberValues: "username" },
    })
  ).id;
});
after(() => closeImportTestBed(bed));

/** Ticks the groups (or entries of `kind`) a search finds, imports them and runs the worker. */
async function importGroups(
  q: string,
  options: { directory?: number; copyFrom?: string; kind?: "groups" | "both" } = {},
) {
  const { agent, csrf } = await signedInAgent(t.app, "admin");
  const directory = String(options.directory ?? directoryId);
  const kind = options.kind ?? "groups";
  const rows = rowsOf((await agent.get(`/imports/new?${new URLSearchParams({ directory, kind, q })}`)).text);
  assert.ok(rows.length > 0, `no group matches ${q}`);
  const res = await postForm(agent, "/imports", csrf, {
    directory,
    kind,
    q,
    page: "1",
    shown: rows.map((r) => r.info),
    pick: rows.map((r) => r.key),
    copyFrom: options.copyFrom ?? "",
  }).expect(303);
  const id = Number(/(\d+)$/.exec(res.headers.location ?? "")?.[1]);
  await runQueued(worker);
  const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
  if (!run) throw new Error("no run");
  return { run, agent, csrf };
}

async function groupNamed(db: Db, name: string) {
  const [group] = await db
    .select()
    .from(groups)
    .where(eq(groups.nameKey, nameKey(name)));
  if (!group) throw new Error(`no group ${name}`);
  return group;
}

async function membersOf(name: string): Promise<string[]> {
  const group = await groupNamed(t.db, name);
  const rows = await queryRows<{ username: string }>(
    t.db,
    sql`select u.username from group_members m join users u on u.id = m.user_id where m.group_id = ${group.id} order by u.username`,
  );
  return rows.map((r) => r.username);
}

async function subgroupsOf(name: string): Promise<string[]> {
  const group = await groupNamed(t.db, name);
  const rows = await queryRows<{ name: string }>(
    t.db,
    sql`select g.name from group_subgroups s join groups g on g.id = s.child_id where s.parent_id = ${group.id} order by g.name`,
  );
  return rows.map((r) => r.name);
}

describe("importing groups", { skip }, () => {
  test("a group of 2,500 members is imported completely, past every 1,000 limit", async () => {
    const { run, agent } = await importGroups("everyone");
    assert.equal(run.status, "succeeded");
    assert.equal(run.created, 2501, "the group and its 2,500 members");
    assert.equal(run.processed, 2501);
    const members = await membersOf("everyone");
    assert.equal(members.length, 2500);
    assert.deepEqual(
      members,
      [...fixture.everyone.usernames].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    const everyone = await groupNamed(t.db, "everyone");
    assert.equal(everyone.kind, "external");
    assert.equal(everyone.directoryId, directoryId);
    const lastPage = await agent.get(`/imports/${run.id}?outcome=created&page=51`);
    assert.match(
      text(lastPage.text),
      /Group everyone cn=everyone,ou=groups,dc=example,dc=test With 2,500 members\./,
    );
  });

  test("importing the group again changes nothing", async () => {
    const { run } = await importGroups("everyone");
    assert.deepEqual(
      {
        created: run.created,
        updated: run.updated,
        unchanged: run.unchanged,
        skipped: run.skipped,
        failed: run.failed,
      },
      { created: 0, updated: 0, unchanged: 2501, skipped: 0, failed: 0 },
    );
    assert.equal((await membersOf("everyone")).length, 2500);
  });

  test("nested groups become subgroups, are expanded, and a cycle is survived", async () => {
    const template = await t.db
      .insert(groups)
      .values({ kind: "internal", name: "Templates", nameKey: "templates" })
      .returning();
    const [viewer] = await t.db.select().from(roles).where(eq(roles.key, "viewer"));
    await t.db
      .insert(roleAssignments)
      .values({ roleId: viewer?.id ?? -1, groupId: template[0]?.id ?? -1, scope: "space:9" });
    const { run } = await importGroups("cycle-a", { copyFrom: `group:${template[0]?.id}` });
    assert.equal(run.status, "succeeded");
    assert.equal(run.created, 6, "three groups and three users");
    assert.deepEqual(await subgroupsOf("cycle-a"), ["cycle-b"]);
    assert.deepEqual(await subgroupsOf("cycle-b"), ["cycle-c"]);
    assert.deepEqual(await subgroupsOf("cycle-c"), ["cycle-a"]);
    assert.deepEqual(await membersOf("cycle-a"), ["alpha"]);
    assert.deepEqual(await membersOf("cycle-b"), ["bravo"]);
    assert.deepEqual(await membersOf("cycle-c"), ["charlie"]);
    for (const username of ["alpha", "bravo", "charlie"]) {
      const [user] = await t.db.select().from(users).where(eq(users.usernameKey, username));
      const copied = await t.db
        .select()
        .from(roleAssignments)
        .where(and(eq(roleAssignments.userId, user?.id ?? -1), eq(roleAssignments.scope, "space:9")));
      assert.equal(copied.length, 1, `roles copied from the group onto ${username}`);
    }
  });

  test("member DNs with escaped commas, plus signs, hex escapes and multi-valued RDNs are all found", async () => {
    const { run, agent } = await importGroups("specials");
    assert.equal(run.status, "succeeded");
    assert.deepEqual(await membersOf("specials"), ["agarcia", "leepark", "meta", "pkim", "sobrien", "xss"]);
    assert.deepEqual(await subgroupsOf("specials"), ["R&D, Europe"]);
    assert.deepEqual(await membersOf("R&D, Europe"), ["alpha"]);
    assert.equal(run.skipped, 2);
    const report = await agent.get(`/imports/${run.id}?outcome=skipped`);
    assert.match(
      text(report.text),
      /uid=deleted-user,ou=people,dc=example,dc=test .* not imported: The directory has no entry with this DN\./,
    );
    // The directory's users are those under ou=people: a member elsewhere matching the user filter
    // is not one of them.
    assert.match(
      text(report.text),
      /uid=contractor1,ou=contractors,dc=example,dc=test .* not imported: Outside the directory's user search base \(ou=people,dc=example,dc=test\)\./,
    );
    const [contractor] = await t.db.select().from(users).where(eq(users.usernameKey, "contractor1"));
    assert.equal(contractor, undefined, "not created");
  });

  test("members given as usernames (memberUid) are resolved, ignoring case", async () => {
    const { run, agent } = await importGroups("unicode-team", { directory: posixDirectoryId });
    assert.equal(run.status, "succeeded");
    assert.deepEqual(await membersOf("unicode-team"), ["Zoë.Upper", "đorđe", "李小龙"]);
    const report = await agent.get(`/imports/${run.id}?outcome=skipped`);
    assert.match(text(report.text), /ghost .* No user has this username\./);
  });

  test("a group import run again (no total known at the start) shows its members in the total while it runs", async () => {
    const { run: first, agent, csrf } = await importGroups("everyone");
    const res = await postForm(agent, "/imports", csrf, { rerun: String(first.id) }).expect(303);
    const id = Number(/(\d+)$/.exec(res.headers.location ?? "")?.[1]);
    const seen: string[] = [];
    const watching = testWorker(t.db, t.config.encryptionKey, {
      batchSize: 1000,
      hooks: {
        afterBatch: async () => {
          const [row] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
          seen.push(`${row?.processed} of ${row?.total}`);
        },
      },
    });
    await runQueued(watching);
    await watching.stop();
    const [again] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
    assert.equal(again?.status, "succeeded");
    assert.equal(again?.unchanged, 2501);
    // The group first, then its members about a thousand at a time, the total known throughout; the
    // group itself is report-only.
    assert.equal(seen[0], "1 of 2501");
    assert.ok(
      seen.every((line) => line.endsWith(" of 2501")),
      seen.join(", "),
    );
    const processed = seen.map((line) => Number.parseInt(line, 10));
    assert.ok(
      processed.every((n, i) => i === 0 || n >= (processed[i - 1] as number)),
      seen.join(", "),
    );
    assert.ok(
      processed.filter((n) => n > 1 && n < 2501).length >= 2,
      `progress in between: ${seen.join(", ")}`,
    );
    assert.equal(seen.at(-1), "2501 of 2501");
  });

  test("members of a nested group skipped for a conflict are in the total while the run goes on", async () => {
    const outer = groupDnOf("outer-team");
    const inner = groupDnOf("inner-team");
    const people = ["inner1", "inner2"].map((uid) => `uid=${uid},ou=people,${server.baseDn}`);
    // Another directory's group holds the name inner-team: the nested group is skipped, its members not.
    await t.db.insert(groups).values({
      kind: "external",
      name: "inner-team",
      nameKey: "inner-team",
      directoryId: posixDirectoryId,
      externalId: "another-directory-inner-team",
    });
    const admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    try {
      for (const [i, person] of people.entries()) {
        await admin.add(person, {
          objectClass: "inetOrgPerson",
          uid: `inner${i + 1}`,
          cn: `Inner ${i + 1}`,
          sn: "Inner",
        });
      }
      await admin.add(inner, { objectClass: "groupOfNames", cn: "inner-team", member: people });
      await admin.add(outer, { objectClass: "groupOfNames", cn: "outer-team", member: [inner] });
      const seen: string[] = [];
      const watching = testWorker(t.db, t.config.encryptionKey, {
        hooks: {
          afterBatch: async (claim) => {
            const [row] = await t.db.select().from(importRuns).where(eq(importRuns.id, claim.run.id));
            seen.push(`${row?.processed} of ${row?.total}`);
          },
        },
      });
      const { agent, csrf } = await signedInAgent(t.app, "admin");
      const rows = rowsOf(
        (
          await agent.get(
            `/imports/new?${new URLSearchParams({ directory: String(directoryId), kind: "groups", q: "outer-team" })}`,
          )
        ).text,
      );
      await postForm(agent, "/imports", csrf, {
        directory: String(directoryId),
        kind: "groups",
        q: "outer-team",
        page: "1",
        shown: rows.map((r) => r.info),
        pick: rows.map((r) => r.key),
        copyFrom: "",
      }).expect(303);
      try {
        await runQueued(watching);
      } finally {
        await watching.stop();
      }
      // outer-team; its member inner-team (skipped); outer-team finished; inner-team's two members.
      assert.deepEqual(seen, ["1 of 2", "2 of 2", "2 of 2", "4 of 4"]);
    } finally {
      for (const entry of [outer, inner, ...people]) await admin.del(entry).catch(() => {});
      await admin.unbind();
      await t.db.delete(groups).where(eq(groups.nameKey, "inner-team"));
    }
  });

  test("a member the run has already imported is counted once: entries processed match the outcomes", async () => {
    // đorđe is chosen and is a member of unicode-team; 李小龙 and Zoë.Upper come in as members, ghost is unknown.
    const { run, agent } = await importGroups("(|(uid=đorđe)(cn=unicode-team))", {
      directory: posixDirectoryId,
      kind: "both",
    });
    assert.equal(run.status, "succeeded");
    assert.equal(run.processed, 5, "đorđe, the group, 李小龙, Zoë.Upper and ghost");
    assert.equal(run.total, 5);
    assert.equal(run.created + run.updated + run.unchanged + run.skipped + run.failed, run.processed);
    assert.match(
      text((await agent.get(`/imports/${run.id}`)).text),
      /Finished: 5 of 5 entries processed \(100%\)/,
    );
  });

  test("a group emptied in the directory loses all its members on the next import", async () => {
    const dn = groupDnOf("emptied-team");
    const people = ["emptied1", "emptied2"].map((uid) => `uid=${uid},ou=people,${server.baseDn}`);
    const admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    try {
      for (const [i, person] of people.entries()) {
        await admin.add(person, {
          objectClass: "inetOrgPerson",
          uid: `emptied${i + 1}`,
          cn: `Emptied ${i + 1}`,
          sn: "Emptied",
        });
      }
      await admin.add(dn, {
        objectClass: "posixGroup",
        cn: "emptied-team",
        gidNumber: "5002",
        memberUid: ["emptied1", "emptied2"],
      });
      await importGroups("emptied-team", { directory: posixDirectoryId });
      assert.deepEqual(await membersOf("emptied-team"), ["emptied1", "emptied2"]);
      await admin.modify(
        dn,
        new Change({ operation: "delete", modification: new Attribute({ type: "memberUid" }) }),
      );
      const { run, agent } = await importGroups("emptied-team", { directory: posixDirectoryId });
      assert.equal(run.status, "succeeded");
      assert.equal(run.updated, 1);
      assert.deepEqual(await membersOf("emptied-team"), []);
      const report = await agent.get(`/imports/${run.id}?outcome=updated`);
      assert.match(text(report.text), /emptied-team .* 2 members removed\./);
    } finally {
      for (const entry of [dn, ...people]) await admin.del(entry).catch(() => {});
      await admin.unbind();
    }
  });

  test("a group whose members changed in the directory shows Update (members) until it is imported again", async () => {
    const dn = groupDnOf("status-team");
    const person = (uid: string) => `uid=${uid},ou=people,${server.baseDn}`;
    const admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    const statusOf = async () => {
      const { agent } = await signedInAgent(t.app, "admin");
      const page = await agent.get(
        `/imports/new?${new URLSearchParams({ directory: String(directoryId), kind: "groups", q: "status-team" })}`,
      );
      return { status: rowsOf(page.text)[0]?.status, text: text(page.text) };
    };
    try {
      await admin.add(dn, { objectClass: "groupOfNames", cn: "status-team", member: [person("alpha")] });
      await importGroups("status-team");
      assert.equal((await statusOf()).status, "Up to date");
      await admin.modify(
        dn,
        new Change({
          operation: "add",
          modification: new Attribute({ type: "member", values: [person("bravo")] }),
        }),
      );
      const changed = await statusOf();
      assert.equal(changed.status, "Update");
      assert.match(changed.text, /status-team .* Update Changes members/);
      await importGroups("status-team");
      assert.equal((await statusOf()).status, "Up to date");
      // The same members in another order, one in capitals: no change.
      await admin.modify(
        dn,
        new Change({
          operation: "replace",
          modification: new Attribute({
            type: "member",
            values: [person("bravo"), person("ALPHA").toUpperCase()],
          }),
        }),
      );
      assert.equal((await statusOf()).status, "Up to date");
    } finally {
      await admin.del(dn).catch(() => {});
      await admin.unbind();
    }
  });

  test("members removed in the directory leave the group on the next import; the users stay", async () => {
    const admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    try {
      await admin.modify(
        groupDnOf("specials"),
        new Change({
          operation: "delete",
          modification: new Attribute({ type: "member", values: [`uid=meta,ou=people,${server.baseDn}`] }),
        }),
      );
    } finally {
      await admin.unbind();
    }
    const { run, agent } = await importGroups("specials");
    assert.equal(run.updated, 1);
    assert.deepEqual(await membersOf("specials"), ["agarcia", "leepark", "pkim", "sobrien", "xss"]);
    const [meta] = await t.db.select().from(users).where(eq(users.usernameKey, "meta"));
    assert.ok(meta, "the user is not deleted");
    const report = await agent.get(`/imports/${run.id}?outcome=updated`);
    assert.match(text(report.text), /Group specials .* 1 member removed\./);
  });
});
