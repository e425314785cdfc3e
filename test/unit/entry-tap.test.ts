import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Client, type Entry, SearchEntry, SearchResponse } from "ldapts";
import {
  emptyEntry,
  MAX_MESSAGE_BYTES,
  MalformedMessageError,
  MessageTooLargeError,
  tapMessages,
  UndecodableEntryError,
  wellFormed,
} from "../../src/ldap/entry-tap.ts";
import {
  entryMessage,
  overrunningEntry,
  resultMessage,
  SEARCH_RESULT_DONE,
  type Value,
} from "../helpers/ldap-messages.ts";

/** The parts of ldapts's message parser this test drives. */
interface Parser {
  read(data: Buffer, pending: unknown): void;
  on(event: "message", listener: (message: unknown) => void): void;
}
const GUID = Buffer.from("c0ffee00112233445566778899aabbff", "hex");

const requested = ["uid", "cn", "mail", "entryUUID", "objectGUID", "telephoneNumber", "member"];
const buffers = ["objectGUID", "objectguid", "entryUUID", "entryuuid"];

const entries: [string, [string, Value[]][]][] = [
  [
    "uid=zoe,ou=people,dc=example,dc=test",
    [
      ["uid", ["zoë"]],
      ["cn", ["Zoë Schmidt", "李小龙"]],
      ["mail", ["zoe@example.test"]],
      ["description", ["\uFEFFbegins with a byte order mark"]],
      ["entryUUID", [Buffer.from("0d9e9b38-2f1c-103f-8f7e-1d2a3b4c5d6e")]],
    ],
  ],
  [
    "cn=O'Brien\\, Seán+uid=obrien,ou=people,dc=example,dc=test",
    [
      ["UID", ["obrien"]], // the server's own spelling of a requested name
      ["cn", [Buffer.from([0x4f, 0xff, 0xfe])]], // not UTF-8: Buffers, as ldapts does
      ["objectGUID", [GUID]],
      ["description", ["x".repeat(70_000)]], // a long-form length
      ["telephoneNumber", []],
    ],
  ],
  [
    "cn=big,ou=groups,dc=example,dc=test",
    [
      ["cn", ["big"]],
      [
        "member;range=0-1499",
        Array.from({ length: 1500 }, (_, i) => `uid=u${i},ou=people,dc=example,dc=test`),
      ],
      ["userCertificate;binary", [Buffer.from([1, 2, 3])]],
    ],
  ],
];

const MESSAGE_ID = 7;
const done = (messageId: number) => resultMessage(messageId, SEARCH_RESULT_DONE);
const stream = Buffer.concat([
  ...entries.map(([dn, attributes]) => entryMessage(MESSAGE_ID, dn, attributes)),
  done(MESSAGE_ID),
]);

/** What ldapts itself makes of the stream: its parser, then SearchEntry.toObject. */
function ldaptsEntries(): Entry[] {
  const client = new Client({ url: "ldap://127.0.0.1:1" });
  const parser = (client as unknown as { messageParser: Parser }).messageParser;
  const decoded: Entry[] = [];
  parser.on("message", (message: unknown) => {
    if (message instanceof SearchEntry) decoded.push(message.toObject(requested, buffers));
  });
  parser.read(stream, new Map());
  return decoded;
}

interface Tapped {
  client: Client;
  seen: string[];
  feed(data: Buffer): void;
}

/** A client with its tap, a pending search of `attributes` as message 7, and a log of what ldapts receives. */
function tappedClient(attributes: string[], reject: (err: Error) => void = () => {}): Tapped {
  const client = new Client({ url: "ldap://127.0.0.1:1" });
  const internals = client as unknown as {
    messageParser: Parser;
    messageDetailsByMessageId: Map<string, unknown>;
  };
  internals.messageDetailsByMessageId.set(String(MESSAGE_ID), {
    message: { attributes },
    resolve: () => {},
    reject,
  });
  const seen: string[] = [];
  internals.messageParser.on("message", (message: unknown) => {
    if (message instanceof SearchEntry) seen.push(`entry ${message.name}`);
    else if (message instanceof SearchResponse) seen.push("done");
  });
  return {
    client,
    seen,
    feed: (data) => internals.messageParser.read(data, internals.messageDetailsByMessageId),
  };
}

function chunks(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) out.push(data.subarray(at, at + size));
  return out;
}

describe("the entry tap", () => {
  test("decodes entries exactly as ldapts does, however the bytes are cut into chunks", () => {
    const expected = ldaptsEntries();
    assert.equal(expected.length, 3);
    for (const size of [1, 2, 7, 1000, 65_536, stream.length]) {
      const attributes = [...requested];
      const tapped = tappedClient(attributes);
      const tap = tapMessages(tapped.client);
      assert.ok(tap, "ldapts 8's internals are where the tap expects them");
      const sink = tap.collect(attributes, buffers);
      for (const chunk of chunks(stream, size)) tapped.feed(chunk);
      assert.deepEqual(sink.take(), expected, `chunks of ${size} bytes`);
      assert.deepEqual(sink.take(), [], "taken entries are not handed out twice");
      // ldapts sees an entry for the page (so it keeps paging: an empty stand-in, not decoded
      // twice) and the end of the search.
      assert.deepEqual(tapped.seen, ["entry ", "done"], `chunks of ${size} bytes`);
    }
  });

  test("the stand-in entry ldapts sees answers its request, whatever the message id", () => {
    for (const id of [1, 127, 128, 255, 256, 65_535, 2 ** 31 - 1]) {
      const client = new Client({ url: "ldap://127.0.0.1:1" });
      const internals = client as unknown as {
        messageParser: Parser;
        messageDetailsByMessageId: Map<string, unknown>;
      };
      internals.messageDetailsByMessageId.set(String(id), { message: { attributes: [] } });
      const seen: { id: number; name: string; attributes: number }[] = [];
      internals.messageParser.on("message", (message: unknown) => {
        if (message instanceof SearchEntry)
          seen.push({ id: message.messageId, name: message.name, attributes: message.attributes.length });
      });
      const bytes = emptyEntry(id);
      assert.ok(wellFormed(bytes, 0, bytes.length));
      internals.messageParser.read(bytes, internals.messageDetailsByMessageId);
      assert.deepEqual(seen, [{ id, name: "", attributes: 0 }], `message id ${id}`);
    }
  });

  test("values: text when UTF-8, Buffers when not or when binary, one value bare, absent ones empty", () => {
    const attributes = [...requested];
    const tapped = tappedClient(attributes);
    const sink = tapMessages(tapped.client)?.collect(attributes, buffers);
    tapped.feed(stream);
    const [zoe, obrien, big] = sink?.take() ?? [];
    assert.equal(zoe?.uid, "zoë");
    assert.deepEqual(zoe?.cn, ["Zoë Schmidt", "李小龙"]);
    assert.deepEqual(zoe?.entryUUID, Buffer.from("0d9e9b38-2f1c-103f-8f7e-1d2a3b4c5d6e"));
    assert.deepEqual(zoe?.objectGUID, []);
    assert.equal(
      zoe?.description,
      "begins with a byte order mark",
      "a leading BOM is dropped, as ldapts does",
    );
    assert.equal(obrien?.dn, "cn=O'Brien\\, Seán+uid=obrien,ou=people,dc=example,dc=test");
    assert.equal(obrien?.UID, "obrien");
    assert.equal(Object.hasOwn(obrien ?? {}, "uid"), false, "no empty filler beside the server's spelling");
    assert.deepEqual(obrien?.cn, Buffer.from([0x4f, 0xff, 0xfe]));
    assert.deepEqual(obrien?.objectGUID, GUID);
    assert.equal((obrien?.description as string | undefined)?.length, 70_000);
    assert.deepEqual(obrien?.telephoneNumber, []);
    assert.equal((big?.["member;range=0-1499"] as string[] | undefined)?.length, 1500);
    assert.deepEqual(big?.["userCertificate;binary"], Buffer.from([1, 2, 3]));
  });

  test("an attribute named dn or __proto__ can't overwrite the DN or the entry's prototype", () => {
    const attributes = ["uid", "cn"];
    const tapped = tappedClient(attributes);
    const sink = tapMessages(tapped.client)?.collect(attributes, []);
    const dn = "uid=mallory,ou=people,dc=example,dc=test";
    tapped.feed(
      Buffer.concat([
        entryMessage(MESSAGE_ID, dn, [
          ["uid", ["mallory"]],
          ["__proto__", ["x", "y"]],
          ["DN", ["uid=admin,dc=example,dc=test"]],
          ["cn", ["Mallory"]],
        ]),
        done(MESSAGE_ID),
      ]),
    );
    const [entry] = sink?.take() ?? [];
    assert.equal(entry?.dn, dn);
    assert.equal(Object.getPrototypeOf(entry), Object.prototype);
    assert.deepEqual(Object.keys(entry ?? {}), ["dn", "uid", "cn"]);
    assert.equal(entry?.cn, "Mallory", "the attributes after them are still read");
  });

  test("entries of other requests, and every entry once the search is closed, go to ldapts", () => {
    const pending = [...requested];
    const tapped = tappedClient(pending);
    const tap = tapMessages(tapped.client);
    const other = tap?.collect([...requested], buffers); // equal, but not the same array
    tapped.feed(stream);
    assert.deepEqual(other?.take(), []);
    assert.equal(tapped.seen.filter((s) => s.startsWith("entry")).length, 3);

    const closed = tappedClient(pending);
    const closedSink = tapMessages(closed.client)?.collect(pending, buffers);
    closedSink?.close();
    closed.feed(stream);
    assert.deepEqual(closedSink?.take(), []);
    assert.equal(closed.seen.filter((s) => s.startsWith("entry")).length, 3);
  });

  test("an entry's lengths can't reach into the next message of the same chunk", () => {
    const attributes = [...requested];
    const tapped = tappedClient(attributes);
    const sink = tapMessages(tapped.client)?.collect(attributes, buffers);
    // (After a good entry: the first entry of a page goes to ldapts as well.)
    const good = entryMessage(MESSAGE_ID, "uid=b,dc=example,dc=test", [["uid", ["b"]]]);
    tapped.feed(Buffer.concat([good, overrunningEntry(MESSAGE_ID), done(MESSAGE_ID)]));
    assert.throws(() => sink?.take(), UndecodableEntryError);
  });

  test("a message whose lengths don't add up fails its request instead of reaching ldapts", () => {
    // ldapts 8 itself loops on this entry until the process runs out of memory.
    const rejected: Error[] = [];
    const tapped = tappedClient([...requested], (err) => rejected.push(err));
    assert.ok(tapMessages(tapped.client));
    tapped.feed(Buffer.concat([overrunningEntry(MESSAGE_ID), done(MESSAGE_ID)]));
    assert.equal(rejected.length, 1);
    assert.ok(rejected[0] instanceof MalformedMessageError);
    assert.equal((rejected[0] as MalformedMessageError).messageId, MESSAGE_ID);
    assert.deepEqual(tapped.seen, ["done"], "ldapts never saw the malformed entry");
  });

  test("a message claiming more than Roster holds fails every waiting request and is not buffered", () => {
    const rejected: Error[] = [];
    const tapped = tappedClient([...requested], (err) => rejected.push(err));
    assert.ok(tapMessages(tapped.client));
    const size = MAX_MESSAGE_BYTES + 1;
    const header = Buffer.from([0x30, 0x84, 0, 0, 0, 0]);
    header.writeUInt32BE(size - 6, 2);
    tapped.feed(header.subarray(0, 3)); // the length arrives in two chunks
    assert.equal(rejected.length, 0, "nothing is decided before the length is known");
    tapped.feed(header.subarray(3));
    assert.equal(rejected.length, 1);
    assert.ok(rejected[0] instanceof MessageTooLargeError);
    tapped.feed(stream); // whatever follows on this connection is not read
    assert.deepEqual(tapped.seen, []);
  });

  test("well-formed: every nested element fits its parent exactly", () => {
    for (const message of [
      stream.subarray(0, 0),
      done(3),
      ...entries.map(([dn, a]) => entryMessage(1, dn, a)),
    ]) {
      assert.ok(wellFormed(message, 0, message.length));
    }
    assert.equal(wellFormed(overrunningEntry(MESSAGE_ID), 0, overrunningEntry(MESSAGE_ID).length), false);
    const short = entryMessage(1, "uid=a", [["uid", ["a"]]]);
    short[short.length - 2] = 0; // the value claims 0 bytes: its set is no longer tiled
    assert.equal(wellFormed(short, 0, short.length), false);
    // Sequences nested a hundred thousand deep are walked without recursion.
    const depth = 100_000;
    const deep = Buffer.alloc(depth * 6);
    for (let i = 0; i < depth; i += 1) {
      deep.set([0x30, 0x84], i * 6);
      deep.writeUInt32BE(deep.length - (i + 1) * 6, i * 6 + 2);
    }
    assert.ok(wellFormed(deep, 0, deep.length));
    deep.writeUInt32BE(1, deep.length - 4); // the innermost claims a byte that isn't there
    assert.equal(wellFormed(deep, 0, deep.length), false);
  });

  test("a malformed entry fails the search instead of being skipped", () => {
    const attributes = [...requested];
    const tapped = tappedClient(attributes);
    const sink = tapMessages(tapped.client)?.collect(attributes, buffers);
    const good = entryMessage(MESSAGE_ID, "uid=a,dc=example,dc=test", [["uid", ["a"]]]);
    const bad = Buffer.from(good);
    // The attribute list claims more bytes than the entry holds.
    const listAt = bad.indexOf(Buffer.from([0x30]), bad.indexOf(Buffer.from("uid=a")) + 5);
    bad[listAt + 1] = (bad[listAt + 1] as number) + 5;
    tapped.feed(Buffer.concat([good, bad, done(MESSAGE_ID)]));
    assert.throws(() => sink?.take(), UndecodableEntryError);
  });
});
