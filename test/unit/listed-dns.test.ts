import assert from "node:assert/strict";
import { test } from "node:test";
import { ListedDns } from "../../src/ldap/members.ts";

test("ListedDns answers as a Map keyed by lower-cased DN would: each value met once, the rest left in order", () => {
  let seed = 11;
  const next = (n: number) => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed % n;
  };
  const spell = (i: number) =>
    next(3) === 0 ? `UID=User${i},OU=People,DC=Example` : `uid=user${i},ou=people,dc=example`;
  const values = Array.from({ length: 20_000 }, () => spell(next(15_000)));
  const listed = new ListedDns(values);
  // The Map the table replaces: first spelling kept for a key, as the table keeps it.
  const map = new Map<string, string>();
  for (const value of values) if (!map.has(value.toLowerCase())) map.set(value.toLowerCase(), value);
  const taken: string[] = [];
  for (let i = 0; i < 20_000; i += 2) {
    const key = `uid=user${i},ou=people,dc=example`;
    const value = listed.take(key);
    assert.equal(value, map.get(key) ?? null, key);
    if (value !== null) {
      taken.push(key);
      map.delete(key);
      assert.equal(listed.take(key), null, "met once");
    }
  }
  assert.ok(taken.length > 1000);
  assert.deepEqual(listed.left(), [...map.values()]);
  assert.deepEqual(new ListedDns([]).left(), []);
  assert.equal(new ListedDns([]).take("uid=a"), null);
});
