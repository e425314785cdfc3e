import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { WorkPool } from "../../src/services/import/stream.ts";

describe("WorkPool", () => {
  test("runs at most `limit` works at once, and drain waits for all of them", async () => {
    const pool = new WorkPool(2);
    let running = 0;
    let most = 0;
    const done: number[] = [];
    for (const n of [1, 2, 3, 4, 5]) {
      await pool.add(async () => {
        running += 1;
        most = Math.max(most, running);
        await delay(5 * (6 - n));
        running -= 1;
        done.push(n);
      });
    }
    await pool.drain();
    assert.equal(most, 2);
    assert.deepEqual([...done].sort(), [1, 2, 3, 4, 5]);
  });

  test("a failure is thrown once the works still running have ended, and stops new ones", async () => {
    const pool = new WorkPool(2);
    let slowEnded = false;
    await pool.add(async () => {
      await delay(30);
      slowEnded = true;
    });
    await pool.add(async () => {
      throw new Error("batch failed");
    });
    await delay(1);
    let started = false;
    await assert.rejects(
      pool.add(async () => {
        started = true;
      }),
      /batch failed/,
    );
    assert.equal(slowEnded, true, "the slow work ended before the failure was thrown");
    assert.equal(started, false);
    await assert.rejects(pool.drain(), /batch failed/);
  });
});
