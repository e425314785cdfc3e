/** The pure parts of importing: matching and diffing, the selection, the streaming helpers, filters. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DirectoryError } from "../../src/ldap/errors.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import type { LdapUser } from "../../src/ldap/types.ts";
import { failureMessage } from "../../src/services/import/importer.ts";
import { planSearch } from "../../src/services/import/search.ts";
import {
  applyPageChoices,
  emptySelection,
  MAX_CHOSEN_ENTRIES,
  selectAllMatches,
  selectionForRun,
  selectPage,
} from "../../src/services/import/selection.ts";
import { forEachConcurrently, mapBatches, readAhead } from "../../src/services/import/stream.ts";
import type { SelectedEntry } from "../../src/services/import/types.ts";
import {
  classifyGroup,
  classifyUser,
  desiredGroup,
  desiredUser,
  type StoredGroup,
  type StoredUser,
} from "../../src/services/sync/decide.ts";
import { importFilter } from "../../src/services/sync/directory-reads.ts";

const DIRECTORY = 1;

const entry = (overrides: Partial<LdapUser> = {}): LdapUser => ({
  dn: "uid=alice,ou=people,dc=example,dc=test",
  externalId: "id-alice",
  username: "alice",
  fullName: "Alice Liddell",
  email: "alice@example.test",
  department: null,
  phone: null,
  disabled: false,
  ...overrides,
});

const stored = (overrides: Partial<StoredUser> = {}): StoredUser => ({
  id: 10,
  kind: "external",
  username: "alice",
  usernameKey: "alice",
  fullName: "Alice Liddell",
  email: "alice@example.test",
  department: "",
  phone: "",
  enabled: true,
  disabledByDirectory: false,
  dn: "uid=alice,ou=people,dc=example,dc=test",
  directoryId: DIRECTORY,
  directoryName: "Example",
  externalId: "id-alice",
  missingInDirectory: false,
  ...overrides,
});

const context = { directoryId: DIRECTORY };

describe("matching a directory user with Roster's users", () => {
  test("an entry nobody has is created", () => {
    assert.deepEqual(classifyUser(desiredUser(entry()), null, null, context), { action: "create" });
  });

  test("the same stable id and the same fields: unchanged, even with the DN spelled differently", () => {
    const same = stored({ dn: "UID=alice,OU=People,DC=example,DC=test" });
    assert.equal(classifyUser(desiredUser(entry()), same, same, context).action, "unchanged");
  });

  test("changed fields are listed in words", () => {
    const before = stored({
      fullName: "Alice",
      email: "old@example.test",
      dn: "uid=alice,ou=old,dc=example,dc=test",
    });
    const decision = classifyUser(desiredUser(entry()), before, before, context);
    assert.deepEqual(decision, { action: "update", target: before, changes: ["full name", "email", "DN"] });
  });

  test("an entry renamed to a username another user has is a conflict", () => {
    const mine = stored({ username: "old-alice", usernameKey: "old-alice" });
    const someoneElse = stored({ id: 11, externalId: "id-other" });
    const decision = classifyUser(desiredUser(entry()), mine, someoneElse, context);
    assert.equal(decision.action, "conflict");
    assert.match(decision.action === "conflict" ? decision.reason : "", /Renamed to “alice”/);
  });

  test("an internal user with the username is synchronized but keeps its username", () => {
    const internal = stored({
      kind: "internal",
      username: "ALICE",
      directoryId: null,
      externalId: null,
      dn: null,
      fullName: "A",
    });
    const decision = classifyUser(desiredUser(entry({ username: "Alice" })), null, internal, context);
    assert.deepEqual(decision, { action: "update", target: internal, changes: ["full name"] });
  });

  test("a user of another directory, or of a deleted one, is never taken over", () => {
    const other = stored({ directoryId: 2, directoryName: "Other", externalId: "x" });
    const orphan = stored({ directoryId: null, directoryName: null, externalId: "x" });
    const reasonOf = (s: StoredUser) => {
      const d = classifyUser(desiredUser(entry()), null, s, context);
      return d.action === "conflict" ? d.reason : d.action;
    };
    assert.equal(reasonOf(other), "The username belongs to a user of the directory “Other”.");
    assert.equal(reasonOf(orphan), "The username belongs to an external user whose directory was deleted.");
  });

  test("the same username in this directory with a new stable id follows the re-created entry", () => {
    const old = stored({ externalId: "id-before" });
    const decision = classifyUser(desiredUser(entry()), null, old, context);
    assert.deepEqual(decision, { action: "update", target: old, changes: ["stable id"] });
  });

  test("…unless this run already imported the entry that holds the username", () => {
    const decision = classifyUser(desiredUser(entry()), null, stored({ externalId: "id-before" }), {
      ...context,
      importedInThisRun: (id) => id === "id-before",
    });
    assert.equal(decision.action, "conflict");
  });

  test("…or the directory still has the entry that holds the username (renamed there)", () => {
    const old = stored({ externalId: "id-before", dn: "uid=alice,ou=people,dc=example,dc=test" });
    const decision = classifyUser(desiredUser(entry()), null, old, {
      ...context,
      stillInDirectory: (id) => id === "id-before",
    });
    assert.deepEqual(decision, {
      action: "conflict",
      reason:
        "The username belongs to the user of another entry of this directory (uid=alice,ou=people,dc=example,dc=test), which is still there, perhaps renamed: import that entry first.",
    });
  });

  test("NFC and case: a decomposed, upper-case username is the same key", () => {
    assert.equal(desiredUser(entry({ username: "Zoe\u0308".normalize("NFC") })).usernameKey, "zoë");
    assert.equal(desiredUser(entry({ username: "ZOË" })).usernameKey, "zoë");
  });

  test("an account disabled in the directory disables sign-in", () => {
    const disabled = classifyUser(desiredUser(entry({ disabled: true })), stored(), stored(), context);
    assert.deepEqual(disabled.action === "update" ? disabled.changes : [], [
      "sign-in disabled (disabled in the directory)",
    ]);
  });

  test("enabled in the directory again: enabled only when the directory had disabled it", () => {
    const byDirectory = stored({ enabled: false, disabledByDirectory: true });
    const reenabled = classifyUser(desiredUser(entry()), byDirectory, byDirectory, context);
    assert.deepEqual(reenabled.action === "update" ? reenabled.changes : [], [
      "sign-in enabled (enabled in the directory)",
    ]);
    const byAdministrator = stored({ enabled: false, disabledByDirectory: false });
    assert.equal(
      classifyUser(desiredUser(entry()), byAdministrator, byAdministrator, context).action,
      "unchanged",
    );
    const stillDisabled = classifyUser(
      desiredUser(entry({ disabled: true })),
      byDirectory,
      byDirectory,
      context,
    );
    assert.equal(stillDisabled.action, "unchanged");
  });
});

describe("matching a directory group with Roster's groups", () => {
  const group = desiredGroup({
    dn: "cn=staff,ou=groups,dc=example,dc=test",
    externalId: "g-1",
    name: "Staff",
    description: "Everyone",
    memberCount: 3,
    memberCountExact: true,
  });
  const storedGroup = (overrides: Partial<StoredGroup>): StoredGroup => ({
    id: 5,
    kind: "external",
    name: "Staff",
    nameKey: "staff",
    description: "Everyone",
    dn: "cn=staff,ou=groups,dc=example,dc=test",
    directoryId: DIRECTORY,
    directoryName: "Example",
    externalId: "g-1",
    missingInDirectory: false,
    ...overrides,
  });

  test("an internal group with the name is a conflict, never filled from the directory", () => {
    const decision = classifyGroup(
      group,
      null,
      storedGroup({ kind: "internal", directoryId: null, externalId: null }),
      context,
    );
    assert.deepEqual(decision, {
      action: "conflict",
      reason: "The name belongs to an internal group of Roster.",
    });
  });

  test("a changed description is an update", () => {
    const before = storedGroup({ description: "Some" });
    assert.deepEqual(classifyGroup(group, before, before, context), {
      action: "update",
      target: before,
      changes: ["description"],
    });
  });
});

describe("the selection kept between pages", () => {
  const e = (n: number): SelectedEntry => ({
    kind: "user",
    externalId: `id-${n}`,
    dn: `uid=u${n}`,
    name: `u${n}`,
  });

  test("ticked rows join, unticked rows shown leave, rows of other pages stay", () => {
    let state = emptySelection(1);
    state = applyPageChoices(state, [e(1), e(2), e(3)], new Set(["user:id-1", "user:id-3"])).state;
    state = applyPageChoices(state, [e(4), e(5)], new Set(["user:id-5"])).state;
    state = applyPageChoices(state, [e(1), e(2), e(3)], new Set(["user:id-3"])).state;
    assert.deepEqual(
      state.entries.map((x) => x.name),
      ["u3", "u5"],
    );
  });

  test("select all on a page adds every row once; past the limit the choice is refused", () => {
    let state = selectPage(emptySelection(1), [e(1), e(2)]).state;
    state = selectPage(state, [e(2), e(3)]).state;
    assert.equal(state.entries.length, 3);
    const many = Array.from({ length: MAX_CHOSEN_ENTRIES + 1 }, (_, i) => e(i));
    const refused = selectPage(emptySelection(1), many);
    assert.equal(refused.ok, false);
    assert.equal(refused.state.entries.length, 0);
  });

  test("all matches becomes a query run; chosen entries become an entries run", () => {
    const query = selectAllMatches(emptySelection(1), { text: "smith*", kind: "users", total: 2412 });
    assert.deepEqual(selectionForRun(query), {
      selection: { mode: "query", text: "smith*", kind: "users" },
      query: "smith*",
      total: 2412,
    });
    const chosen = selectPage(emptySelection(1), [e(1), e(2), e(3), e(4)]).state;
    assert.deepEqual(selectionForRun(chosen)?.query, "u1, u2, u3 and 1 more");
    assert.equal(selectionForRun(emptySelection(1)), null);
  });
});

describe("streaming helpers", () => {
  async function* source(values: number[], failAt?: number) {
    for (const value of values) {
      if (value === failAt) throw new Error(`failed at ${value}`);
      yield value;
    }
  }

  test("readAhead keeps the order and passes a failure on", async () => {
    const seen: number[] = [];
    for await (const value of readAhead(source([1, 2, 3, 4]), 2)) seen.push(value);
    assert.deepEqual(seen, [1, 2, 3, 4]);
    const partial: number[] = [];
    await assert.rejects(async () => {
      for await (const value of readAhead(source([1, 2, 3], 3), 1)) partial.push(value);
    }, /failed at 3/);
    assert.deepEqual(partial, [1, 2]);
  });

  test("readAhead stops its source when the reader stops early", async () => {
    let finished = false;
    async function* tracked() {
      try {
        for (let i = 0; ; i += 1) yield i;
      } finally {
        finished = true;
      }
    }
    for await (const value of readAhead(tracked(), 1)) if (value === 2) break;
    assert.equal(finished, true);
  });

  test("mapBatches maps every item and regroups pages into batches of the size asked", async () => {
    async function* pages() {
      yield [1, 2, 3];
      yield [-4];
      yield [5, 6, 7, 8, 9];
    }
    const map = (n: number) =>
      n > 0 ? { ok: true as const, value: n * 10 } : { ok: false as const, dn: `n=${n}`, reason: "negative" };
    const batches: unknown[] = [];
    for await (const batch of mapBatches(pages(), 4, map)) batches.push(batch);
    assert.deepEqual(batches, [
      { values: [10, 20, 30], invalid: [{ dn: "n=-4", reason: "negative" }], size: 4 },
      { values: [50, 60, 70, 80], invalid: [], size: 4 },
      { values: [90], invalid: [], size: 1 },
    ]);
  });

  test("forEachConcurrently runs at most `limit` works at once and awaits them all", async () => {
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await forEachConcurrently(source([1, 2, 3, 4, 5]), 2, async (n) => {
      running += 1;
      most = Math.max(most, running);
      await sleep(5 * (6 - n));
      running -= 1;
      done.push(n);
    });
    assert.equal(most, 2);
    assert.deepEqual([...done].sort(), [1, 2, 3, 4, 5]);
  });

  test("forEachConcurrently throws a work's failure that came while it waited for the next item", async () => {
    // The source is slow: work 1 fails while the next item is still on its way, as a batch that
    // fails while the directory sends its next page. The failure must not be lost.
    const started: number[] = [];
    let finishedSecond = false;
    async function* slow() {
      yield 1;
      await sleep(40);
      yield 2;
      await sleep(40);
      yield 3;
    }
    await assert.rejects(
      forEachConcurrently(slow(), 2, async (n) => {
        started.push(n);
        if (n === 1) {
          await sleep(5);
          throw new Error("batch 1 failed");
        }
        await sleep(20);
        finishedSecond = true;
      }),
      /batch 1 failed/,
    );
    assert.deepEqual(started, [1], "nothing more is started after a failure");
    assert.equal(finishedSecond, false);
  });

  test("forEachConcurrently waits for the works still running before it throws", async () => {
    let secondDone = false;
    await assert.rejects(
      forEachConcurrently(source([1, 2]), 2, async (n) => {
        if (n === 1) {
          await sleep(5); // the second has started by then
          throw new Error("first failed");
        }
        await sleep(30);
        secondDone = true;
      }),
      /first failed/,
    );
    assert.equal(secondDone, true);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe("the filter built from the search box", () => {
  const mapping = presetMapping("openldap");

  test("typed text is escaped (RFC 4515) and matched on the mapped attributes", () => {
    const built = importFilter("user", "x)(uid=*\u0000", mapping);
    assert.ok(built.ok);
    assert.equal(
      built.ok ? built.text : "",
      "(&(objectClass=inetOrgPerson)(|(uid=x\\29\\28uid=*\\00)(cn=x\\29\\28uid=*\\00)(mail=x\\29\\28uid=*\\00)))",
    );
  });

  test("a raw filter is ANDed with the object filter of each kind", () => {
    const plan = planSearch(mapping, "(departmentNumber=Sales)", "both");
    assert.ok(plan.ok);
    if (!plan.ok) return;
    assert.equal(plan.user?.toString(), "(&(objectClass=inetOrgPerson)(departmentNumber=Sales))");
    assert.equal(
      plan.group?.toString(),
      "(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))(departmentNumber=Sales))",
    );
  });

  test("a malformed raw filter is reported with its position", () => {
    assert.deepEqual(planSearch(mapping, "(|(uid=a)(uid=b)", "users"), {
      ok: false,
      message:
        "The LDAP filter is not valid: Unbalanced parenthesis: this '(' is never closed at position 1.",
    });
  });
});

describe("why a run stopped", () => {
  test("a directory that went away stopped answering; one that answered with an error did not", () => {
    const lost = new DirectoryError({
      kind: "unreachable",
      message: "The connection to the server was lost.",
      detail: "ECONNRESET",
    });
    assert.equal(
      failureMessage(lost),
      "The directory stopped answering: The connection to the server was lost.",
    );
    const gone = new DirectoryError({
      kind: "no_such_object",
      message: "The group cn=x,dc=example,dc=test no longer exists in the directory.",
      detail: "no such object",
    });
    assert.equal(
      failureMessage(gone),
      "Reading the directory failed: The group cn=x,dc=example,dc=test no longer exists in the directory.",
    );
  });
});
