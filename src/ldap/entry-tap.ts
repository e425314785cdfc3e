/**
 * Reads the LDAP messages arriving on an ldapts client before ldapts does, for two reasons an
 * import of 100,000 users makes plain:
 *
 * - ldapts appends every chunk that arrives to the message it is reading (Buffer.concat), so an
 *   n-byte message costs n²/64 KiB of copying: a group of 100,000 members (≈5 MB) left ≈170 MB of
 *   garbage and seconds of CPU. Here messages are framed by the length in their BER header and
 *   handed over whole.
 * - ldapts turns each search result entry into a reader, attribute objects and then a plain
 *   object, which was a third of an unchanged re-import's CPU. The entries of the paged searches
 *   Roster registers here are decoded straight into the plain object instead (same shape as
 *   ldapts's `Entry`). ldapts still sees the first entry of each page, because it stops paging
 *   after a page without entries.
 *
 * It relies on two internals of ldapts 8 (the message parser and the table of pending requests);
 * with another ldapts whose internals differ, `tapMessages` returns null and ldapts does it all.
 */
import { isUtf8 } from "node:buffer";
import type { Client, Entry } from "ldapts";
import { BerReader } from "./ber-reader.ts";
import {
  applySyncInfo,
  type ContentSyncAnswer,
  controlValue,
  decodeSyncDone,
  decodeSyncState,
  SYNC_DONE_OID,
  SYNC_STATE_OID,
} from "./content-sync.ts";

const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER = 0x02;
const OCTET_STRING = 0x04;
const SEARCH_RESULT_ENTRY = 0x64;
const SEARCH_RESULT_DONE = 0x65;
const INTERMEDIATE_RESPONSE = 0x79;
/**
 * The largest message held while it arrives: a group entry listing 100,000 members is ≈ 5 MB.
 * Without a limit a server could make Roster hold up to the 4 GiB a BER length can claim.
 */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

interface MessageParser {
  buffer?: Buffer;
  read(data: Buffer, pendingRequests: unknown): void;
}

interface ClientInternals {
  messageParser?: MessageParser;
  socket?: { destroy(): void };
  messageDetailsByMessageId?: Map<string, PendingRequest>;
}

interface PendingRequest {
  message?: { attributes?: unknown };
  reject?: (err: Error) => void;
}

/** The entries of one paged search, decoded as they arrive. */
export interface EntrySink {
  /** The entries decoded since the last call, in the order they arrived. */
  take(): Entry[];
  close(): void;
}

export interface MessageTap {
  /**
   * Decodes the search result entries of the requests made with this very `attributes` array
   * (its identity marks them); `bufferAttributes` (any case) keep their values as Buffers.
   */
  collect(attributes: string[], bufferAttributes: readonly string[], options?: CollectOptions): EntrySink;
}

export interface CollectOptions {
  /**
   * A content-synchronization refresh (RFC 4533): the entries' Sync State controls, the Sync Info
   * messages and the Sync Done control go into this answer; only added or modified entries are
   * taken as entries, and none is handed to ldapts (the search is not paged).
   */
  contentSync?: ContentSyncAnswer;
}

export class UndecodableEntryError extends Error {
  constructor(cause: unknown) {
    super("The directory sent a search result entry that is not valid LDAP (BER).", { cause });
  }
}

/** A message longer than MAX_MESSAGE_BYTES: every request on its connection fails with this. */
export class MessageTooLargeError extends Error {
  constructor(readonly size: number) {
    super(
      `The directory sent a message of ${size.toLocaleString("en-US")} bytes, more than Roster reads (${MAX_MESSAGE_BYTES.toLocaleString("en-US")}); the connection was closed.`,
    );
    this.name = "MessageTooLargeError";
  }
}

/**
 * A message whose inner lengths do not fit inside it. ldapts 8 would loop on some of these until
 * the process runs out of memory (a value set that claims more bytes than are left), so such a
 * message never reaches it: the request it answers fails with this error instead.
 */
export class MalformedMessageError extends Error {
  constructor(readonly messageId: number | null) {
    super("The directory sent a message that is not valid LDAP (BER): its lengths do not add up.");
    this.name = "MalformedMessageError";
  }
}

export function tapMessages(client: Client): MessageTap | null {
  const internals = client as unknown as ClientInternals;
  const parser = internals.messageParser;
  const pendingRequests = internals.messageDetailsByMessageId;
  if (!parser || typeof parser.read !== "function" || !(pendingRequests instanceof Map)) return null;
  const read = parser.read.bind(parser);
  const passOn = (message: Buffer) => read(message, pendingRequests);
  /** Hands a whole message to ldapts if it is well-formed; otherwise fails the request it answers. */
  const toLdapts = (message: Buffer) => {
    if (wellFormed(message, 0, message.length)) {
      passOn(message);
      return;
    }
    const messageId = messageIdOf(message);
    const pending = messageId === null ? undefined : pendingRequests.get(String(messageId));
    // Without a pending request nothing waits for the message: it is dropped.
    if (pending?.reject) {
      pendingRequests.delete(String(messageId));
      pending.reject(new MalformedMessageError(messageId));
    }
  };
  const collectors = new Set<Collector>();

  // The entries of a page arrive one after another with one message id: its collector is kept.
  let last: { messageId: number; collector: Collector } | null = null;
  const collectorFor = (messageId: number): Collector | undefined => {
    if (last?.messageId === messageId && collectors.has(last.collector)) return last.collector;
    const attributes = pendingRequests.get(String(messageId))?.message?.attributes;
    for (const collector of collectors) {
      if (collector.attributes !== attributes) continue;
      last = { messageId, collector };
      return collector;
    }
    return undefined;
  };

  // A message is bytes [start, end) of `data`: entries are decoded in place, without a Buffer each.
  const onMessage = (data: Buffer, start: number, end: number) => {
    const head = collectors.size > 0 ? messageHead(data, start, end) : null;
    const collector = head ? collectorFor(head.messageId) : undefined;
    if (!head || !collector) {
      toLdapts(part(data, start, end));
      return;
    }
    if (head.operation !== SEARCH_RESULT_ENTRY) {
      // Only a content-synchronization refresh gets here: ldapts knows no intermediate response.
      if (collector.sync(data, head, end) === "taken") return;
      toLdapts(part(data, start, end));
      return;
    }
    collector.add(data, head, end);
    if (collector.answer === null && collector.pagePassed !== head.messageId) {
      collector.pagePassed = head.messageId;
      // ldapts needs an entry to read on, not this one (decoded here already): an empty stand-in
      // spares it decoding a group entry of 1,000,000 members a second time, into 300 MB.
      passOn(emptyEntry(head.messageId));
    }
  };

  // A message too large to hold fails every request waiting on the connection, which is closed.
  const tooLarge = (size: number) => {
    const waiting = [...pendingRequests.values()];
    pendingRequests.clear();
    for (const pending of waiting) pending.reject?.(new MessageTooLargeError(size));
    internals.socket?.destroy();
  };
  // Bytes that are not even framed as a message go to ldapts, which reports the protocol error.
  const frames = new MessageFrames(onMessage, passOn, tooLarge);
  parser.read = (data) => frames.push(data);
  return {
    collect(attributes, bufferAttributes, options = {}) {
      const collector = new Collector(attributes, bufferAttributes, options.contentSync ?? null);
      collectors.add(collector);
      return {
        take: () => collector.take(),
        close: () => void collectors.delete(collector),
      };
    },
  };
}

/** A search result entry with no name and no attributes, answering the request `messageId`. */
export function emptyEntry(messageId: number): Buffer {
  const id: number[] = [];
  for (let rest = messageId; ; rest = Math.floor(rest / 256)) {
    id.unshift(rest % 256);
    if (rest < 256) break;
  }
  if ((id[0] as number) >= 0x80) id.unshift(0); // INTEGER is signed: a leading zero keeps it positive
  // SEQUENCE { messageID INTEGER, [APPLICATION 4] { objectName "", attributes SEQUENCE {} } }
  const body = [INTEGER, id.length, ...id, SEARCH_RESULT_ENTRY, 4, OCTET_STRING, 0, SEQUENCE, 0];
  return Buffer.from([SEQUENCE, body.length, ...body]);
}

/** Bytes [start, end) of data, without a new Buffer when that is all of it. */
function part(data: Buffer, start: number, end: number): Buffer {
  return start === 0 && end === data.length ? data : data.subarray(start, end);
}

/** Bytes in the BER element starting at buf[at] (tag, length, content); null while the header is incomplete, -1 when it is not one LDAP uses. */
export function berElementSize(buf: Buffer, at = 0): number | null {
  if (buf.length - at < 2) return null;
  const first = buf[at + 1] as number;
  if (first < 0x80) return 2 + first;
  const octets = first & 0x7f;
  if (octets === 0 || octets > 4) return -1; // indefinite length, or ≥ 4 GiB
  if (buf.length - at < 2 + octets) return null;
  let length = 0;
  for (let i = 0; i < octets; i += 1) length = length * 256 + (buf[at + 2 + i] as number);
  return 2 + octets + length;
}

/** Cuts the byte stream into whole LDAP messages. */
class MessageFrames {
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Size of the message being held, once its header is complete. */
  private needed: number | null = null;
  /** Set once a message was too large: nothing more is read from this connection. */
  private stopped = false;
  /**
   * A message whose size is known, being filled chunk by chunk: copied once into its own buffer
   * rather than held in chunks and joined (a 50 MB group entry would be held twice).
   */
  private message: Buffer | null = null;
  private filled = 0;

  constructor(
    private readonly onMessage: (data: Buffer, start: number, end: number) => void,
    private readonly onGarbage: (bytes: Buffer) => void,
    private readonly onTooLarge: (size: number) => void,
  ) {}

  push(data: Buffer): void {
    if (this.stopped) return;
    if (this.message) {
      const taken = Math.min(data.length, this.message.length - this.filled);
      data.copy(this.message, this.filled, 0, taken);
      this.filled += taken;
      if (this.filled < this.message.length) return;
      const message = this.message;
      this.message = null;
      this.filled = 0;
      this.onMessage(message, 0, message.length);
      if (taken < data.length) this.split(data.subarray(taken));
      return;
    }
    if (this.heldBytes === 0) {
      this.split(data);
      return;
    }
    this.held.push(data);
    this.heldBytes += data.length;
    if (this.needed === null) {
      const joined = Buffer.concat(this.held, this.heldBytes);
      this.held = [joined];
      this.needed = berElementSize(joined);
      if (this.needed === null || this.refuse(this.needed)) return;
    }
    if (this.needed !== -1 && this.heldBytes < this.needed) {
      this.startMessage();
      return;
    }
    const whole = Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    this.heldBytes = 0;
    this.needed = null;
    this.split(whole);
  }

  /** The held start of a message whose size is known goes into a buffer of that size. */
  private startMessage(): void {
    if (this.needed === null || this.needed === -1) return;
    const message = Buffer.allocUnsafe(this.needed);
    let at = 0;
    for (const chunk of this.held) at += chunk.copy(message, at);
    this.message = message;
    this.filled = at;
    this.held = [];
    this.heldBytes = 0;
    this.needed = null;
  }

  private split(data: Buffer): void {
    let at = 0;
    while (at < data.length) {
      const size = berElementSize(data, at);
      if (size === -1) {
        // Not a message this client could read: ldapts reports the protocol error.
        this.onGarbage(at === 0 ? data : data.subarray(at));
        return;
      }
      if (size !== null && this.refuse(size)) return;
      if (size === null || at + size > data.length) {
        this.held = [at === 0 ? data : data.subarray(at)];
        this.heldBytes = data.length - at;
        this.needed = size;
        this.startMessage();
        return;
      }
      this.onMessage(data, at, at + size);
      at += size;
    }
  }

  /** True (and the connection given up) when a message claims more than MAX_MESSAGE_BYTES. */
  private refuse(size: number): boolean {
    if (size <= MAX_MESSAGE_BYTES) return false;
    this.stopped = true;
    this.held = [];
    this.heldBytes = 0;
    this.onTooLarge(size);
    return true;
  }
}

/**
 * Whether every constructed element of the element at [start, end) is exactly tiled by elements
 * that fit inside it, all the way down (primitive contents are not looked into).
 */
export function wellFormed(buf: Buffer, start: number, end: number): boolean {
  // An explicit stack of the ends of the elements being walked: a hostile nesting can't overflow ours.
  const ends = [end];
  const reader = new BerReader(buf, start, end);
  try {
    while (ends.length > 0) {
      const parentEnd = ends[ends.length - 1] as number;
      if (reader.at === parentEnd) {
        ends.pop();
        continue;
      }
      const tag = reader.tag() as number;
      if ((tag & 0x1f) === 0x1f) return false; // multi-byte tag numbers: LDAP has none
      const elementEnd = reader.enter(tag); // reader.at: where its contents start
      if (elementEnd > parentEnd) return false;
      if ((tag & 0x20) !== 0 && reader.at < elementEnd) ends.push(elementEnd);
      else reader.at = elementEnd;
    }
  } catch {
    return false; // a length that is indefinite, too long, or past the message
  }
  return true;
}

/** LDAPMessage ::= SEQUENCE { messageID INTEGER (0 .. 2^31 - 1), protocolOp … }: reads up to the operation. */
function readMessageId(reader: BerReader): number {
  reader.enter(SEQUENCE);
  const idEnd = reader.enter(INTEGER);
  if (idEnd - reader.at > 4) throw new RangeError(`message id longer than 4 bytes at ${reader.at}`);
  let messageId = 0;
  for (let i = reader.at; i < idEnd; i += 1) messageId = messageId * 256 + (reader.buffer[i] as number);
  reader.at = idEnd;
  return messageId;
}

/** The message id of a message whose header can be read, else null. */
function messageIdOf(message: Buffer): number | null {
  try {
    return readMessageId(new BerReader(message, 0, message.length));
  } catch {
    return null;
  }
}

interface MessageHead {
  messageId: number;
  operation: number;
  /** Where the operation's contents start, and where it ends (its controls follow). */
  bodyAt: number;
  bodyEnd: number;
}

/**
 * The message id and operation of a message, for a search result entry and the two messages a
 * content-synchronization refresh adds (intermediate response, search result done); null for
 * any other message.
 */
function messageHead(data: Buffer, start: number, end: number): MessageHead | null {
  try {
    const reader = new BerReader(data, start, end);
    const messageId = readMessageId(reader);
    const operation = reader.tag();
    if (
      operation !== SEARCH_RESULT_ENTRY &&
      operation !== INTERMEDIATE_RESPONSE &&
      operation !== SEARCH_RESULT_DONE
    ) {
      return null;
    }
    const bodyEnd = reader.enter(operation);
    return { messageId, operation, bodyAt: reader.at, bodyEnd };
  } catch {
    return null; // malformed: ldapts reads it and reports the error
  }
}

class Collector {
  pagePassed = -1;
  private entries: Entry[] = [];
  private error: unknown = null;
  private readonly asBuffers: Set<string>;
  /** The attribute types seen at each position: a server sends them in the same order entry after entry. */
  private readonly typesAt: AttributeType[] = [];

  constructor(
    readonly attributes: string[],
    bufferAttributes: readonly string[],
    readonly answer: ContentSyncAnswer | null,
  ) {
    this.asBuffers = new Set(bufferAttributes.map((name) => name.toLowerCase()));
  }

  add(message: Buffer, head: MessageHead, end: number): void {
    if (this.error) return;
    try {
      if (this.answer) {
        const value = controlValue(message, head.bodyEnd, end, SYNC_STATE_OID);
        const state = value ? decodeSyncState(value) : null;
        if (state?.cookie) this.answer.cookie = state.cookie;
        if (state?.state === "present") {
          this.answer.present.push(state.uuid);
          return;
        }
        if (state?.state === "delete") {
          this.answer.deleted.push(state.uuid);
          return;
        }
      }
      this.entries.push(this.decode(message, head.bodyAt, head.bodyEnd));
    } catch (err) {
      this.error = new UndecodableEntryError(err);
    }
  }

  /**
   * An intermediate response or the search's end, of a content-synchronization refresh: a Sync
   * Info message is taken (ldapts never sees it); the end is read for its Sync Done control and
   * passed on, for ldapts to settle the search.
   */
  sync(message: Buffer, head: MessageHead, end: number): "taken" | "pass" {
    const answer = this.answer;
    if (!answer) return "pass";
    try {
      if (head.operation === INTERMEDIATE_RESPONSE) {
        return applySyncInfo(message, head.bodyAt, head.bodyEnd, answer) ? "taken" : "pass";
      }
      const done = controlValue(message, head.bodyEnd, end, SYNC_DONE_OID);
      if (done) {
        const { cookie, refreshDeletes } = decodeSyncDone(done);
        if (cookie) answer.cookie = cookie;
        answer.refreshDeletes = refreshDeletes;
        answer.done = true;
      }
    } catch (err) {
      this.error ??= new UndecodableEntryError(err);
      return head.operation === INTERMEDIATE_RESPONSE ? "taken" : "pass";
    }
    return "pass";
  }

  take(): Entry[] {
    if (this.error) throw this.error;
    const taken = this.entries;
    this.entries = [];
    return taken;
  }

  /** SearchResultEntry ::= [APPLICATION 4] SEQUENCE { objectName, attributes SEQUENCE OF { type, SET OF value } } */
  private decode(message: Buffer, bodyAt: number, end: number): Entry {
    const reader = new BerReader(message, bodyAt, end);
    const dnEnd = reader.enter(OCTET_STRING);
    const entry: Entry = { dn: message.toString("utf8", reader.at, dnEnd) };
    reader.at = dnEnd;
    const attributesEnd = reader.enter(SEQUENCE);
    for (let position = 0; reader.at < attributesEnd; position += 1) {
      const attributeEnd = reader.enter(SEQUENCE);
      const typeEnd = reader.enter(OCTET_STRING);
      const type = this.typeAt(position, message, reader.at, typeEnd);
      reader.at = typeEnd;
      if (!type.ignored) entry[type.name] = reader.at < attributeEnd ? values(reader, type.binary) : [];
      reader.at = attributeEnd;
    }
    if (reader.at !== attributesEnd) throw new RangeError("attribute list overruns the entry");
    for (const name of this.attributes) if (!Object.hasOwn(entry, name)) fillMissing(entry, name);
    return entry;
  }

  private typeAt(position: number, message: Buffer, start: number, end: number): AttributeType {
    const seen = this.typesAt[position];
    if (seen && sameBytes(seen.bytes, message, start, end)) return seen;
    const name = message.toString("utf8", start, end);
    const lower = name.toLowerCase();
    const type = {
      bytes: Buffer.from(message.subarray(start, end)), // a copy: the message itself can go
      name,
      binary: this.asBuffers.has(lower) || lower.endsWith(";binary"),
      ignored: lower === "dn" || lower === "__proto__",
    };
    this.typesAt[position] = type;
    return type;
  }
}

interface AttributeType {
  bytes: Buffer;
  name: string;
  /** Values kept as Buffers whatever they hold. */
  binary: boolean;
  /**
   * Not an attribute but a name that would overwrite the entry's DN or, as `__proto__`, replace
   * its prototype: neither is a valid attribute description (RFC 4512), so a hostile server's.
   */
  ignored: boolean;
}

function sameBytes(bytes: Buffer, message: Buffer, start: number, end: number): boolean {
  if (bytes.length !== end - start) return false;
  for (let i = 0; i < bytes.length; i += 1) if (bytes[i] !== message[start + i]) return false;
  return true;
}

const ASCII = 0;
const UTF8 = 1;
const NOT_TEXT = 2;

/**
 * Like ldapts: text when every value is UTF-8 (a leading byte order mark dropped, as its
 * TextDecoder does), Buffers when one is not or the attribute is binary; one value bare.
 */
function values(reader: BerReader, binary: boolean): Entry[string] {
  const message = reader.buffer;
  const setEnd = reader.enter(SET);
  if (reader.at === setEnd) return [];
  const firstEnd = reader.enter(OCTET_STRING);
  const firstStart = reader.at;
  reader.at = firstEnd;
  let kind = binary ? NOT_TEXT : textKind(message, firstStart, firstEnd);
  // One value, as nearly every attribute of a user has: decoded without the arrays below.
  if (firstEnd === setEnd) return valueAs(kind, message, firstStart, firstEnd);
  // Two passes, counting the values and finding their kind, then decoding them into an array of
  // that size: no list of bounds (2,000,000 numbers for a 1,000,000-member group) and no array
  // grown by doubling, beside the message and its strings at the read's peak.
  let count = 1;
  while (reader.at < setEnd) {
    const end = reader.enter(OCTET_STRING);
    if (kind !== NOT_TEXT) kind = Math.max(kind, textKind(message, reader.at, end));
    reader.at = end;
    count += 1;
  }
  if (reader.at !== setEnd) throw new RangeError("value set overruns the attribute");
  const decoded = new Array<string | Buffer>(count);
  decoded[0] = valueAs(kind, message, firstStart, firstEnd);
  reader.at = firstEnd;
  for (let i = 1; i < count; i += 1) {
    const end = reader.enter(OCTET_STRING);
    decoded[i] = valueAs(kind, message, reader.at, end);
    reader.at = end;
  }
  return decoded as string[] | Buffer[];
}

function valueAs(kind: number, message: Buffer, start: number, end: number): string | Buffer {
  if (kind === ASCII) return message.toString("latin1", start, end);
  if (kind === UTF8) return message.toString("utf8", hasBom(message, start, end) ? start + 3 : start, end);
  return message.subarray(start, end);
}

/** ASCII, other valid UTF-8 (checked by Node), or neither. */
function textKind(buf: Buffer, start: number, end: number): number {
  for (let i = start; i < end; i += 1) {
    if ((buf[i] as number) >= 0x80) return isUtf8(buf.subarray(start, end)) ? UTF8 : NOT_TEXT;
  }
  return ASCII;
}

function hasBom(buf: Buffer, start: number, end: number): boolean {
  return end - start >= 3 && buf[start] === 0xef && buf[start + 1] === 0xbb && buf[start + 2] === 0xbf;
}

/** ldapts lists a requested attribute the server did not send, with no values. */
function fillMissing(entry: Entry, name: string): void {
  const lower = name.toLowerCase();
  for (const key in entry) if (key.toLowerCase() === lower) return;
  entry[name] = [];
}
