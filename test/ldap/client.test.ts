import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Client, SizeLimitExceededError } from "ldapts";
import { bigGroupDirectory, readFixture, userFixture } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { type DirectorySession, openDirectory } from "../../src/ldap/client.ts";
import { dnEquals } from "../../src/ldap/dn.ts";
import { berElementSize } from "../../src/ldap/entry-tap.ts";
import { DirectoryError } from "../../src/ldap/errors.ts";
import { buildSearchFilter } from "../../src/ldap/filter.ts";
import { mapUser, userAttributes } from "../../src/ldap/mapping.ts";
import {
  BIND_RESPONSE,
  overrunningEntry,
  resultMessage,
  SEARCH_RESULT_DONE,
} from "../helpers/ldap-messages.ts";
import { closedPort, collect, connectionTo, openldapMapping, skipWithoutSlapd } from "./support.ts";

const USERS = 2500;
const GENERATED = "(&(objectClass=inetOrgPerson)(departmentNumber=*))";
const mapping = openldapMapping();

describe("directory client against slapd", { skip: skipWithoutSlapd }, () => {
  let server: SlapdServer;
  let session: DirectorySession;

  before(async () => {
    const directory = bigGroupDirectory(USERS, { password: "generated-password" });
    server = await startSlapd({ ldif: directory.ldif + (await readFixture("edge.ldif")) });
    const opened = await openDirectory(connectionTo(server));
    assert.ok(opened.ok, opened.ok ? "" : opened.error.detail);
    session = opened.session;
  });

  after(async () => {
    await session?.close();
    await server?.stop();
  });

  describe("paged searches", () => {
    test("the service account really is capped at 1000 entries without paging", async () => {
      const raw = new Client({ url: server.url });
      try {
        await raw.bind(server.serviceDn, server.servicePassword);
        await assert.rejects(raw.search(server.baseDn, { filter: GENERATED }), SizeLimitExceededError);
      } finally {
        await raw.unbind();
      }
    });

    test("returns every one of 2,500 users past the 1000-entry size limit", async () => {
      const entries = await collect(session.searchPages(server.baseDn, GENERATED, "sub", ["uid"]));
      const uids = entries.map((entry) => String(entry.uid));
      assert.equal(entries.length, USERS);
      assert.equal(new Set(uids).size, USERS);
      for (const index of [0, 999, 1000, 1001, USERS - 1]) assert.ok(uids.includes(userFixture(index).uid));
    });

    test("delivers the entries in pages of the requested size", async () => {
      const sizes: number[] = [];
      for await (const page of session.searchPages(server.baseDn, GENERATED, "sub", ["1.1"], {
        pageSize: 700,
      })) {
        sizes.push(page.length);
      }
      assert.deepEqual(sizes, [700, 700, 700, 400]);
    });

    test("counts exactly past the size limit", async () => {
      assert.equal(await session.count(server.baseDn, GENERATED, "sub"), USERS);
      assert.equal(await session.count(`ou=people,${server.baseDn}`, "(uid=alpha)", "one"), 1);
    });

    test("runs concurrent and nested paged searches without invalidating each other's cookies", async () => {
      const people = `ou=people,${server.baseDn}`;
      const nestedCounts: number[] = [];
      const iterate = async () => {
        let total = 0;
        for await (const page of session.searchPages(people, GENERATED, "one", ["uid"], { pageSize: 300 })) {
          total += page.length;
          if (total === 300) nestedCounts.push(await session.count(people, GENERATED, "one"));
          assert.equal((await session.readEntry(page[0]?.dn ?? "", ["uid"]))?.uid, page[0]?.uid);
        }
        return total;
      };
      assert.deepEqual(await Promise.all([iterate(), iterate(), iterate()]), [USERS, USERS, USERS]);
      assert.deepEqual(nestedCounts, [USERS, USERS, USERS]);
    });

    test("stops between pages when the caller aborts", async () => {
      const controller = new AbortController();
      let pages = 0;
      await assert.rejects(async () => {
        for await (const _ of session.searchPages(server.baseDn, GENERATED, "sub", ["1.1"], {
          pageSize: 500,
          signal: controller.signal,
        })) {
          pages += 1;
          controller.abort();
        }
      }, /abort/i);
      assert.equal(pages, 1);
    });

    test("reports a missing search base as no_such_object (32)", async () => {
      await assert.rejects(
        collect(session.searchPages(`ou=nowhere,${server.baseDn}`, "(objectClass=*)", "sub", ["1.1"])),
        (err: unknown) =>
          err instanceof DirectoryError &&
          err.classified.kind === "no_such_object" &&
          err.classified.ldapCode === 32 &&
          err.message.includes("ou=nowhere"),
      );
    });

    test("rejects a malformed filter before sending it", async () => {
      await assert.rejects(
        collect(session.searchPages(server.baseDn, "(uid=a", "sub", ["1.1"])),
        /The search filter is invalid: Unbalanced parenthesis/,
      );
    });
  });

  describe("special characters", () => {
    test("reads entries whose DNs hold escaped commas and plus signs, however they are spelled", async () => {
      const cases: [string, string][] = [
        ["sobrien", `cn=O'Brien\\, Seán,ou=people,${server.baseDn}`],
        ["leepark", `cn=Lee\\+Park,ou=people,${server.baseDn}`],
        ["agarcia", `cn=Garc\\C3\\ADa\\2C Ana,ou=people,${server.baseDn}`],
        ["pkim", `uid=pkim+cn=Pat Kim,ou=people,${server.baseDn}`],
      ];
      for (const [uid, written] of cases) {
        const [found] = await collect(session.searchPages(server.baseDn, `(uid=${uid})`, "sub", ["uid"]));
        assert.ok(found, uid);
        assert.ok(dnEquals(found.dn, written), `${found.dn} vs ${written}`);
        const reread = await session.readEntry(written, ["uid"]);
        assert.equal(reread?.uid, uid);
        const again = await session.readEntry(found.dn, ["uid"]);
        assert.equal(again?.uid, uid);
      }
    });

    test("returns null for an entry that does not exist", async () => {
      assert.equal(await session.readEntry(`uid=nobody,ou=people,${server.baseDn}`, ["uid"]), null);
    });

    test("finds typed text containing filter metacharacters literally", async () => {
      const search = async (text: string) => {
        const built = buildSearchFilter({
          text,
          attributes: ["uid", "cn"],
          objectFilter: mapping.userFilter,
        });
        assert.ok(built.ok);
        const entries = await collect(
          session.searchPages(server.baseDn, built.filter, "sub", userAttributes(mapping)),
        );
        return entries.map((entry) => String(entry.uid)).sort();
      };
      assert.deepEqual(await search("Paren(s)\\Back"), ["meta"]);
      assert.deepEqual(await search("<script>"), ["xss"]);
      assert.deepEqual(await search("O'Brien, S"), ["sobrien"]);
      assert.deepEqual(await search("*)(uid=*"), []);
      assert.deepEqual(await search("García, Ana"), ["agarcia"]);
    });

    test("maps an NFD-encoded username to NFC", async () => {
      const [entry] = await collect(
        session.searchPages(server.baseDn, "(cn=*Decomposed)", "sub", userAttributes(mapping)),
      );
      assert.ok(entry);
      const mapped = mapUser(entry, mapping);
      assert.ok(mapped.ok);
      assert.equal(mapped.value.username, "zo\u00eb");
      assert.match(mapped.value.externalId, /^[0-9a-f-]{36}$/);
    });
  });

  describe("binding", () => {
    test("bindAs accepts the right password and rejects a wrong one with code 49", async () => {
      const dn = `cn=O'Brien\\, Seán,ou=people,${server.baseDn}`;
      assert.deepEqual(await session.bindAs(dn, "edge-password"), { ok: true });
      const wrong = await session.bindAs(dn, "not-it");
      assert.equal(wrong.ok, false);
      assert.equal(wrong.ok ? "" : wrong.error.kind, "invalid_credentials");
      assert.equal(wrong.ok ? 0 : wrong.error.ldapCode, 49);
      assert.equal(wrong.ok ? "" : wrong.error.detail.includes("not-it"), false);
    });

    test("bindAs refuses an empty password instead of binding anonymously", async () => {
      const result = await session.bindAs(`uid=alpha,ou=people,${server.baseDn}`, "");
      assert.equal(result.ok, false);
      assert.match(result.ok ? "" : result.error.message, /password is required/);
    });

    test("a wrong service password fails at the bind step with invalid_credentials (49)", async () => {
      const opened = await openDirectory(connectionTo(server, { bindPassword: "wrong-password" }));
      assert.equal(opened.ok, false);
      if (opened.ok) return;
      assert.equal(opened.step, "bind");
      assert.equal(opened.error.kind, "invalid_credentials");
      assert.equal(opened.error.ldapCode, 49);
      assert.equal(opened.error.message, "The bind DN or password is wrong.");
      assert.equal(opened.error.detail.includes("wrong-password"), false);
    });

    test("binds anonymously when no bind DN is set", async () => {
      const opened = await openDirectory(connectionTo(server, { bindDn: null, bindPassword: null }));
      assert.ok(opened.ok);
      try {
        assert.equal(await opened.session.count(`ou=people,${server.baseDn}`, "(uid=alpha)", "one"), 1);
      } finally {
        await opened.session.close();
      }
    });
  });

  describe("reaching the server", () => {
    test("a closed port is reported as refused", async () => {
      const url = `ldap://127.0.0.1:${await closedPort()}`;
      const opened = await openDirectory(connectionTo(server, { urls: [url] }));
      assert.equal(opened.ok, false);
      if (opened.ok) return;
      assert.equal(opened.step, "connect");
      assert.equal(opened.error.kind, "refused");
      assert.match(opened.error.message, /refused the connection/);
    });

    test("fails over from a dead first URL to a live second one and records which answered", async () => {
      const dead = `ldap://127.0.0.1:${await closedPort()}`;
      const opened = await openDirectory(connectionTo(server, { urls: [dead, server.url] }));
      assert.ok(opened.ok);
      try {
        assert.equal(opened.session.url, server.url);
        assert.deepEqual(
          opened.attempts.map((attempt) => [attempt.url, attempt.error.kind]),
          [[dead, "refused"]],
        );
        assert.equal(await opened.session.count(server.baseDn, GENERATED, "sub"), USERS);
      } finally {
        await opened.session.close();
      }
    });

    test("names the failing URL when every URL fails", async () => {
      const urls = [`ldap://127.0.0.1:${await closedPort()}`, "ldap://host.invalid:389"];
      const opened = await openDirectory(connectionTo(server, { urls }));
      assert.equal(opened.ok, false);
      if (opened.ok) return;
      assert.equal(opened.attempts.length, 2);
      assert.equal(opened.error.kind, "dns");
      assert.ok(opened.error.message.startsWith("ldap://host.invalid:389: "));
    });

    describe("a server that accepts connections and never answers", () => {
      let silent: net.Server;
      let url: string;

      before(async () => {
        // Reads and discards, so that it notices when the client hangs up.
        silent = net.createServer((socket) => socket.resume());
        await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
        url = `ldap://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      });

      after(async () => {
        await new Promise((resolve) => silent.close(resolve));
      });

      test("times out at the bind step after the operation timeout", async () => {
        const started = performance.now();
        const opened = await openDirectory(connectionTo(server, { urls: [url], operationTimeoutMs: 300 }));
        assert.equal(opened.ok, false);
        if (opened.ok) return;
        assert.equal(opened.step, "bind");
        assert.equal(opened.error.kind, "timeout");
        assert.ok(performance.now() - started < 2000);
      });

      test("times out at connect when the TLS handshake never completes", async () => {
        const ldaps = url.replace("ldap://", "ldaps://");
        const opened = await openDirectory(connectionTo(server, { urls: [ldaps], connectTimeoutMs: 300 }));
        assert.equal(opened.ok, false);
        if (opened.ok) return;
        assert.equal(opened.step, "connect");
        assert.equal(opened.error.kind, "timeout");
        assert.match(opened.error.detail, /within 300 ms/);
      });
    });

    describe("a server whose search answers can't be read", () => {
      const servers: net.Server[] = [];
      const isProtocolError = (err: unknown) =>
        err instanceof DirectoryError && err.classified.kind === "protocol";

      async function fakeServer(answer: (messageId: number) => Buffer): Promise<string> {
        const fake = net.createServer((socket) => answerSearches(socket, answer));
        servers.push(fake);
        await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
        return `ldap://127.0.0.1:${(fake.address() as net.AddressInfo).port}`;
      }

      after(async () => {
        for (const fake of servers) await new Promise((resolve) => fake.close(resolve));
      });

      test("lengths that overrun the entry: the search fails (paged or not) and the process lives on", async () => {
        // ldapts 8 alone loops on this answer until the process runs out of memory.
        const url = await fakeServer((id) =>
          Buffer.concat([overrunningEntry(id), resultMessage(id, SEARCH_RESULT_DONE)]),
        );
        const opened = await openDirectory(connectionTo(server, { urls: [url], operationTimeoutMs: 2000 }));
        assert.ok(opened.ok, opened.ok ? "" : opened.error.detail);
        try {
          await assert.rejects(
            collect(opened.session.searchPages(server.baseDn, "(uid=*)", "sub", ["uid"])),
            isProtocolError,
          );
          await assert.rejects(opened.session.readEntry(server.baseDn, ["member"]), isProtocolError);
        } finally {
          await opened.session.close();
        }
      });

      test("a message claiming a gigabyte: the search fails at once, nothing is buffered", async () => {
        const url = await fakeServer(() => Buffer.from([0x30, 0x84, 0x40, 0, 0, 0, 0x02, 0x01]));
        const opened = await openDirectory(connectionTo(server, { urls: [url], operationTimeoutMs: 5000 }));
        assert.ok(opened.ok, opened.ok ? "" : opened.error.detail);
        try {
          const started = performance.now();
          await assert.rejects(
            collect(opened.session.searchPages(server.baseDn, "(uid=*)", "sub", ["uid"])),
            (err: unknown) =>
              isProtocolError(err) &&
              /1,073,741,830 bytes, more than Roster reads/.test((err as Error).message),
          );
          assert.ok(performance.now() - started < 2500, "failed before the operation timeout");
        } finally {
          await opened.session.close();
        }
      });
    });

    test("rejects a URL that is not ldap:// or ldaps://", async () => {
      const opened = await openDirectory(connectionTo(server, { urls: ["http://127.0.0.1:80"] }));
      assert.equal(opened.ok, false);
      assert.match(opened.ok ? "" : opened.error.message, /is not an LDAP URL/);
    });
  });
});

/** A fake LDAP server on `socket`: binds succeed; every search is answered with `answer(messageId)`. */
function answerSearches(socket: net.Socket, answer: (messageId: number) => Buffer): void {
  let held = Buffer.alloc(0);
  socket.on("error", () => {});
  socket.on("data", (chunk) => {
    held = Buffer.concat([held, chunk]);
    for (;;) {
      const size = berElementSize(held);
      if (size === null || size < 0 || held.length < size) return;
      const message = held.subarray(0, size);
      held = held.subarray(size);
      // 30 L 02 L <id> <operation>
      const first = message[1] as number;
      const at = 2 + (first & 0x80 ? first & 0x7f : 0);
      const idLength = message[at + 1] as number;
      const messageId = message.readUIntBE(at + 2, idLength);
      const operation = message[at + 2 + idLength];
      if (operation === 0x60) socket.write(resultMessage(messageId, BIND_RESPONSE));
      else if (operation === 0x63) socket.write(answer(messageId));
    }
  });
}
