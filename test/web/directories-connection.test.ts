import assert from "node:assert/strict";
import net from "node:net";
import { after, before, beforeEach, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { auditLog, directories } from "../../src/db/schema.ts";
import { bigGroupDirectory, groupEntry, userDn } from "../../src/dev/fixtures.ts";
import { generateTestCa, type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { OPENLDAP_FORM_MAPPING } from "../helpers/console.ts";
import { closedPort, skipWithoutSlapd } from "../ldap/support.ts";

const USERS = 1200;
const WRONG_PASSWORD = "Wrong-Pässword-55e1";

describe("Test connection against slapd", { skip: skipWithoutSlapd }, () => {
  let t: TestApp;
  let admin: Awaited<ReturnType<typeof signedInAgent>>;
  let server: SlapdServer;
  let otherCaPem: string;
  let silent: net.Server;
  let silentPort: number;

  before(async () => {
    const staff = bigGroupDirectory(USERS, { cn: "staff" });
    [server, otherCaPem, t] = await Promise.all([
      // The certificate names 127.0.0.1 only: ldaps://localhost provokes a hostname mismatch.
      startSlapd({
        tls: true,
        certificateNames: { ipAddresses: ["127.0.0.1"] },
        ldif: staff.ldif + groupEntry({ cn: "admins", members: [userDn(0)] }),
      }),
      generateTestCa().then((ca) => ca.certPem),
      createTestApp(),
    ]);
    await createUser(t.db, { username: "admin", role: "server_admin" });
    admin = await signedInAgent(t.app, "admin");
    // Accepts connections and never answers: a TLS handshake with it can only time out.
    silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    silentPort = (silent.address() as net.AddressInfo).port;
  });

  after(async () => {
    silent?.close();
    await Promise.all([server?.stop(), t?.close()]);
  });

  beforeEach(async () => {
    await t.db.delete(directories);
    await t.db.delete(auditLog);
  });

  function formFor(overrides: Record<string, string> = {}): Record<string, string> {
    return {
      name: "Test slapd",
      preset: "openldap",
      urls: server.url,
      connectTimeout: "2",
      operationTimeout: "10",
      pageSize: "500",
      verifyCertificate: "on",
      bindMode: "service",
      bindDn: server.serviceDn,
      bindPassword: server.servicePassword,
      baseDn: server.baseDn,
      ...OPENLDAP_FORM_MAPPING,
      ...overrides,
    };
  }

  function testUnsaved(overrides: Record<string, string> = {}, options: { htmx?: boolean } = {}) {
    const request = admin.agent.post("/settings/directories/connection-tests").type("form");
    if (options.htmx) request.set("HX-Request", "true").set("HX-Request-Type", "partial");
    return request.send({ _csrf: admin.csrf, ...formFor(overrides) });
  }

  /** The result region's text, tags removed, whitespace collapsed. */
  function resultText(html: string): string {
    const start = html.indexOf('<section id="connection-test"');
    assert.ok(start >= 0, "the page has a result region");
    const end = html.indexOf("</section>", start);
    return html
      .slice(start, end)
      .replace(/<[^>]+>/g, " ")
      .replace(/&#39;/g, "'")
      .replace(/&quot;/g, '"')
      .replace(/\s+/g, " ")
      .trim();
  }

  test("plain LDAP: every step with its time, and counts past the 1000-entry size limit, exactly", async () => {
    const res = await testUnsaved().expect(200);
    assert.match(res.text, /^<!doctype html>/, "without htmx the whole page comes back");
    const text = resultText(res.text);
    assert.match(text, /^The connection works Found 1,200 users and 2 groups on ldap:\/\/127\.0\.0\.1:\d+\./);
    for (const step of ["Connect", "Bind", "Read the base DN", "Count users", "Count groups"]) {
      assert.match(text, new RegExp(`✓ ${step} — done in \\d+ ms\\.`), step);
    }
    assert.match(text, /Found 1,200 users under ou=people,dc=example,dc=test\./);
    assert.match(text, /Nothing was saved: the test used the values in the form\./);
    assert.match(res.text, /name="name" type="text" value="Test slapd"/, "the form keeps its values");
    assert.match(res.text, /Kept — the password you typed is held, encrypted, for this form/);
    assert.doesNotMatch(res.text, new RegExp(server.servicePassword));
    assert.equal((await t.db.select().from(directories)).length, 0, "an unsaved test stores nothing");
  });

  test("the password typed before a test is kept for that form: Add directory with the field blank uses it", async () => {
    await testUnsaved().expect(200);
    // Another account: the kept password was typed for the service account, so it is not sent.
    const other = await admin.agent
      .post("/settings/directories")
      .type("form")
      .send({ _csrf: admin.csrf, ...formFor({ bindPassword: "", bindDn: `cn=admin,${server.baseDn}` }) })
      .expect(422);
    assert.match(
      other.text,
      /Enter the service account&#39;s password\.|Enter the service account's password\./,
    );
    assert.equal((await t.db.select().from(directories)).length, 0);
    const added = await admin.agent
      .post("/settings/directories")
      .type("form")
      .send({ _csrf: admin.csrf, ...formFor({ bindPassword: "" }) })
      .expect(303);
    assert.equal(added.headers.location, "/settings/directories");
    const [saved] = await t.db.select().from(directories);
    assert.ok(saved?.bindPasswordEncrypted, "the kept password was stored with the directory");
    assert.equal(
      createSecretBox(t.config.encryptionKey).decrypt(saved.bindPasswordEncrypted),
      server.servicePassword,
    );
    // Used once: the next new form asks for it again.
    const again = await admin.agent
      .post("/settings/directories")
      .type("form")
      .send({
        _csrf: admin.csrf,
        ...formFor({ bindPassword: "", name: "Another", urls: "ldap://127.0.0.2:1" }),
      })
      .expect(422);
    assert.match(again.text, /Enter the service account/);
  });

  test("with htmx only the result region comes back", async () => {
    const res = await testUnsaved({}, { htmx: true }).expect(200);
    assert.match(res.text, /^<section id="connection-test" class="connection-test connection-test-ok"/);
    assert.doesNotMatch(res.text, /<html|<form/);
    assert.match(
      res.text,
      /<h2 id="connection-test-title" tabindex="-1" autofocus>The connection works<\/h2>/,
    );
  });

  test("StartTLS with the CA pasted in", async () => {
    const res = await testUnsaved(
      { startTls: "on", caCertPem: server.caCertPem ?? "" },
      { htmx: true },
    ).expect(200);
    const text = resultText(res.text);
    assert.match(text, /^The connection works/);
    assert.match(text, /✓ StartTLS — done in \d+ ms\. The connection is encrypted \(StartTLS\)\./);
  });

  test("LDAPS with the CA uploaded as a file", async () => {
    const res = await admin.agent
      .post("/settings/directories/connection-tests")
      .set("HX-Request", "true")
      .set("HX-Request-Type", "partial")
      .field({ _csrf: admin.csrf, ...formFor({ urls: server.ldapsUrl ?? "" }) })
      .attach("caCertFile", Buffer.from(server.caCertPem ?? ""), "ca.pem")
      .expect(200);
    assert.match(resultText(res.text), /^The connection works Found 1,200 users and 2 groups on ldaps:\/\//);
  });

  test("LDAPS with the wrong CA names the untrusted certificate", async () => {
    const res = await testUnsaved(
      { urls: server.ldapsUrl ?? "", caCertPem: otherCaPem },
      { htmx: true },
    ).expect(200);
    const text = resultText(res.text);
    assert.match(text, /^The connection failed: certificate not trusted/);
    assert.match(text, /✗ Connect — failed in \d+ ms\. The server's certificate is not trusted\./);
    assert.match(text, /Details: .*(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)/);
  });

  test("StartTLS with the wrong CA fails at the StartTLS step", async () => {
    const res = await testUnsaved({ startTls: "on", caCertPem: otherCaPem }, { htmx: true }).expect(200);
    const text = resultText(res.text);
    assert.match(text, /^The connection failed: certificate not trusted/);
    assert.match(text, /✓ Connect — done.*✗ StartTLS — failed/);
  });

  test("a certificate for another host name is named as a hostname mismatch", async () => {
    const url = (server.ldapsUrl ?? "").replace("127.0.0.1", "localhost");
    const res = await testUnsaved({ urls: url, caCertPem: server.caCertPem ?? "" }, { htmx: true }).expect(
      200,
    );
    assert.match(
      resultText(res.text),
      /^The connection failed: certificate hostname mismatch .*does not name the host/,
    );
  });

  test("a wrong password is named as invalid credentials, with LDAP result code 49", async () => {
    const res = await testUnsaved({ bindPassword: WRONG_PASSWORD }, { htmx: true }).expect(200);
    const text = resultText(res.text);
    assert.match(
      text,
      /^The connection failed: invalid credentials Stopped at “Bind”: The bind DN or password is wrong\./,
    );
    assert.match(text, /✓ Connect — done in \d+ ms.*✗ Bind — failed in \d+ ms\./);
    assert.match(text, /Details: LDAP result code 49 \(invalidCredentials\)\./);
    assert.doesNotMatch(res.text, new RegExp(WRONG_PASSWORD));
  });

  test("a base DN that does not exist is named, with LDAP result code 32", async () => {
    const res = await testUnsaved({ baseDn: "dc=missing,dc=test" }, { htmx: true }).expect(200);
    const text = resultText(res.text);
    assert.match(text, /^The connection failed: base DN or search base not found/);
    assert.match(
      text,
      /✗ Read the base DN — failed in \d+ ms\. The base DN dc=missing,dc=test does not exist/,
    );
    assert.match(text, /LDAP result code 32 \(noSuchObject\)/);
  });

  test("a closed port is named as a refused connection", async () => {
    const res = await testUnsaved({ urls: `ldap://127.0.0.1:${await closedPort()}` }, { htmx: true }).expect(
      200,
    );
    const text = resultText(res.text);
    assert.match(
      text,
      /^The connection failed: connection refused Stopped at “Connect”: The server refused the connection/,
    );
    assert.match(text, /Details: .*ECONNREFUSED/);
  });

  test("a server that never answers is named as a timeout, within the connect timeout", async () => {
    const started = Date.now();
    const res = await testUnsaved(
      { urls: `ldaps://127.0.0.1:${silentPort}`, connectTimeout: "1" },
      { htmx: true },
    ).expect(200);
    assert.match(resultText(res.text), /^The connection failed: timed out .*did not answer in time/);
    assert.ok(Date.now() - started < 5000, "gave up after about a second");
  });

  test("fails over from a dead first URL to a live second one, and says so", async () => {
    const dead = `ldap://127.0.0.1:${await closedPort()}`;
    const res = await testUnsaved({ urls: `${dead}\n${server.url}` }, { htmx: true }).expect(200);
    const text = resultText(res.text);
    assert.match(
      text,
      new RegExp(`^The connection works Found 1,200 users and 2 groups on ${server.url}\\.`),
    );
    assert.match(text, new RegExp(`${dead} failed \\(The server refused.*\\) Connected to ${server.url}\\.`));
  });

  test("invalid values are not tested: 422 with the errors, as a page or as a form replacing the old one", async () => {
    const page = await testUnsaved({ baseDn: "dc=example,,", userFilter: "(uid=a" }).expect(422);
    assert.match(page.text, /^<!doctype html>/);
    assert.match(page.text, /id="field-baseDn-error"/);
    assert.match(page.text, /id="field-userFilter-error"/);
    const result = resultText(page.text);
    assert.match(result, /^The connection was not tested Correct the form first/);
    assert.match(result, /This is not a valid DN: .* Write it like dc=example,dc=com\./);
    assert.match(result, /This is not a valid LDAP filter: /);
    assert.match(page.text, /<li><a href="#field-baseDn">This is not a valid DN/, "each links to its field");
    const partial = await testUnsaved({ baseDn: "dc=example,," }, { htmx: true }).expect(422);
    assert.match(
      partial.text,
      /^<hx-partial hx-target="#directory-form" hx-swap="outerHTML">\s*<form id="directory-form"/,
    );
    assert.match(partial.text, /There is a problem/);
    assert.match(resultText(partial.text), /^The connection was not tested .*This is not a valid DN/);
    const noName = await testUnsaved({ name: "" }, { htmx: true }).expect(200);
    assert.match(noName.text, /The connection works/, "a name is not needed to test");
  });

  test("a bind name that is no DN, UPN or DOMAIN\\name is named beside the field and in the result", async () => {
    const message =
      /^“svc roster” is not a DN or a user name\. Write a DN, like cn=roster,ou=services,dc=example,dc=com, or an Active Directory user name, like roster@example\.com or EXAMPLE\\roster\.$/;
    for (const htmx of [false, true]) {
      const res = await testUnsaved({ bindDn: "svc roster" }, { htmx }).expect(422);
      const beside = /id="field-bindDn-error"[^>]*><span[^>]*>Error:<\/span>\s*([^<]*)</.exec(res.text)?.[1];
      assert.match(beside?.replace(/&#39;/g, "'") ?? "", message);
      const result = resultText(res.text);
      assert.match(result, /^The connection was not tested /);
      assert.match(result, /“svc roster” is not a DN or a user name\./);
    }
  });

  test("a userPrincipalName or DOMAIN\\name is sent to the server as it is", async () => {
    // slapd knows no such names: it answers that the DN is invalid, which Active Directory would not.
    for (const bindDn of ["svc@example.test", "EXAMPLE\\svc"]) {
      const res = await testUnsaved({ bindDn }, { htmx: true }).expect(200);
      assert.match(resultText(res.text), /^The connection failed: invalid DN Stopped at “Bind”/, bindDn);
    }
  });

  test("a base the server lacks: the result names the trees it holds, and where its users are", async () => {
    const wrongBase = await testUnsaved({ baseDn: "dc=wrong,dc=test" }, { htmx: true }).expect(200);
    assert.match(
      resultText(wrongBase.text),
      /The base DN dc=wrong,dc=test does not exist on the server: check its spelling\. This server holds: dc=example,dc=test\. The Base DN field offers them\./,
    );
    // …and the field offers them: its list is in the region htmx swaps in.
    assert.match(
      wrongBase.text,
      /<datalist id="base-dn-choices"><option value="dc=example,dc=test"><\/option><\/datalist>/,
    );
    // A tree without the preset's ou=people (here: a user base that isn't there).
    const noPeople = await testUnsaved({ userBase: "ou=staff" }, { htmx: true }).expect(200);
    assert.match(
      resultText(noPeople.text),
      /Users of the filter \(objectClass=inetOrgPerson\) are under: ou=people,dc=example,dc=test \(1,000\+\)\. Set the user search base to one of them \(the field offers them\)\./,
    );
    assert.match(
      noPeople.text,
      /<datalist id="user-base-choices"><option value="ou=people,dc=example,dc=test"><\/option><\/datalist>/,
    );
  });

  test("a newcomer without a base DN tests the connection and is offered the server's trees", async () => {
    const res = await testUnsaved({ baseDn: "" }).expect(200);
    assert.match(
      resultText(res.text),
      /✗ Read the base DN — failed in \d+ ms\. No base DN was given: the connection and the account work, and Roster needs the tree to read\. This server holds: dc=example,dc=test\./,
    );
    assert.match(resultText(res.text), /✓ Bind — done/);
    assert.match(
      res.text,
      /<input id="field-baseDn" name="baseDn" type="text" value="" required [^>]*list="base-dn-choices">/,
    );
    assert.match(res.text, /<datalist id="base-dn-choices"><option value="dc=example,dc=test">/);
    // Saving still needs one.
    const save = await admin.agent
      .post("/settings/directories")
      .type("form")
      .send({ _csrf: admin.csrf, ...formFor({ baseDn: "" }) })
      .expect(422);
    assert.match(save.text, /Enter the base DN, like dc=example,dc=com\./);
  });

  test("the test just run on the form is the new directory's last test; one on other settings is not", async () => {
    await testUnsaved({}, { htmx: true }).expect(200);
    const added = await admin.agent
      .post("/settings/directories")
      .type("form")
      .send({ _csrf: admin.csrf, ...formFor() })
      .expect(303);
    const list = await admin.agent.get(added.headers.location ?? "/settings/directories").expect(200);
    assert.match(list.text, /Added the directory “Test slapd”\. Its last test: Works: 1,200 users, 2 groups/);
    assert.match(list.text, /<td[^>]*>Works: 1,200 users, 2 groups \(tested/);
    const [row] = await t.db.select().from(directories);
    assert.deepEqual(
      { ok: row?.lastTestOk, users: row?.lastUserCount, groups: row?.lastGroupCount },
      { ok: true, users: USERS, groups: 2 },
    );

    // Tested with one base, added with another: the test says nothing about what was added.
    await t.db.delete(directories);
    await testUnsaved({}, { htmx: true }).expect(200);
    await admin.agent
      .post("/settings/directories")
      .type("form")
      .send({ _csrf: admin.csrf, ...formFor({ userBase: "ou=nowhere" }) })
      .expect(303);
    const [other] = await t.db.select().from(directories);
    assert.equal(other?.lastTestedAt, null);
    assert.match(
      (await admin.agent.get("/settings/directories").expect(200)).text,
      /Test its connection to see what it holds|Not tested yet/,
    );
  });

  describe("a saved directory", () => {
    async function saveDirectory(overrides: Record<string, string> = {}) {
      await admin.agent
        .post("/settings/directories")
        .type("form")
        .send({ _csrf: admin.csrf, ...formFor(overrides) })
        .expect(303);
      const [row] = await t.db.select().from(directories);
      assert.ok(row);
      return row;
    }

    test("tested from the list: the result shown, the counts stored and listed, an audit entry", async () => {
      const directory = await saveDirectory();
      const page = await admin.agent
        .post(`/settings/directories/${directory.id}/connection-tests`)
        .type("form")
        .send({ _csrf: admin.csrf })
        .expect(200);
      assert.match(page.text, /^<!doctype html>/);
      assert.match(
        resultText(page.text),
        /^The connection to “Test slapd” works Found 1,200 users and 2 groups/,
      );
      assert.match(page.text, /Works: 1,200 users, 2 groups \(tested \d{4}-\d\d-\d\d \d\d:\d\d UTC\)/);
      const [row] = await t.db.select().from(directories).where(eq(directories.id, directory.id));
      assert.equal(row?.lastTestOk, true);
      assert.equal(row?.lastUserCount, USERS);
      assert.equal(row?.lastGroupCount, 2);
      assert.ok(row?.lastTestedAt && Date.now() - row.lastTestedAt.getTime() < 60_000);
      const [entry] = await t.db
        .select()
        .from(auditLog)
        .where(eq(auditLog.action, "directory.test_connection"));
      assert.deepEqual(entry?.details, { ok: true, serverUrl: server.url, users: USERS, groups: 2 });

      const partial = await admin.agent
        .post(`/settings/directories/${directory.id}/connection-tests`)
        .type("form")
        .set("HX-Request", "true")
        .set("HX-Request-Type", "partial")
        .send({ _csrf: admin.csrf })
        .expect(200);
      assert.match(partial.text, /^<section id="directory-list"/);
      assert.match(
        partial.text,
        /<section id="connection-test"[^>]*>\s*<h2 id="connection-test-title" tabindex="-1" autofocus>/,
      );
    });

    test("a failed test is stored as failed", async () => {
      const directory = await saveDirectory();
      await t.db
        .update(directories)
        .set({ urls: [`ldap://127.0.0.1:${await closedPort()}`] })
        .where(eq(directories.id, directory.id));
      const res = await admin.agent
        .post(`/settings/directories/${directory.id}/connection-tests`)
        .type("form")
        .send({ _csrf: admin.csrf })
        .expect(200);
      assert.match(resultText(res.text), /failed: connection refused/);
      assert.match(res.text, /Failed \(tested /);
      const [row] = await t.db.select().from(directories).where(eq(directories.id, directory.id));
      assert.equal(row?.lastTestOk, false);
      assert.equal(row?.lastUserCount, null);
    });

    test("testing the edit form with the password left blank uses the stored one, but only for the same servers", async () => {
      const directory = await saveDirectory();
      const kept = await testUnsaved(
        { directoryId: String(directory.id), bindPassword: "" },
        { htmx: true },
      ).expect(200);
      assert.match(resultText(kept.text), /^The connection works/);
      const moved = await testUnsaved(
        {
          directoryId: String(directory.id),
          bindPassword: "",
          urls: server.url.replace("127.0.0.1", "localhost"),
        },
        { htmx: true },
      ).expect(422);
      assert.match(moved.text, /Enter the password again: the server URLs or the bind account changed/);
      const [row] = await t.db.select().from(directories).where(eq(directories.id, directory.id));
      assert.equal(row?.lastTestedAt, null, "testing the form's values stores nothing");
    });

    test("a new directory's test without a password asks for it", async () => {
      const res = await testUnsaved({ bindPassword: "" }).expect(422);
      assert.match(
        res.text,
        /id="field-bindPassword-error"[^>]*>.*Enter the service account(&#39;|')s password\./s,
      );
    });

    test("anonymous binds can be tested too", async () => {
      const res = await testUnsaved({ bindMode: "anonymous", bindPassword: "" }, { htmx: true }).expect(200);
      const text = resultText(res.text);
      assert.match(text, /✓ Bind — done in \d+ ms\. Signed in anonymously\./);
    });
  });

  test("no password appears in any log line", async () => {
    await testUnsaved({ bindPassword: WRONG_PASSWORD }).expect(200);
    await testUnsaved().expect(200);
    const logs = t.logs.join("");
    assert.match(logs, /directory connection tested/);
    assert.doesNotMatch(logs, new RegExp(server.servicePassword));
    assert.doesNotMatch(logs, new RegExp(WRONG_PASSWORD));
  });
});
