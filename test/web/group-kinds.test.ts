/**
 * An OpenLDAP tree with the three kinds of group it holds — groupOfNames (member DNs),
 * groupOfUniqueNames (uniqueMember DNs, one with its optional UID suffix) and posixGroup (memberUid
 * usernames) — read with the OpenLDAP preset as it comes: a real slapd, the search page as a person
 * sees it, the database as the judge of imports and synchronizations.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { Attribute, Change, Client } from "ldapts";
import { importRuns } from "../../src/db/schema.ts";
import {
  generateUsers,
  groupDn,
  ldifEntry,
  posixGroupEntry,
  userDn,
  userFixture,
} from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { createRun, type ImportRun } from "../../src/services/import/run-queue.ts";
import { requestSynchronization } from "../../src/services/sync/schedule.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { text } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  memberUsernames,
  rowsOf,
  runCounts,
  runQueued,
  testWorker,
  withStableIds,
} from "./import-support.ts";

const uid = (index: number) => userFixture(index).uid;

let t: TestApp;
let server: SlapdServer;
let admin: Client;
let directoryId: number;

before(async () => {
  if (skipWithoutSlapd) return;
  server = await startSlapd({
    ldif: withStableIds(
      generateUsers(6) +
        ldifEntry(groupDn("names"), {
          objectClass: "groupOfNames",
          cn: "names",
          member: [userDn(0), userDn(1)],
        }) +
        ldifEntry(groupDn("uniques"), {
          objectClass: "groupOfUniqueNames",
          cn: "uniques",
          // The optional UID after the DN (RFC 4517 NameAndOptionalUID).
          uniqueMember: [`${userDn(0)}#'0101'B`, userDn(2)],
        }) +
        posixGroupEntry({ cn: "posix", gidNumber: 5000, memberUids: [uid(0), uid(3)] }),
    ),
  });
  admin = new Client({ url: server.url });
  await admin.bind(server.rootDn, server.rootPassword);
  t = await createTestApp();
  await createUser(t.db, { username: "admin", role: "server_admin" });
  // The OpenLDAP preset as it comes: no mapping changed.
  directoryId = (await addDirectory(t.db, t.config.encryptionKey, server)).id;
});
after(async () => {
  await admin?.unbind().catch(() => {});
  await t?.close();
  await server?.stop();
});

async function runOf(id: number): Promise<ImportRun> {
  const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
  if (!run) throw new Error("no run");
  return run;
}

const membersOf = (name: string) => memberUsernames(t.db, name);

const worker = () => testWorker(t.db, t.config.encryptionKey, { batchSize: 50, watermarkMarginMs: 0 });

describe("the three kinds of OpenLDAP group", { skip: skipWithoutSlapd }, () => {
  test("the search page lists all three with their member counts", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const page = await agent.get(
      `/imports/new?${new URLSearchParams({ directory: String(directoryId), kind: "groups", q: "*" })}`,
    );
    const rows = rowsOf(page.text).map((row) => [row.name, row.status]);
    assert.deepEqual(rows.sort(), [
      ["names", "New"],
      ["posix", "New"],
      ["uniques", "New"],
    ]);
    const shown = text(page.text);
    for (const name of ["names", "uniques", "posix"]) {
      // Name, kind, member count, DN (wrappable after each comma), status.
      assert.match(
        shown,
        new RegExp(`${name} Group 2 members cn=${name}, ?ou=groups, ?dc=example, ?dc=test New`),
      );
    }
  });

  test("imported, each group has the members it lists, however it lists them", async () => {
    const run = await createRun(t.db, {
      directory: { id: directoryId, name: "LDAP" },
      actor: { id: null, name: "admin" },
      query: "",
      selection: { mode: "query", text: "", kind: "groups" },
      copyRolesFrom: null,
      total: null,
    });
    await runQueued(worker());
    const ended = await runOf(run.id);
    assert.equal(ended.status, "succeeded", ended.error ?? "");
    assert.deepEqual(runCounts(ended), { created: 7, updated: 0, unchanged: 0, skipped: 0, failed: 0 });
    assert.deepEqual(await membersOf("names"), [uid(0), uid(1)].sort());
    assert.deepEqual(
      await membersOf("uniques"),
      [uid(0), uid(2)].sort(),
      "the UID suffix is not part of the DN",
    );
    assert.deepEqual(await membersOf("posix"), [uid(0), uid(3)].sort());
  });

  test("a synchronization finds nothing changed, then each change of each kind", async () => {
    const sync = async (full: boolean) => {
      const { run } = await requestSynchronization(
        t.db,
        { id: directoryId, name: "LDAP" },
        { id: null, name: "admin" },
        { full },
      );
      await runQueued(worker());
      const ended = await runOf(run.id);
      assert.equal(ended.status, "succeeded", ended.error ?? ended.heldReason ?? "");
      return ended;
    };
    const quiet = await sync(true);
    assert.deepEqual(
      { created: quiet.created, updated: quiet.updated },
      { created: 0, updated: 0 },
      "no member taken for one who left: each kind compared as it lists members",
    );

    await new Promise((resolve) => setTimeout(resolve, 1100)); // a later second on the directory's clock
    const modify = (dn: string, operation: "add" | "delete", type: string, values: string[]) =>
      admin.modify(dn, new Change({ operation, modification: new Attribute({ type, values }) }));
    await modify(groupDn("uniques"), "delete", "uniqueMember", [userDn(2)]);
    await modify(groupDn("uniques"), "add", "uniqueMember", [`${userDn(4)}#'0110'B`]);
    await modify(groupDn("posix"), "delete", "memberUid", [uid(3)]);
    await modify(groupDn("posix"), "add", "memberUid", [uid(5)]);
    const changed = await sync(false);
    assert.equal(changed.syncMethod, "incremental");
    assert.deepEqual(await membersOf("uniques"), [uid(0), uid(4)].sort());
    assert.deepEqual(await membersOf("posix"), [uid(0), uid(5)].sort());
    assert.deepEqual(await membersOf("names"), [uid(0), uid(1)].sort());
    assert.equal(changed.created, 2, `${uid(4)} and ${uid(5)} imported as new members`);
  });
});
