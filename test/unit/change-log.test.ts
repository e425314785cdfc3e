import assert from "node:assert/strict";
import { test } from "node:test";
import type { Entry } from "ldapts";
import { readMemberChanges } from "../../src/ldap/change-log.ts";
import type { DirectorySession } from "../../src/ldap/client.ts";
import { openldapMapping } from "../ldap/support.ts";

const UUID = "113fd090-8703-1041-8843-97d410211f2d";
const log = { base: "cn=accesslog", since: "20261208030000.000000Z#000000#000#000000" };
const csn = (n: number) => `20261208031${String(n).padStart(3, "0")}.000000Z#000000#000#000000`;
const dn = (name: string) => `uid=${name},ou=people,dc=example,dc=test`;
const write = (n: number, reqMod: string[], reqType = "modify"): Entry => ({
  dn: `reqStart=${csn(n)},cn=accesslog`,
  entryCSN: csn(n),
  reqType,
  reqMod,
});

/** A session whose change log holds `entries` (in the order given) for any search. */
function sessionWith(entries: Entry[]): DirectorySession {
  async function* searchPages() {
    yield entries;
  }
  return { searchPages } as unknown as DirectorySession;
}

const changes = (entries: Entry[], latest: number | null) =>
  readMemberChanges(
    sessionWith(entries),
    log,
    { entryUuid: UUID, latestCsn: latest === null ? null : csn(latest) },
    openldapMapping(),
  );

test("a group's logged writes, in CSN order whatever the answer's order: each value's last operation wins", async () => {
  const result = await changes(
    [
      write(3, [`member:- ${dn("b")}`, `member:+ ${dn("c")}`, "description:= x", "entryCSN:= y"]),
      write(1, [`member:+ ${dn("b")}`, `member:+ ${dn("a")}`, `memberUid:+ zoë`]),
      write(2, [`member:- ${dn("a")}`, `member:+ ${dn("A").toUpperCase()}`, `memberUid:- bob`]),
    ],
    3,
  );
  assert.deepEqual(result, {
    ok: true,
    // In the order each value first appeared.
    added: { dns: [dn("A").toUpperCase(), dn("c")], usernames: ["zoë"] },
    removed: { dns: [dn("b")], usernames: ["bob"] },
    writes: 3,
  });
});

test("what the log can't prove makes the list read whole", async () => {
  const cases: [string, Entry[], number | null, RegExp][] = [
    ["the latest change missing", [write(1, [`member:+ ${dn("a")}`])], 2, /latest change/],
    ["no entryCSN on the group", [write(1, [`member:+ ${dn("a")}`])], null, /entryCSN/],
    ["members replaced", [write(1, [`member:= ${dn("a")}`])], 1, /replaced/],
    ["every member deleted", [write(1, ["member:-"])], 1, /replaced or cleared/],
    ["the group added since", [write(1, [`member:+ ${dn("a")}`], "add")], 1, /added/],
    ["the group deleted since", [write(1, [], "delete")], 1, /deleted/],
    ["an unreadable modification", [write(1, ["member"])], 1, /could not be read/],
  ];
  for (const [name, entries, latest, why] of cases) {
    const result = await changes(entries, latest);
    assert.equal(result.ok, false, name);
    if (!result.ok) assert.match(result.why, why, name);
  }
});

test("a rename alone changes no member", async () => {
  const result = await changes([write(1, [], "modrdn"), write(2, ["description:= y"])], 2);
  assert.deepEqual(result, {
    ok: true,
    added: { dns: [], usernames: [] },
    removed: { dns: [], usernames: [] },
    writes: 2,
  });
});
