import assert from "node:assert/strict";
import { test } from "node:test";
import { IdList } from "../../src/services/import/id-list.ts";

test("an IdList holds what a Set would: distinct ids, ascending, whatever the order and repeats", () => {
  const list = new IdList();
  const set = new Set<number>();
  let seed = 7;
  const next = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed % 5000;
  };
  for (let round = 0; round < 3; round += 1) {
    for (let i = 0; i < 3000; i += 1) {
      const id = next() + 1;
      list.add(id);
      set.add(id);
    }
    assert.equal(list.size, set.size);
    assert.deepEqual(
      [...list],
      [...set].sort((a, b) => a - b),
    );
    for (let id = 0; id <= 5001; id += 1) assert.equal(list.has(id), set.has(id), `has(${id})`);
  }
  assert.equal(new IdList().size, 0);
  assert.equal(new IdList().has(1), false);
});
