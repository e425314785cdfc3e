/** LDAP messages as a server sends them, built with ldapts's BER writer for tests of the client side. */
import assert from "node:assert/strict";
import { BerWriter } from "ldapts";

export type Value = string | Buffer;

export const BIND_RESPONSE = 0x61;
export const SEARCH_RESULT_DONE = 0x65;

/** A SearchResultEntry: the DN, then each attribute with its values. */
export function entryMessage(messageId: number, dn: string, attributes: [string, Value[]][]): Buffer {
  const writer = new BerWriter();
  writer.startSequence();
  writer.writeInt(messageId);
  writer.startSequence(0x64);
  writer.writeString(dn);
  writer.startSequence();
  for (const [type, values] of attributes) {
    writer.startSequence();
    writer.writeString(type);
    writer.startSequence(0x31);
    for (const value of values) {
      if (Buffer.isBuffer(value)) writer.writeBuffer(value, 0x04);
      else writer.writeString(value);
    }
    writer.endSequence();
    writer.endSequence();
  }
  writer.endSequence();
  writer.endSequence();
  writer.endSequence();
  return writer.buffer;
}

/** A successful LDAPResult for `operation` (BIND_RESPONSE, SEARCH_RESULT_DONE). */
export function resultMessage(messageId: number, operation: number): Buffer {
  const writer = new BerWriter();
  writer.startSequence();
  writer.writeInt(messageId);
  writer.startSequence(operation);
  writer.writeEnumeration(0);
  writer.writeString("");
  writer.writeString("");
  writer.endSequence();
  writer.endSequence();
  return writer.buffer;
}

/**
 * An entry whose attribute list, attribute, value set and value each claim 3 bytes more than they
 * hold, consistently: only the end of the message itself tells that they overrun it. ldapts 8 alone
 * loops on it until the process runs out of memory.
 */
export function overrunningEntry(messageId: number): Buffer {
  const bad = entryMessage(messageId, "uid=a,dc=example,dc=test", [["uid", ["a"]]]);
  // … 30 L (list) 30 L (attribute) 04 03 "uid" 31 L (values) 04 01 "a"
  const valueAt = bad.length - 3;
  const starts = [valueAt - 11, valueAt - 9, valueAt - 2, valueAt];
  assert.deepEqual(
    starts.map((at) => bad[at]),
    [0x30, 0x30, 0x31, 0x04],
  );
  for (const at of starts) bad[at + 1] = (bad[at + 1] as number) + 3;
  return bad;
}
