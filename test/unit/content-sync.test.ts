/**
 * The RFC 4533 messages Roster reads itself, built byte for byte as a server sends them: what they
 * say, and what a malformed one does (an error, never a crash or a wrong answer).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { BerWriter } from "ldapts";
import {
  applySyncInfo,
  controlValue,
  decodeSyncDone,
  decodeSyncState,
  emptyAnswer,
  SYNC_INFO_OID,
  SYNC_STATE_OID,
  SyncRequestControl,
  uuidText,
} from "../../src/ldap/content-sync.ts";

const UUID = Buffer.from("8e883e2c86b6104189fa6336a146a967", "hex");
const OTHER = Buffer.from("8e883f7686b6104189fb6336a146a967", "hex");

function syncState(state: number, uuid: Buffer, cookie?: string): Buffer {
  const w = new BerWriter();
  w.startSequence();
  w.writeEnumeration(state);
  w.writeBuffer(uuid, 0x04);
  if (cookie) w.writeString(cookie);
  w.endSequence();
  return w.buffer;
}

/** A message's controls ([0] SEQUENCE OF Control) holding one control. */
function controls(oid: string, value: Buffer, critical = false): Buffer {
  const w = new BerWriter();
  w.startSequence(0xa0);
  w.startSequence();
  w.writeString(oid);
  if (critical) w.writeBoolean(true);
  w.writeBuffer(value, 0x04);
  w.endSequence();
  w.endSequence();
  return w.buffer;
}

/** An IntermediateResponse body: responseName [0], responseValue [1] holding a syncIdSet. */
function syncIdSet(refreshDeletes: boolean, uuids: Buffer[], cookie?: string): Buffer {
  const value = new BerWriter();
  value.startSequence(0xa3);
  if (cookie) value.writeString(cookie);
  if (refreshDeletes) value.writeBoolean(true);
  value.startSequence(0x31);
  for (const uuid of uuids) value.writeBuffer(uuid, 0x04);
  value.endSequence();
  value.endSequence();
  const w = new BerWriter();
  w.writeString(SYNC_INFO_OID, 0x80);
  w.writeBuffer(value.buffer, 0x81);
  return w.buffer;
}

test("the request asks for refreshOnly, with the cookie when there is one, as a critical control", () => {
  const w = new BerWriter();
  new SyncRequestControl(Buffer.from("rid=000,csn=1")).write(w);
  assert.equal(
    w.buffer.toString("hex"),
    // SEQUENCE { OID, TRUE, OCTET STRING { SEQUENCE { ENUMERATED 1, OCTET STRING cookie } } }
    "30330418312e332e362e312e342e312e343230332e312e392e312e310101ff041430120a0101040d7269643d3030302c63736e3d31",
  );
  const bare = new BerWriter();
  new SyncRequestControl(null).write(bare);
  assert.ok(bare.buffer.toString("hex").endsWith("040530030a0101"), "no cookie: mode alone");
});

test("an entry's state, its entryUUID in text and the cookie, found among the controls", () => {
  const value = syncState(1, UUID, "rid=000,csn=2");
  const message = controls(SYNC_STATE_OID, value, true);
  const found = controlValue(message, 0, message.length, SYNC_STATE_OID);
  assert.ok(found);
  assert.deepEqual(decodeSyncState(found), {
    state: "add",
    uuid: "8e883e2c-86b6-1041-89fa-6336a146a967",
    cookie: Buffer.from("rid=000,csn=2"),
  });
  assert.equal(controlValue(message, 0, message.length, "1.2.3"), null);
  assert.equal(controlValue(message, message.length, message.length, SYNC_STATE_OID), null, "no controls");
  assert.equal(decodeSyncState(syncState(3, OTHER)).state, "delete");
});

test("deletions and present entries come as sets of entryUUIDs; the end says which phase it was", () => {
  const deleted = emptyAnswer();
  const body = syncIdSet(true, [UUID, OTHER], "rid=000,csn=3");
  assert.equal(applySyncInfo(body, 0, body.length, deleted), true);
  assert.deepEqual(deleted.deleted, [
    "8e883e2c-86b6-1041-89fa-6336a146a967",
    "8e883f76-86b6-1041-89fb-6336a146a967",
  ]);
  assert.deepEqual(deleted.cookie, Buffer.from("rid=000,csn=3"));
  const present = emptyAnswer();
  const presentBody = syncIdSet(false, [UUID]);
  applySyncInfo(presentBody, 0, presentBody.length, present);
  assert.deepEqual(
    { present: present.present, deleted: present.deleted },
    { present: [uuidText(UUID)], deleted: [] },
  );

  const done = new BerWriter();
  done.startSequence();
  done.writeString("rid=000,csn=4");
  done.writeBoolean(true);
  done.endSequence();
  assert.deepEqual(decodeSyncDone(done.buffer), {
    cookie: Buffer.from("rid=000,csn=4"),
    refreshDeletes: true,
  });
  const bare = new BerWriter();
  bare.startSequence();
  bare.endSequence();
  assert.deepEqual(decodeSyncDone(bare.buffer), { cookie: null, refreshDeletes: false }, "defaults");
});

test("another intermediate response is not taken for one; malformed values throw", () => {
  const w = new BerWriter();
  w.writeString("1.3.6.1.4.1.4203.1.9.1.99", 0x80);
  assert.equal(applySyncInfo(w.buffer, 0, w.buffer.length, emptyAnswer()), false);
  assert.throws(() => decodeSyncState(syncState(1, Buffer.from("short"))), RangeError);
  assert.throws(() => decodeSyncState(syncState(9, UUID)), RangeError);
  const overrun = syncIdSet(true, [UUID]);
  overrun[overrun.length - 17] = 0x7f; // the UUID claims more bytes than the message has
  assert.throws(() => applySyncInfo(overrun, 0, overrun.length, emptyAnswer()), RangeError);
});
