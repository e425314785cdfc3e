import assert from "node:assert/strict";
import { test } from "node:test";
import { berElementSize as berMessageSize } from "../../src/ldap/entry-tap.ts";

test("BER message size from its header: short form, long form, incomplete header", () => {
  assert.equal(berMessageSize(Buffer.from([0x30, 0x05, 1, 2])), 7);
  assert.equal(berMessageSize(Buffer.from([0x30, 0x83, 0x01, 0x00, 0x00])), 5 + 65536);
  assert.equal(berMessageSize(Buffer.from([0x30, 0x84, 0x01])), null);
  assert.equal(berMessageSize(Buffer.from([0x30])), null);
});
