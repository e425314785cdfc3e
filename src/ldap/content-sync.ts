/**
 * LDAP Content Synchronization (RFC 4533), refreshOnly: OpenLDAP's syncprov overlay answers a
 * search carrying a cookie from the last one with only what changed since — changed entries in
 * full, deleted ones as their entryUUIDs — and a new cookie. ldapts knows none of its controls nor
 * the intermediate Sync Info message, so they are written and read here; the message tap
 * (entry-tap.ts) hands the responses over.
 */
import { Ber, BerWriter, Control } from "ldapts";
import { BerReader } from "./ber-reader.ts";

export const SYNC_REQUEST_OID = "1.3.6.1.4.1.4203.1.9.1.1";
export const SYNC_STATE_OID = "1.3.6.1.4.1.4203.1.9.1.2";
export const SYNC_DONE_OID = "1.3.6.1.4.1.4203.1.9.1.3";
export const SYNC_INFO_OID = "1.3.6.1.4.1.4203.1.9.1.4";
/** The result code a server answers when the cookie is too old to refresh from (RFC 4533 §2.8). */
export const SYNC_REFRESH_REQUIRED = 4096;

const SEQUENCE = 0x30;
const SET = 0x31;
const BOOLEAN = 0x01;
const ENUMERATED = 0x0a;
const OCTET_STRING = 0x04;
const CONTROLS = 0xa0;
const RESPONSE_NAME = 0x80;
const RESPONSE_VALUE = 0x81;
const NEW_COOKIE = 0x80;
const REFRESH_DELETE = 0xa1;
const REFRESH_PRESENT = 0xa2;
const SYNC_ID_SET = 0xa3;

/** syncRequestValue ::= SEQUENCE { mode ENUMERATED { refreshOnly (1) }, cookie OCTET STRING OPTIONAL, reloadHint BOOLEAN DEFAULT FALSE } */
export class SyncRequestControl extends Control {
  constructor(readonly cookie: Buffer | null) {
    super(SYNC_REQUEST_OID, { critical: true });
  }

  override writeControl(writer: BerWriter): void {
    const value = new BerWriter();
    value.startSequence();
    value.writeEnumeration(1);
    if (this.cookie && this.cookie.length > 0) value.writeBuffer(this.cookie, Ber.OctetString);
    value.endSequence();
    writer.writeBuffer(value.buffer, Ber.OctetString);
  }
}

export type SyncEntryState = "present" | "add" | "modify" | "delete";
const STATES: SyncEntryState[] = ["present", "add", "modify", "delete"];

/** What one refresh answered, besides the changed entries themselves. */
export interface ContentSyncAnswer {
  /** entryUUIDs (text form) of entries deleted, or gone out of the search's scope, since the cookie. */
  deleted: string[];
  /** entryUUIDs of unchanged entries, when the server answered with the present phase. */
  present: string[];
  /** The cookie to refresh from next time (null: the server sent none). */
  cookie: Buffer | null;
  /**
   * True when the answer lists what was deleted; false when it lists what is present instead
   * (the server could not tell deletions since the cookie): every entry neither present nor
   * changed is gone.
   */
  refreshDeletes: boolean;
  /** Whether the search ended with a Sync Done control: without it the answer is not one. */
  done: boolean;
}

export function emptyAnswer(): ContentSyncAnswer {
  return { deleted: [], present: [], cookie: null, refreshDeletes: false, done: false };
}

/** The 16 bytes of an entryUUID as OpenLDAP writes its text (RFC 4122, lower case). */
export function uuidText(bytes: Buffer): string {
  if (bytes.length !== 16) throw new RangeError(`an entryUUID has 16 bytes, not ${bytes.length}`);
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The value of the control `oid` among a message's controls starting at `at` (null: not there). */
export function controlValue(message: Buffer, at: number, end: number, oid: string): Buffer | null {
  const reader = new BerReader(message, at, end);
  if (reader.tag() !== CONTROLS) return null;
  const controlsEnd = reader.enter(CONTROLS);
  while (reader.at < controlsEnd) {
    const controlEnd = reader.enter(SEQUENCE);
    const typeEnd = reader.enter(OCTET_STRING);
    const type = message.toString("latin1", reader.at, typeEnd);
    reader.at = typeEnd;
    if (reader.tag() === BOOLEAN) reader.at = reader.enter(BOOLEAN);
    if (type === oid && reader.tag() === OCTET_STRING) {
      const valueEnd = reader.enter(OCTET_STRING);
      return message.subarray(reader.at, valueEnd);
    }
    reader.at = controlEnd;
  }
  return null;
}

/** syncStateValue ::= SEQUENCE { state ENUMERATED, entryUUID OCTET STRING (16), cookie OCTET STRING OPTIONAL } */
export function decodeSyncState(value: Buffer): {
  state: SyncEntryState;
  uuid: string;
  cookie: Buffer | null;
} {
  const reader = new BerReader(value, 0, value.length);
  const end = reader.enter(SEQUENCE);
  const state = STATES[readSmallInt(reader, ENUMERATED)];
  if (!state) throw new RangeError("unknown sync state");
  const uuidEnd = reader.enter(OCTET_STRING);
  const uuid = uuidText(value.subarray(reader.at, uuidEnd));
  reader.at = uuidEnd;
  const cookie = reader.at < end && reader.tag() === OCTET_STRING ? octets(reader) : null;
  return { state, uuid, cookie };
}

/** syncDoneValue ::= SEQUENCE { cookie OCTET STRING OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE } */
export function decodeSyncDone(value: Buffer): { cookie: Buffer | null; refreshDeletes: boolean } {
  const reader = new BerReader(value, 0, value.length);
  const end = reader.enter(SEQUENCE);
  const cookie = reader.at < end && reader.tag() === OCTET_STRING ? octets(reader) : null;
  const refreshDeletes = reader.at < end && reader.tag() === BOOLEAN ? readBoolean(reader) : false;
  return { cookie, refreshDeletes };
}

/**
 * The Sync Info intermediate response (IntermediateResponse ::= [APPLICATION 25] SEQUENCE
 * { responseName [0] OPTIONAL, responseValue [1] OPTIONAL }), from its body: folded into `answer`.
 * Returns false when the message is some other intermediate response.
 */
export function applySyncInfo(
  message: Buffer,
  bodyAt: number,
  bodyEnd: number,
  answer: ContentSyncAnswer,
): boolean {
  const reader = new BerReader(message, bodyAt, bodyEnd);
  let name: string | null = null;
  if (reader.tag() === RESPONSE_NAME) {
    const nameEnd = reader.enter(RESPONSE_NAME);
    name = message.toString("latin1", reader.at, nameEnd);
    reader.at = nameEnd;
  }
  if (name !== SYNC_INFO_OID || reader.tag() !== RESPONSE_VALUE) return false;
  const valueEnd = reader.enter(RESPONSE_VALUE);
  const info = new BerReader(message, reader.at, valueEnd);
  const tag = info.tag();
  if (tag === NEW_COOKIE) {
    answer.cookie = octetsTagged(info, NEW_COOKIE);
    return true;
  }
  if (tag !== REFRESH_DELETE && tag !== REFRESH_PRESENT && tag !== SYNC_ID_SET) return true;
  const end = info.enter(tag);
  if (info.at < end && info.tag() === OCTET_STRING) answer.cookie = octets(info);
  if (tag !== SYNC_ID_SET) {
    // refreshDone (default TRUE) and the phase matter to a persistent search only.
    if (tag === REFRESH_DELETE) answer.refreshDeletes = true;
    return true;
  }
  const refreshDeletes = info.at < end && info.tag() === BOOLEAN ? readBoolean(info) : false;
  const setEnd = info.enter(SET);
  const into = refreshDeletes ? answer.deleted : answer.present;
  while (info.at < setEnd) {
    const uuidEnd = info.enter(OCTET_STRING);
    into.push(uuidText(message.subarray(info.at, uuidEnd)));
    info.at = uuidEnd;
  }
  return true;
}

function octets(reader: BerReader): Buffer {
  return octetsTagged(reader, OCTET_STRING);
}

function octetsTagged(reader: BerReader, tag: number): Buffer {
  const end = reader.enter(tag);
  const bytes = Buffer.from(reader.buffer.subarray(reader.at, end));
  reader.at = end;
  return bytes;
}

function readBoolean(reader: BerReader): boolean {
  const end = reader.enter(BOOLEAN);
  const value = end > reader.at && reader.buffer[reader.at] !== 0;
  reader.at = end;
  return value;
}

function readSmallInt(reader: BerReader, tag: number): number {
  const end = reader.enter(tag);
  if (end - reader.at > 4) throw new RangeError("integer too long");
  let value = 0;
  for (let i = reader.at; i < end; i += 1) value = value * 256 + (reader.buffer[i] as number);
  reader.at = end;
  return value;
}
