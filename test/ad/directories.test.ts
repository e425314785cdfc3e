/**
 * Settings › Directories against a real Active Directory (Samba AD DC): the Active Directory
 * preset, with only the URL, CA, bind account and base DN typed in, passes Test connection with
 * exact counts; referrals at the domain root are ignored; a DC that requires strong authentication
 * gets a named error, not a stack trace. Tests that restart Samba come last.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { directories } from "../../src/db/schema.ts";
import { BUILTIN_GROUP_COUNT, BUILTIN_USERS } from "../../src/dev/samba.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { asFragment } from "../helpers/http.ts";
import {
  type AdDomain,
  adConnectionFields,
  addAdDirectoryThroughSettings,
  adSkip,
  formFields,
  pageText,
  startAdDomain,
  timingsOf,
  withValues,
} from "./support.ts";

const numbers = new Intl.NumberFormat("en");

describe("Settings › Directories with Active Directory (Samba AD DC)", { skip: adSkip }, () => {
  let domain: AdDomain;
  let t: TestApp;
  let admin: Awaited<ReturnType<typeof signedInAgent>>;
  let presetForm: [string, string][];

  /** Every user and group of the domain: the fixture's and the ones every domain has. */
  const expectedCounts = () => ({
    users: domain.ad.users.length + BUILTIN_USERS.length,
    groups: domain.ad.groups.length + BUILTIN_GROUP_COUNT,
  });

  /** Test connection with the preset's form and these values typed in (saved or not). */
  function testUnsaved(typed: Record<string, string> = {}, options: { htmx?: boolean } = {}) {
    const body = withValues(presetForm, { ...adConnectionFields(domain), ...typed, _csrf: admin.csrf });
    const request = admin.agent.post("/settings/directories/connection-tests").type("form");
    if (options.htmx) asFragment(request, "#connection-test");
    return request.send(body.toString());
  }

  /** The result region's text. */
  function resultOf(html: string): string {
    const start = html.indexOf('<section id="connection-test"');
    assert.ok(start >= 0, "the page has the connection test's result region");
    return pageText(html.slice(start, html.indexOf("</section>", start)));
  }

  /** The server's own words may be shown as details; where Roster's code failed may not. */
  function assertNoStackTrace(html: string) {
    assert.doesNotMatch(html, /^\s*at \S+ \(|node_modules|\.[cm]?[jt]s:\d+/m);
  }

  before(async () => {
    [domain, t] = await Promise.all([startAdDomain({ bulkUsers: 3 }), createTestApp()]);
    await createUser(t.db, { username: "admin", role: "server_admin" });
    admin = await signedInAgent(t.app, "admin");
    const page = await admin.agent.get("/settings/directories/new?preset=active_directory").expect(200);
    presetForm = formFields(page.text, "directory-form");
  });

  after(async () => {
    await domain?.stop();
    await t?.close();
  });

  test("the Active Directory preset fills in AD's filters and attributes", async (ctx) => {
    ctx.diagnostic(timingsOf(domain));
    const preset = Object.fromEntries(presetForm);
    assert.equal(preset.preset, "active_directory");
    assert.equal(preset.userFilter, "(&(objectCategory=person)(objectClass=user))");
    assert.equal(preset.groupFilter, "(objectClass=group)");
    assert.equal(preset.attrUsername, "sAMAccountName");
    assert.equal(preset.attrUniqueId, "objectGUID");
    assert.equal(preset.attrMember, "member");
    assert.equal(preset.memberValues, "dn");
  });

  test("Test connection over LDAPS counts every user and group of the domain, referrals ignored", async () => {
    const res = await testUnsaved().expect(200);
    assert.match(res.text, /^<!doctype html>/i, "without htmx the whole page comes back");
    const text = resultOf(res.text);
    const { users, groups } = expectedCounts();
    assert.ok(
      text.startsWith(
        `The connection works Found ${numbers.format(users)} users and ${numbers.format(groups)} groups on ldaps://127.0.0.1`,
      ),
      text,
    );
    for (const step of ["Connect", "Bind", "Read the base DN", "Count users", "Count groups"]) {
      assert.match(text, new RegExp(`✓ ${step} — done in \\d+ ms\\.`), step);
    }
    // The searches at DC=example,DC=test came back with continuation references to the
    // configuration and DNS partitions: noted, not followed, not an error.
    assert.ok(
      t.logs.some((line) => line.includes("ignored search references")),
      "Samba referred to other partitions, and the referrals were ignored",
    );
    assert.equal((await t.db.select().from(directories)).length, 0, "an unsaved test stores nothing");
  });

  test("with htmx only the result region comes back", async () => {
    const res = await testUnsaved({}, { htmx: true }).expect(200);
    assert.match(res.text.trimStart(), /^<section id="connection-test"/);
    assert.match(resultOf(res.text), /^The connection works/);
  });

  test("StartTLS over ldap:// works as LDAPS does", async () => {
    const res = await testUnsaved({ urls: domain.server.ldapUrl, startTls: "on" }).expect(200);
    const text = resultOf(res.text);
    assert.match(text, /^The connection works Found [\d,]+ users and [\d,]+ groups on ldap:\/\/127\.0\.0\.1/);
    assert.match(text, /✓ StartTLS — done in \d+ ms\./);
  });

  test("a wrong service password is named, and the password is never shown", async () => {
    const res = await testUnsaved({ bindPassword: "Wrong-Passw0rd!" }).expect(200);
    const text = resultOf(res.text);
    assert.match(text, /^The connection failed: invalid credentials/);
    assert.ok(!res.text.includes("Wrong-Passw0rd!"));
    assertNoStackTrace(res.text);
  });

  test("saved as typed, the directory passes its own Test connection with the counts in the list", async () => {
    const directory = await addAdDirectoryThroughSettings(admin.agent, t.db, domain);
    assert.equal(directory.preset, "active_directory");
    assert.equal(directory.userFilter, "(&(objectCategory=person)(objectClass=user))");
    assert.equal(directory.attrUniqueId, "objectGUID");
    const res = await admin.agent
      .post(`/settings/directories/${directory.id}/connection-tests`)
      .type("form")
      .send({ _csrf: admin.csrf })
      .expect(200);
    const { users, groups } = expectedCounts();
    assert.match(resultOf(res.text), /^The connection to “Example AD” works/);
    assert.match(pageText(res.text), new RegExp(`Works: ${numbers.format(users)} users, ${groups} groups`));
    const [saved] = await t.db.select().from(directories).where(eq(directories.id, directory.id));
    assert.equal(saved?.lastTestOk, true);
    assert.equal(saved?.lastUserCount, users);
    assert.equal(saved?.lastGroupCount, groups);
  });

  describe("a domain controller that requires strong authentication (AD's default)", () => {
    before(async () => {
      await domain.server.restart({ requireStrongAuth: true });
    });

    test("a simple bind over plain ldap:// is named: use ldaps:// or StartTLS", async () => {
      const res = await testUnsaved({ urls: domain.server.ldapUrl, caCertPem: "" }).expect(200);
      const text = resultOf(res.text);
      assert.match(text, /^The connection failed: encryption required/);
      assert.match(
        text,
        /Stopped at “Bind”: this server requires TLS for password binds: use ldaps:\/\/ or StartTLS/i,
      );
      assert.match(text, /✓ Connect — done/);
      assert.match(text, /LDAP result code 8 \(strongerAuthRequired\)/);
      assertNoStackTrace(res.text);
    });

    test("the same, saved, shows the failure in the list", async () => {
      const plain = await addAdDirectoryThroughSettings(admin.agent, t.db, domain, {
        name: "Plain AD",
        urls: domain.server.ldapUrl,
        caCertPem: "",
      });
      const res = await admin.agent
        .post(`/settings/directories/${plain.id}/connection-tests`)
        .type("form")
        .send({ _csrf: admin.csrf })
        .expect(200);
      assert.match(resultOf(res.text), /^The connection to “Plain AD” failed: encryption required/);
      assert.match(resultOf(res.text), /requires TLS for password binds/i);
      assertNoStackTrace(res.text);
      const [saved] = await t.db.select().from(directories).where(eq(directories.id, plain.id));
      assert.equal(saved?.lastTestOk, false);
    });

    test("LDAPS and StartTLS still work", async () => {
      const settings: Record<string, string>[] = [{}, { urls: domain.server.ldapUrl, startTls: "on" }];
      for (const typed of settings) {
        const res = await testUnsaved(typed).expect(200);
        assert.match(resultOf(res.text), /^The connection works/, JSON.stringify(typed));
      }
    });
  });
});
