import assert from "node:assert/strict";
import { test } from "node:test";
import { guardVerdict, type RemovalCounts } from "../../src/services/sync/removals.ts";

const none: RemovalCounts = { disableUser: 0, groupMissing: 0, removeMember: 0, removeSubgroup: 0 };
const limits = { percent: 5, minimum: 50 };

test("removals within the limit are applied: 5% of the users, or 50, whichever is larger", () => {
  const at = (usersHeld: number, disableUser: number) =>
    guardVerdict({ removals: { ...none, disableUser }, usersHeld, usersRead: usersHeld, ...limits });
  assert.equal(at(200, 50), null, "50 of 200: the minimum allows it");
  assert.match(
    at(200, 51) ?? "",
    /would disable 51 users: more than the directory's limit of 50 \(5% of its 200 users/,
  );
  assert.equal(at(100_000, 5000), null, "5% of 100,000");
  assert.match(at(100_000, 5001) ?? "", /limit of 5,000/);
});

test("memberships and groups count as removals too", () => {
  const verdict = guardVerdict({
    removals: { disableUser: 10, groupMissing: 2, removeMember: 40, removeSubgroup: 1 },
    usersHeld: 200,
    usersRead: 190,
    ...limits,
  });
  assert.match(
    verdict ?? "",
    /^This synchronization would disable 10 users, mark 2 groups missing, remove 40 memberships and remove 1 subgroup link: /,
  );
});

test("a directory that returned no users at all holds even a few removals", () => {
  const verdict = guardVerdict({
    removals: { ...none, disableUser: 3 },
    usersHeld: 3,
    usersRead: 0,
    ...limits,
  });
  assert.match(verdict ?? "", /^The directory returned no users at all, while Roster holds 3 users of it/);
});

test("nothing to remove is never held", () => {
  assert.equal(guardVerdict({ removals: none, usersHeld: 10, usersRead: 0, ...limits }), null);
});
