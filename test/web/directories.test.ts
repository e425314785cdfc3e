import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import supertest from "supertest";
import {
  auditLog,
  directories,
  directoryDefaultRoles,
  groups,
  roleAssignments,
  roles,
  users,
} from "../../src/db/schema.ts";
import { generateTestCa } from "../../src/dev/slapd.ts";
import {
  createDirectory,
  type DirectorySettings,
  listEnabledDirectories,
  loadDirectoryConnection,
  setDirectoryEnabled,
} from "../../src/services/directories.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { setLoginEnabled } from "../../src/services/users.ts";
import { createRoleUsers, createTestApp, csrfTokenOf, signedInAgent, type TestApp } from "../helpers/app.ts";
import { OPENLDAP_FORM_MAPPING } from "../helpers/console.ts";

const SERVICE_PASSWORD = "Sërvice-Pässword-7f3a";
const OTHER_PASSWORD = "Another-Secret-91c2";

let t: TestApp;
let admin: Awaited<ReturnType<typeof signedInAgent>>;
let viewerRoleId: number;

before(async () => {
  t = await createTestApp();
  await createRoleUsers(t.db);
  admin = await signedInAgent(t.app, "admin");
  const [viewer] = await t.db.select().from(roles).where(eq(roles.key, "viewer"));
  viewerRoleId = viewer?.id ?? -1;
});
after(() => t.close());

async function reset() {
  await t.db.delete(directories);
  await t.db.delete(auditLog);
}

/** A complete, valid submission of the directory form. */
function formFor(overrides: Record<string, string | string[]> = {}): Record<string, string | string[]> {
  return {
    name: "Head office",
    preset: "openldap",
    urls: "ldap://ldap1.example.test:389\nldaps://ldap2.example.test",
    connectTimeout: "5",
    operationTimeout: "10",
    pageSize: "500",
    verifyCertificate: "on",
    bindMode: "service",
    bindDn: "cn=roster,ou=services,dc=example,dc=test",
    bindPassword: SERVICE_PASSWORD,
    baseDn: "dc=example,dc=test",
    ...OPENLDAP_FORM_MAPPING,
    defaultRoleId: ["", ""],
    defaultRoleScope: ["", ""],
    ...overrides,
  };
}

function settingsFor(overrides: Partial<DirectorySettings> = {}): DirectorySettings {
  return {
    name: "Branch office",
    preset: "openldap",
    urls: ["ldap://branch.example.test"],
    startTls: false,
    caCertPem: null,
    verifyCertificate: true,
    connectTimeoutMs: 5000,
    operationTimeoutMs: 10_000,
    bindMode: "service",
    bindDn: "cn=roster,dc=branch,dc=test",
    bindPassword: SERVICE_PASSWORD,
    baseDn: "dc=branch,dc=test",
    mapping: {
      userBase: "ou=people",
      userFilter: "(objectClass=inetOrgPerson)",
      userScope: "sub",
      groupBase: "ou=groups",
      groupFilter: "(objectClass=groupOfNames)",
      groupScope: "sub",
      attrUsername: "uid",
      attrFullName: "cn",
      attrEmail: "mail",
      attrDepartment: "departmentNumber",
      attrPhone: "telephoneNumber",
      attrUniqueId: "entryUUID",
      attrGroupName: "cn",
      attrMember: "member",
      memberValues: "dn",
      pageSize: 500,
    },
    defaultRoles: [],
    ...overrides,
  };
}

const ACTOR = { id: null, name: "test" };

async function seedDirectory(overrides: Partial<DirectorySettings> = {}) {
  const outcome = await createDirectory(
    t.db,
    createSecretBox(t.config.encryptionKey),
    ACTOR,
    settingsFor(overrides),
  );
  assert.ok(outcome.ok, outcome.ok ? "" : outcome.message);
  return outcome.value;
}

function post(path: string, body: Record<string, unknown>, options: { htmx?: boolean } = {}) {
  const request = admin.agent.post(path).type("form");
  if (options.htmx) request.set("HX-Request", "true").set("HX-Request-Type", "partial");
  return request.send({ _csrf: admin.csrf, ...body });
}

function errorBeside(html: string, field: string): string {
  const match = new RegExp(`id="field-${field}-error"[^>]*>(?:<span[^>]*>Error:</span>)?\\s*([^<]*)<`).exec(
    html,
  );
  return match?.[1]?.trim() ?? "";
}

async function auditOf(action: string) {
  return t.db.select().from(auditLog).where(eq(auditLog.action, action));
}

describe("who may use Settings › Directories", () => {
  let directoryId: number;
  before(async () => {
    await reset();
    directoryId = (await seedDirectory()).id;
  });

  const pages = () => [
    "/settings/directories",
    "/settings/directories/new",
    `/settings/directories/${directoryId}`,
    `/settings/directories/${directoryId}/edit`,
    `/settings/directories/${directoryId}/delete`,
  ];

  test("anonymous visitors are sent to sign in from every page", async () => {
    for (const path of pages()) {
      const res = await supertest(t.app).get(path).expect(303);
      assert.equal(res.headers.location, `/login?returnTo=${encodeURIComponent(path)}`, path);
    }
  });

  test("an anonymous htmx request for the list gets HX-Redirect, not a swapped sign-in page", async () => {
    const res = await supertest(t.app)
      .get("/settings/directories")
      .set("HX-Request", "true")
      .set("HX-Request-Type", "partial")
      .expect(401);
    assert.equal(res.headers["hx-redirect"], "/login?returnTo=%2Fsettings%2Fdirectories");
  });

  const actions = () => [
    "/settings/directories",
    "/settings/directories/preset",
    "/settings/directories/connection-tests",
    `/settings/directories/${directoryId}`,
    `/settings/directories/${directoryId}/connection-tests`,
    `/settings/directories/${directoryId}/position`,
    `/settings/directories/${directoryId}/enabled`,
    `/settings/directories/${directoryId}/delete`,
  ];

  test("anonymous visitors' changes are refused and sent to sign in", async () => {
    const agent = supertest.agent(t.app);
    const csrf = csrfTokenOf((await agent.get("/login")).text);
    for (const path of actions()) {
      const res = await agent
        .post(path)
        .type("form")
        .send({ _csrf: csrf, ...formFor(), direction: "up" });
      assert.equal(res.status, 303, path);
      assert.match(res.headers.location ?? "", /^\/login\?returnTo=/, path);
    }
    assert.equal((await getDirectoryRow(directoryId))?.name, "Branch office", "nothing changed");
  });

  for (const username of ["viewer", "nobody"]) {
    test(`${username} (no user-management permission) gets 403 everywhere`, async () => {
      const { agent, csrf } = await signedInAgent(t.app, username);
      for (const path of pages()) {
        const res = await agent.get(path);
        assert.equal(res.status, 403, path);
        assert.match(res.text, /You don(&#39;|')t have permission to do this/);
      }
      for (const path of actions()) {
        const res = await agent
          .post(path)
          .type("form")
          .send({ _csrf: csrf, ...formFor(), direction: "up" });
        assert.equal(res.status, 403, path);
      }
      assert.ok(await getDirectoryRow(directoryId), "nothing was deleted");
    });
  }

  test("a user manager may use every page and action", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "manager");
    for (const path of pages()) {
      const expected = path === `/settings/directories/${directoryId}` ? 303 : 200;
      assert.equal((await agent.get(path)).status, expected, path);
    }
    const send = (path: string, body: Record<string, unknown>) =>
      agent
        .post(path)
        .type("form")
        .send({ _csrf: csrf, ...body });
    assert.equal((await send("/settings/directories", formFor({ name: "Made by manager" }))).status, 303);
    assert.equal((await send("/settings/directories/preset", formFor())).status, 200);
    const unsaved = formFor({ urls: "ldap://127.0.0.1:1", connectTimeout: "1" });
    assert.equal((await send("/settings/directories/connection-tests", unsaved)).status, 200);
    const base = `/settings/directories/${directoryId}`;
    assert.equal((await send(`${base}/connection-tests`, {})).status, 200);
    assert.equal((await send(`${base}/position`, { direction: "down" })).status, 303);
    assert.equal((await send(`${base}/enabled`, { enabled: "false" })).status, 303);
    const update = formFor({
      name: "Renamed by manager",
      urls: "ldap://branch.example.test",
      baseDn: "dc=branch,dc=test",
    });
    assert.equal(
      (await send(base, { ...update, bindDn: "cn=roster,dc=branch,dc=test", bindPassword: "" })).status,
      303,
    );
    assert.equal((await getDirectoryRow(directoryId))?.name, "Renamed by manager");
    assert.equal((await send(`${base}/delete`, {})).status, 303);
    assert.equal(await getDirectoryRow(directoryId), undefined);
  });
});

async function getDirectoryRow(id: number) {
  const [row] = await t.db.select().from(directories).where(eq(directories.id, id));
  return row;
}

describe("the list", () => {
  beforeEach(reset);

  test("shows each directory in sign-in order with its URL, state and the counts of its last test", async () => {
    const first = await seedDirectory({
      name: "Alpha",
      urls: ["ldaps://alpha.example.test", "ldap://alpha2.example.test"],
    });
    const second = await seedDirectory({
      name: "Beta",
      urls: ["ldap://beta.example.test"],
      baseDn: "dc=beta,dc=test",
    });
    await t.db
      .update(directories)
      .set({
        lastTestedAt: new Date("2030-01-02T03:04:00Z"),
        lastTestOk: true,
        lastUserCount: 1234,
        lastGroupCount: 1,
      })
      .where(eq(directories.id, first.id));
    await t.db.update(directories).set({ enabled: false }).where(eq(directories.id, second.id));
    const res = await admin.agent.get("/settings/directories").expect(200);
    assert.match(res.text, /^<!doctype html>/);
    const alpha = res.text.indexOf(">Alpha</a>");
    const beta = res.text.indexOf(">Beta</a>");
    assert.ok(alpha > 0 && beta > alpha, "Alpha comes before Beta");
    assert.match(res.text, /ldaps:\/\/alpha\.example\.test <span class="hint">\(\+1 failover\)<\/span>/);
    assert.match(res.text, /Works: 1,234 users, 1 group \(tested 2030-01-02 03:04 UTC\)/);
    assert.match(res.text, /Not tested yet/);
    assert.match(res.text, /state-on">Enabled<.*state-off">Disabled</s);
    assert.match(
      res.text,
      /id="move-up-\d+" name="direction" value="up" disabled>/,
      "the first can't move up",
    );
  });

  test("an htmx request for the list region gets only the region", async () => {
    await seedDirectory({ name: "Alpha" });
    const res = await admin.agent
      .get("/settings/directories")
      .set("HX-Request", "true")
      .set("HX-Request-Type", "partial")
      .expect(200);
    assert.match(res.text, /^<section id="directory-list"/);
    assert.doesNotMatch(res.text, /<html|<h1/);
    assert.match(res.text, />Alpha</);
    assert.match(res.headers.vary ?? "", /HX-Request/);
  });

  test("says when no directory is configured, and Settings links to it", async () => {
    const res = await admin.agent.get("/settings/directories").expect(200);
    assert.match(res.text, /No directory is configured yet/);
    const settings = await admin.agent.get("/settings").expect(200);
    assert.match(settings.text, /href="\/settings\/directories">Directories</);
  });

  test("answers 404 for a directory that does not exist", async () => {
    const res = await admin.agent.get("/settings/directories/999999/edit").expect(404);
    assert.match(res.text, /Directory not found/);
    await admin.agent.get("/settings/directories/abc/edit").expect(404);
    const directory = await seedDirectory();
    await admin.agent
      .get(`/settings/directories/${directory.id}`)
      .expect(303)
      .expect("location", `/settings/directories/${directory.id}/edit`);
  });
});

describe("adding a directory", () => {
  beforeEach(reset);

  test("the new form starts from the OpenLDAP preset with safe defaults", async () => {
    const res = await admin.agent.get("/settings/directories/new").expect(200);
    for (const legend of [
      "Connection",
      "Security",
      "Bind",
      "Base DN and users",
      "Groups",
      "Import defaults",
    ]) {
      assert.match(res.text, new RegExp(`<legend>${legend}</legend>`));
    }
    assert.match(
      res.text,
      /id="field-verifyCertificate" name="verifyCertificate" type="checkbox" value="on" checked/,
    );
    assert.match(res.text, /id="field-connectTimeout" name="connectTimeout" type="text" value="5"/);
    assert.match(res.text, /id="field-operationTimeout" name="operationTimeout" type="text" value="10"/);
    assert.match(res.text, /id="field-pageSize" name="pageSize" type="text" value="500"/);
    assert.match(res.text, /id="field-attrUniqueId" name="attrUniqueId" type="text" value="entryUUID"/);
    assert.match(res.text, /enctype="multipart\/form-data"/);
    assert.match(res.text, /<option value="\d+">Viewer<\/option>/, "roles that exist are offered");
    const ad = await admin.agent.get("/settings/directories/new?preset=active_directory").expect(200);
    assert.match(ad.text, /id="field-attrUsername" name="attrUsername" type="text" value="sAMAccountName"/);
  });

  test("saves it with the password encrypted, its default roles, and an audit entry without secrets", async () => {
    const res = await post(
      "/settings/directories",
      formFor({
        defaultRoleId: [String(viewerRoleId), String(viewerRoleId), ""],
        defaultRoleScope: ["", "project:42", ""],
      }),
    ).expect(303);
    assert.equal(res.headers.location, "/settings/directories");
    const list = await admin.agent.get("/settings/directories").expect(200);
    assert.match(list.text, /Added the directory “Head office”/);
    const [row] = await t.db.select().from(directories);
    assert.ok(row);
    assert.deepEqual(row.urls, ["ldap://ldap1.example.test:389", "ldaps://ldap2.example.test"]);
    assert.equal(row.bindDn, "cn=roster,ou=services,dc=example,dc=test");
    assert.ok(row.bindPasswordEncrypted?.startsWith("v1:"));
    assert.ok(!row.bindPasswordEncrypted?.includes(SERVICE_PASSWORD));
    assert.equal(row.connectTimeoutMs, 5000);
    assert.equal(row.operationTimeoutMs, 10_000);
    assert.equal(row.verifyCertificate, true);
    assert.equal(row.startTls, false);
    assert.equal(row.position, 1);
    const loaded = await loadDirectoryConnection(t.db, createSecretBox(t.config.encryptionKey), row.id);
    assert.equal(loaded?.connection.bindPassword, SERVICE_PASSWORD);
    assert.equal(loaded?.mapping.userFilter, "(objectClass=inetOrgPerson)");
    const defaults = await t.db
      .select()
      .from(directoryDefaultRoles)
      .where(eq(directoryDefaultRoles.directoryId, row.id));
    assert.deepEqual(defaults.map((d) => [d.roleId, d.scope]).sort(), [
      [viewerRoleId, ""],
      [viewerRoleId, "project:42"],
    ]);
    const [entry] = await auditOf("directory.create");
    assert.equal(entry?.targetName, "Head office");
    assert.equal(entry?.actorName, "admin");
    const details = JSON.stringify(entry?.details);
    assert.match(details, /"bindPasswordSet":true/);
    assert.match(details, /"defaultRoles":\["Viewer","Viewer @ project:42"\]/);
    assert.doesNotMatch(details, new RegExp(SERVICE_PASSWORD));
    assert.doesNotMatch(details, /v1:/);
  });

  test("re-renders with 422, the messages beside the fields, the values kept and the password not", async () => {
    const res = await post(
      "/settings/directories",
      formFor({
        name: "",
        urls: "ldap://good.example.test\nhttp://bad.example.test",
        connectTimeout: "0",
        operationTimeout: "ten",
        pageSize: "5000",
        bindDn: "cn=roster,,dc=example",
        baseDn: "dc=example,dc=test",
        userBase: "people",
        userFilter: "(&(objectClass=person)(uid=a)",
        groupFilter: "objectClass=groupOfNames)",
        attrEmail: "mail address",
        caCertPem: "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----",
      }),
    ).expect(422);
    assert.match(res.text, /^<!doctype html>/);
    assert.match(res.text, /There is a problem/);
    assert.equal(errorBeside(res.text, "name"), "Enter a name for the directory, like “Head office AD”.");
    assert.equal(
      errorBeside(res.text, "urls"),
      "“http://bad.example.test” must start with ldap:// or ldaps://.",
    );
    assert.equal(errorBeside(res.text, "connectTimeout"), "Enter a whole number of seconds from 1 to 120.");
    assert.equal(errorBeside(res.text, "operationTimeout"), "Enter a whole number of seconds from 1 to 600.");
    assert.equal(errorBeside(res.text, "pageSize"), "Enter a whole number from 1 to 1000.");
    assert.match(
      errorBeside(res.text, "bindDn"),
      /^This is not a valid DN: .* at position \d+\. Write it like cn=roster,ou=services,dc=example,dc=com\.$/,
    );
    assert.match(errorBeside(res.text, "userBase"), /^This is not a valid DN: /);
    assert.match(
      errorBeside(res.text, "userFilter"),
      /^This is not a valid LDAP filter: Unbalanced parenthesis/,
    );
    assert.match(errorBeside(res.text, "groupFilter"), /^This is not a valid LDAP filter: /);
    assert.match(errorBeside(res.text, "attrEmail"), /^Enter an attribute name, like uid/);
    assert.equal(
      errorBeside(res.text, "caCertPem"),
      "The certificate could not be read: check that it was copied completely.",
    );
    assert.equal(errorBeside(res.text, "baseDn"), "", "a valid field has no message");
    assert.match(res.text, /aria-describedby="field-urls-hint field-urls-error" aria-invalid="true"/);
    assert.match(res.text, /<a href="#field-urls">/, "the summary links to the field");
    assert.match(res.text, />ldap:\/\/good\.example\.test\nhttp:\/\/bad\.example\.test<\/textarea>/);
    assert.match(res.text, /value="ten"/);
    assert.match(res.text, /value="\(&amp;\(objectClass=person\)\(uid=a\)"/);
    assert.doesNotMatch(res.text, new RegExp(SERVICE_PASSWORD));
    assert.match(
      res.text,
      /Kept — the password you typed is held, encrypted, for this form and never sent back/,
    );
    assert.equal((await t.db.select().from(directories)).length, 0);
  });

  test("an htmx request gets the form alone, with its errors", async () => {
    const res = await post("/settings/directories", formFor({ baseDn: "" }), { htmx: true }).expect(422);
    assert.match(res.text, /^<form id="directory-form"/);
    assert.doesNotMatch(res.text, /<html|<h1/);
    assert.equal(errorBeside(res.text, "baseDn"), "Enter the base DN, like dc=example,dc=com.");
  });

  test("rejects a server listed twice, and a server and base DN another directory already reads", async () => {
    const twice = await post(
      "/settings/directories",
      formFor({ urls: "ldap://A.example.test\nldap://a.example.test:389/" }),
    ).expect(422);
    assert.equal(
      errorBeside(twice.text, "urls"),
      "ldap://a.example.test:389 is listed twice: give each server once.",
    );
    await seedDirectory({
      name: "Existing",
      urls: ["ldap://shared.example.test"],
      baseDn: "DC=Example, DC=Test",
    });
    const taken = await post(
      "/settings/directories",
      formFor({ urls: "ldap://shared.example.test:389" }),
    ).expect(422);
    assert.equal(
      errorBeside(taken.text, "urls"),
      "ldap://shared.example.test is already used by the directory “Existing” with the same base DN. Edit that directory instead.",
    );
    await post(
      "/settings/directories",
      formFor({ name: "Other tree", urls: "ldap://shared.example.test", baseDn: "dc=other,dc=test" }),
    ).expect(303);
    const sameName = await post(
      "/settings/directories",
      formFor({ name: "existing", urls: "ldap://x.example.test" }),
    ).expect(422);
    assert.equal(errorBeside(sameName.text, "name"), "Another directory already has this name.");
  });

  test("rejects URLs with a path, no host, or too many of them", async () => {
    const path = await post(
      "/settings/directories",
      formFor({ urls: "ldap://ldap.example.test/dc=example,dc=test" }),
    ).expect(422);
    assert.match(errorBeside(path.text, "urls"), /has more than a scheme, host and port/);
    const noHost = await post("/settings/directories", formFor({ urls: "ldap://" })).expect(422);
    assert.match(errorBeside(noHost.text, "urls"), /(no host name|not a valid URL)/);
    const none = await post("/settings/directories", formFor({ urls: "  " })).expect(422);
    assert.equal(
      errorBeside(none.text, "urls"),
      "Enter at least one server URL, like ldaps://ldap.example.com:636.",
    );
  });

  test("asks for a bind DN and a password for a service account, and for neither when anonymous", async () => {
    const missing = await post("/settings/directories", formFor({ bindDn: "", bindPassword: "" })).expect(
      422,
    );
    assert.equal(
      errorBeside(missing.text, "bindDn"),
      "Enter the bind DN or user name of the service account.",
    );
    const noPassword = await post("/settings/directories", formFor({ bindPassword: "" })).expect(422);
    assert.equal(errorBeside(noPassword.text, "bindPassword"), "Enter the service account&#39;s password.");
    await post(
      "/settings/directories",
      formFor({ bindMode: "anonymous", bindDn: "ignored", bindPassword: "ignored" }),
    ).expect(303);
    const [row] = await t.db.select().from(directories);
    assert.equal(row?.bindDn, null);
    assert.equal(row?.bindPasswordEncrypted, null);
  });

  test("takes a bind DN, a userPrincipalName or DOMAIN\\name, and refuses anything else beside the field", async () => {
    for (const bindDn of ["svc-roster@example.test", "EXAMPLE\\svc-roster"]) {
      await reset();
      await post("/settings/directories", formFor({ bindDn })).expect(303);
      const [row] = await t.db.select().from(directories);
      assert.equal(row?.bindDn, bindDn);
    }
    const cases: [string, RegExp][] = [
      ["svc roster", /^“svc roster” is not a DN or a user name\. Write a DN, like cn=roster,/],
      ["svc@roster@example.test", /is not a DN or a user name\./],
      ["EXAMPLE\\", /is not a DN or a user name\./],
      [
        "cn=roster,,dc=example",
        /^This is not a valid DN: .*\. Write it like cn=roster,ou=services,dc=example,dc=com\.$/,
      ],
    ];
    for (const [bindDn, message] of cases) {
      const res = await post("/settings/directories", formFor({ name: "Other", bindDn })).expect(422);
      assert.match(errorBeside(res.text, "bindDn"), message, bindDn);
    }
  });

  test("labels the bind field for Active Directory's user names, with examples of bind names", async () => {
    const ad = await admin.agent.get("/settings/directories/new?preset=active_directory").expect(200);
    assert.match(ad.text, /<label for="field-bindDn">Bind DN or user name<\/label>/);
    const adHint = /id="field-bindDn-hint">([^<]*)</.exec(ad.text)?.[1] ?? "";
    assert.match(
      adHint,
      /like roster@example\.com or EXAMPLE\\roster, or its DN, like CN=Roster,OU=Service Accounts,/,
    );
    const openldap = await admin.agent.get("/settings/directories/new").expect(200);
    assert.match(openldap.text, /<label for="field-bindDn">Bind DN<\/label>/);
    const hint = /id="field-bindDn-hint">([^<]*)</.exec(openldap.text)?.[1] ?? "";
    assert.match(hint, /The service account(&#39;|')s DN, like cn=roster,ou=services,dc=example,dc=com\./);
    assert.doesNotMatch(hint, /like dc=example,dc=com/, "a bind name, not a base DN");
  });

  test("takes the CA certificate pasted or uploaded as a file, and rejects a key or an expired one", async () => {
    const ca = await generateTestCa("Uploaded CA");
    const res = await admin.agent
      .post("/settings/directories")
      .field({ _csrf: admin.csrf, ...flatFields(formFor({ caCertPem: "" })) })
      .attach("caCertFile", Buffer.from(ca.certPem), {
        filename: "ca.pem",
        contentType: "application/x-pem-file",
      });
    assert.equal(res.status, 303, res.text.slice(0, 500));
    const [row] = await t.db.select().from(directories);
    assert.equal(row?.caCertPem?.trim(), ca.certPem.trim());
    const key = await post(
      "/settings/directories",
      formFor({ name: "Keyed", caCertPem: ca.keyPem, urls: "ldap://k.example.test" }),
    ).expect(422);
    assert.match(errorBeside(key.text, "caCertPem"), /contains a private key/);
    assert.doesNotMatch(key.text, /BEGIN PRIVATE KEY[\s\S]*<\/textarea>/, "");
    const plain = await post(
      "/settings/directories",
      formFor({ name: "Text", caCertPem: "hello", urls: "ldap://t.example.test" }),
    ).expect(422);
    assert.match(errorBeside(plain.text, "caCertPem"), /^Give the certificate in PEM form/);
    const expired = await post(
      "/settings/directories",
      formFor({ name: "Old", caCertPem: await expiredCertificatePem(), urls: "ldap://o.example.test" }),
    ).expect(422);
    assert.match(
      errorBeside(expired.text, "caCertPem"),
      /^The certificate \(CN=Expired CA\) expired on Jan {1,2}2 00:00:00 2020 GMT/,
    );
  });

  test("a multipart form with a wrong CSRF token is refused", async () => {
    const res = await admin.agent
      .post("/settings/directories")
      .field({ _csrf: "wrong", ...flatFields(formFor()) })
      .attach("caCertFile", Buffer.from(""), { filename: "" });
    assert.equal(res.status, 403);
    assert.equal((await t.db.select().from(directories)).length, 0);
  });

  test("shows the warning about certificate verification while it is off", async () => {
    const res = await post("/settings/directories", formFor({ verifyCertificate: [], name: "" })).expect(422);
    assert.match(
      res.text,
      /id="field-verifyCertificate" name="verifyCertificate" type="checkbox" value="on"[^>]*>/,
    );
    assert.doesNotMatch(res.text, /id="field-verifyCertificate"[^>]* checked/);
    assert.match(
      res.text,
      /class="warning verify-warning"[^>]*><strong>Warning:<\/strong> without verification/,
    );
  });

  test("refuses a default role that doesn't exist or a malformed scope", async () => {
    const res = await post(
      "/settings/directories",
      formFor({
        defaultRoleId: ["999999", String(viewerRoleId), ""],
        defaultRoleScope: ["", "not a scope", "project:1"],
      }),
    ).expect(422);
    assert.equal(errorBeside(res.text, "defaultRoleId-0"), "Choose one of the listed roles.");
    assert.match(errorBeside(res.text, "defaultRoleScope-1"), /^Write the scope as type:id/);
    assert.equal(
      errorBeside(res.text, "defaultRoleId-2"),
      "Choose a role for this scope, or clear the scope.",
    );
  });
});

/** A self-signed certificate that expired in 2020 (openssl ca is the tool that takes explicit dates). */
async function expiredCertificatePem(): Promise<string> {
  const run = promisify(execFile);
  const dir = await mkdtemp(path.join(tmpdir(), "roster-expired-"));
  try {
    await writeFile(path.join(dir, "index.txt"), "");
    await writeFile(path.join(dir, "serial"), "01\n");
    const config =
      "[ca]\ndefault_ca = test\n[test]\ndir = .\ndatabase = index.txt\nserial = serial\nnew_certs_dir = .\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n";
    await writeFile(path.join(dir, "ca.cnf"), config);
    const options = { cwd: dir };
    await run(
      "openssl",
      [
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "req.csr",
        "-subj",
        "/CN=Expired CA",
      ],
      options,
    );
    await run(
      "openssl",
      [
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-selfsign",
        "-keyfile",
        "key.pem",
        "-in",
        "req.csr",
        "-out",
        "cert.pem",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
      ],
      options,
    );
    return await readFile(path.join(dir, "cert.pem"), "utf8");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function flatFields(form: Record<string, string | string[]>): Record<string, string | string[]> {
  return Object.fromEntries(Object.entries(form).filter(([, v]) => !Array.isArray(v) || v.length > 0));
}

describe("applying a preset", () => {
  beforeEach(reset);

  test("without JavaScript: the whole form comes back with the preset's users and groups, the rest kept", async () => {
    const res = await post(
      "/settings/directories/preset",
      formFor({
        preset: "active_directory",
        name: "Corp AD",
        urls: "ldaps://dc1.corp.test",
        attrUsername: "uid",
      }),
    ).expect(200);
    assert.match(res.text, /^<!doctype html>/);
    assert.match(res.text, /Filled in Users and Groups with the usual settings for Active Directory/);
    assert.match(res.text, /name="name" type="text" value="Corp AD"/);
    assert.match(res.text, />ldaps:\/\/dc1\.corp\.test<\/textarea>/);
    assert.match(res.text, /name="bindDn" type="text" value="cn=roster,ou=services,dc=example,dc=test"/);
    assert.match(res.text, /name="attrUsername" type="text" value="sAMAccountName"/);
    assert.match(res.text, /name="attrUniqueId" type="text" value="objectGUID"/);
    assert.match(
      res.text,
      /name="userFilter" type="text" value="\(&amp;\(objectCategory=person\)\(objectClass=user\)\)"/,
    );
    assert.match(res.text, /<option value="active_directory" selected>/);
    assert.doesNotMatch(res.text, new RegExp(SERVICE_PASSWORD));
    assert.equal((await t.db.select().from(directories)).length, 0, "nothing is saved");
  });

  test("with htmx: only the users-and-groups region comes back", async () => {
    const res = await post("/settings/directories/preset", formFor({ preset: "389ds" }), {
      htmx: true,
    }).expect(200);
    assert.match(res.text, /^<div id="directory-mapping">/);
    assert.doesNotMatch(res.text, /<html|name="name"|name="bindPassword"/);
    assert.match(res.text, /name="attrMember" type="text" value="uniqueMember member memberUid"/);
    assert.match(res.text, /name="attrUniqueId" type="text" value="nsUniqueId"/);
    assert.match(res.text, /class="directory-notice" tabindex="-1" autofocus/);
    // The bind name's label follows the server type, in place, without the password field.
    assert.match(
      res.text,
      /<hx-partial hx-target="#bind-dn-field" hx-swap="outerHTML">\s*<div id="bind-dn-field">/,
    );
    assert.match(res.text, /<label for="field-bindDn">Bind DN<\/label>/);
    const ad = await post("/settings/directories/preset", formFor({ preset: "active_directory" }), {
      htmx: true,
    }).expect(200);
    assert.match(ad.text, /<label for="field-bindDn">Bind DN or user name<\/label>/);
    assert.match(ad.text, /name="bindDn" type="text" value="cn=roster,ou=services,dc=example,dc=test"/);
  });
});

describe("editing a directory", () => {
  let id: number;
  beforeEach(async () => {
    await reset();
    await post("/settings/directories", formFor()).expect(303);
    const [row] = await t.db.select().from(directories);
    id = row?.id ?? -1;
  });

  test("the form shows the password as set, never the password itself", async () => {
    const res = await admin.agent.get(`/settings/directories/${id}/edit`).expect(200);
    assert.match(res.text, /Set — leave blank to keep it\./);
    assert.match(res.text, /<input id="field-bindPassword" name="bindPassword" type="password"/);
    assert.doesNotMatch(res.text, new RegExp(SERVICE_PASSWORD));
    assert.doesNotMatch(res.text, /v1:/, "nor its ciphertext");
    assert.match(res.text, /name="directoryId" value="\d+"/);
    assert.match(res.text, /name="name" type="text" value="Head office"/);
  });

  test("saving with the password left blank keeps it; typing one replaces it", async () => {
    const [before] = await t.db.select().from(directories);
    await post(
      `/settings/directories/${id}`,
      formFor({ name: "Head office (main)", bindPassword: "" }),
    ).expect(303);
    const [kept] = await t.db.select().from(directories);
    assert.equal(kept?.name, "Head office (main)");
    assert.equal(kept?.bindPasswordEncrypted, before?.bindPasswordEncrypted);
    await post(`/settings/directories/${id}`, formFor({ bindPassword: OTHER_PASSWORD })).expect(303);
    const loaded = await loadDirectoryConnection(t.db, createSecretBox(t.config.encryptionKey), id);
    assert.equal(loaded?.connection.bindPassword, OTHER_PASSWORD);
    const updates = await auditOf("directory.update");
    assert.equal(updates.length, 2);
    assert.deepEqual((updates[0]?.details as { changes?: unknown } | undefined)?.changes, {
      name: ["Head office", "Head office (main)"],
    });
    const all = JSON.stringify(updates.map((u) => u.details));
    assert.match(all, /"bindPassword":\["\(hidden\)","changed"\]/);
    assert.doesNotMatch(all, new RegExp(`${SERVICE_PASSWORD}|${OTHER_PASSWORD}|v1:`));
  });

  test("a stored password is never reused for other servers or another account", async () => {
    const moved = await post(
      `/settings/directories/${id}`,
      formFor({ urls: "ldap://elsewhere.example.test", bindPassword: "" }),
    ).expect(422);
    assert.match(
      errorBeside(moved.text, "bindPassword"),
      /^Enter the password again: the server URLs or the bind account changed/,
    );
    const account = await post(
      `/settings/directories/${id}`,
      formFor({ bindDn: "cn=admin,dc=example,dc=test", bindPassword: "" }),
    ).expect(422);
    assert.match(errorBeside(account.text, "bindPassword"), /^Enter the password again/);
    const fewer = await post(
      `/settings/directories/${id}`,
      formFor({ urls: "LDAP://LDAP1.example.test", bindPassword: "" }),
    );
    assert.equal(fewer.status, 303, "dropping a URL or changing case is fine");
  });

  test("an invalid edit comes back as a 422 page, or as the form alone for htmx", async () => {
    const page = await post(
      `/settings/directories/${id}`,
      formFor({ bindPassword: "", userFilter: "uid=*)(" }),
    ).expect(422);
    assert.match(page.text, /^<!doctype html>/);
    assert.match(page.text, /<h1>Edit the directory “Head office”<\/h1>/);
    assert.match(errorBeside(page.text, "userFilter"), /^This is not a valid LDAP filter: /);
    assert.match(page.text, /Set — leave blank to keep it\./);
    const partial = await post(`/settings/directories/${id}`, formFor({ bindPassword: "", pageSize: "0" }), {
      htmx: true,
    }).expect(422);
    assert.match(
      partial.text,
      new RegExp(
        `^<form id="directory-form" class="directory-form" method="post" action="/settings/directories/${id}"`,
      ),
    );
    assert.equal(errorBeside(partial.text, "pageSize"), "Enter a whole number from 1 to 1000.");
    const [row] = await t.db.select().from(directories);
    assert.equal(row?.pageSize, 500, "nothing saved");
  });

  test("a stored password that can't be decrypted (the key changed) is named, and must be typed again", async () => {
    const otherKey = createSecretBox(Buffer.alloc(32, 7));
    const created = await createDirectory(t.db, otherKey, ACTOR, settingsFor({ name: "Old key" }));
    assert.ok(created.ok);
    const tested = await post(`/settings/directories/${created.value.id}/connection-tests`, {}).expect(200);
    assert.match(tested.text, /The stored password of Old key can(&#39;|')t be decrypted/);
    const [row] = await t.db.select().from(directories).where(eq(directories.id, created.value.id));
    assert.equal(row?.lastTestOk, false);
    const form = formFor({
      name: "Old key",
      urls: "ldap://branch.example.test",
      bindDn: "cn=roster,dc=branch,dc=test",
      baseDn: "dc=branch,dc=test",
      bindPassword: "",
    });
    const kept = await post(`/settings/directories/${created.value.id}`, form).expect(422);
    assert.match(errorBeside(kept.text, "bindPassword"), /can(&#39;|')t be decrypted/);
    await post(`/settings/directories/${created.value.id}`, { ...form, bindPassword: OTHER_PASSWORD }).expect(
      303,
    );
  });

  test("a stored user name keeps its password when saved again, in any case, and not for another name", async () => {
    await post(`/settings/directories/${id}`, formFor({ bindDn: "svc-roster@example.test" })).expect(303);
    const [before] = await t.db.select().from(directories);
    await post(
      `/settings/directories/${id}`,
      formFor({ bindDn: "SVC-Roster@Example.Test", bindPassword: "" }),
    ).expect(303);
    const [kept] = await t.db.select().from(directories);
    assert.equal(kept?.bindPasswordEncrypted, before?.bindPasswordEncrypted);
    const other = await post(
      `/settings/directories/${id}`,
      formFor({ bindDn: "EXAMPLE\\svc-roster", bindPassword: "" }),
    ).expect(422);
    assert.match(errorBeside(other.text, "bindPassword"), /^Enter the password again/);
  });

  test("switching to anonymous forgets the stored password", async () => {
    await post(`/settings/directories/${id}`, formFor({ bindMode: "anonymous", bindPassword: "" })).expect(
      303,
    );
    const [row] = await t.db.select().from(directories);
    assert.equal(row?.bindDn, null);
    assert.equal(row?.bindPasswordEncrypted, null);
  });

  test("the default roles can be changed and removed", async () => {
    await post(
      `/settings/directories/${id}`,
      formFor({ bindPassword: "", defaultRoleId: [String(viewerRoleId), ""], defaultRoleScope: ["", ""] }),
    ).expect(303);
    const edit = await admin.agent.get(`/settings/directories/${id}/edit`).expect(200);
    assert.match(edit.text, new RegExp(`<option value="${viewerRoleId}" selected>Viewer</option>`));
    assert.equal(
      (edit.text.match(/<legend>Default assignment \d+<\/legend>/g) ?? []).length,
      3,
      "one set, two blank",
    );
    await post(
      `/settings/directories/${id}`,
      formFor({ bindPassword: "", defaultRoleId: ["", ""], defaultRoleScope: ["", ""] }),
    ).expect(303);
    assert.equal((await t.db.select().from(directoryDefaultRoles)).length, 0);
  });
});

describe("order, enabling and disabling", () => {
  let ids: number[];
  beforeEach(async () => {
    await reset();
    ids = [];
    for (const name of ["One", "Two", "Three"]) {
      ids.push((await seedDirectory({ name, urls: [`ldap://${name.toLowerCase()}.example.test`] })).id);
    }
  });

  async function order() {
    return (await t.db.select().from(directories).orderBy(directories.position)).map((d) => d.name);
  }

  test("without JavaScript, moving redirects with a message and changes the sign-in order", async () => {
    const res = await post(`/settings/directories/${ids[2]}/position`, { direction: "up" }).expect(303);
    assert.equal(res.headers.location, "/settings/directories");
    assert.deepEqual(await order(), ["One", "Three", "Two"]);
    const list = await admin.agent.get("/settings/directories");
    assert.match(list.text, /Moved “Three” up: it is now number 2 in the sign-in order\./);
    await post(`/settings/directories/${ids[0]}/position`, { direction: "down" }).expect(303);
    assert.deepEqual(await order(), ["Three", "One", "Two"]);
    await post(`/settings/directories/${ids[1]}/position`, { direction: "down" }).expect(303);
    assert.deepEqual(await order(), ["Three", "One", "Two"], "the last stays last");
    assert.deepEqual(
      (await listEnabledDirectories(t.db)).map((d) => d.name),
      ["Three", "One", "Two"],
    );
    const moves = await auditOf("directory.move");
    assert.equal(moves.length, 2);
  });

  test("with htmx, moving answers with the list, focus kept on the moved directory's button", async () => {
    const res = await post(
      `/settings/directories/${ids[1]}/position`,
      { direction: "up" },
      { htmx: true },
    ).expect(200);
    assert.match(res.text, /^<section id="directory-list"/);
    assert.match(res.text, /role="status">Moved “Two” up: it is now number 1/);
    assert.match(
      res.text,
      new RegExp(`id="move-down-${ids[1]}" name="direction" value="down" autofocus`),
      "up is now disabled",
    );
    const down = await post(
      `/settings/directories/${ids[0]}/position`,
      { direction: "down" },
      { htmx: true },
    ).expect(200);
    assert.match(
      down.text,
      new RegExp(`id="move-up-${ids[0]}" name="direction" value="up" autofocus`),
      "now last",
    );
  });

  test("a disabled directory is skipped at sign-in but stays in the list; enabling brings it back", async () => {
    await post(`/settings/directories/${ids[1]}/enabled`, { enabled: "false" }).expect(303);
    assert.deepEqual(
      (await listEnabledDirectories(t.db)).map((d) => d.name),
      ["One", "Three"],
    );
    const list = await admin.agent.get("/settings/directories");
    assert.match(list.text, /Disabled “Two”: its users can&#39;t sign in until it is enabled again/);
    const htmx = await post(
      `/settings/directories/${ids[1]}/enabled`,
      { enabled: "true" },
      { htmx: true },
    ).expect(200);
    assert.match(htmx.text, /^<section id="directory-list"/);
    assert.match(htmx.text, new RegExp(`id="toggle-${ids[1]}" autofocus>Disable`));
    assert.deepEqual(
      (await listEnabledDirectories(t.db)).map((d) => d.name),
      ["One", "Two", "Three"],
    );
    assert.deepEqual(
      (await auditOf("directory.disable")).concat(await auditOf("directory.enable")).map((a) => a.targetName),
      ["Two", "Two"],
    );
  });

  /** ext-admin, an external user of the directory holding the Server administrator role. */
  async function addExternalAdmin(directoryId: number) {
    const [external] = await t.db
      .insert(users)
      .values({
        kind: "external",
        username: "ext-admin",
        usernameKey: "ext-admin",
        directoryId,
        externalId: "uuid-1",
      })
      .returning();
    const [adminRole] = await t.db.select().from(roles).where(eq(roles.key, "server_admin"));
    await t.db.insert(roleAssignments).values({ roleId: adminRole?.id ?? -1, userId: external?.id ?? -1 });
  }

  test("refuses to disable the directory of the only user who could sign in and manage users", async () => {
    const box = createSecretBox(t.config.encryptionKey);
    const directoryId = ids[0] ?? -1;
    await addExternalAdmin(directoryId);
    await t.db.update(users).set({ enabled: false }).where(eq(users.kind, "internal"));
    try {
      const refused = await setDirectoryEnabled(t.db, ACTOR, directoryId, false);
      assert.equal(refused.ok, false);
      assert.match(refused.ok ? "" : refused.message, /would leave nobody who can sign in and manage users/);
      assert.equal((await getDirectoryRow(directoryId))?.enabled, true);
      assert.ok(await loadDirectoryConnection(t.db, box, directoryId));
    } finally {
      await t.db.update(users).set({ enabled: true }).where(eq(users.kind, "internal"));
      await t.db.delete(users).where(eq(users.username, "ext-admin"));
    }
  });

  test("refuses to disable the last internal manager when the only other one is in a disabled directory", async () => {
    const directoryId = ids[0] ?? -1;
    await addExternalAdmin(directoryId);
    await t.db.update(directories).set({ enabled: false }).where(eq(directories.id, directoryId));
    const internal = await t.db
      .select()
      .from(users)
      .where(and(eq(users.kind, "internal"), eq(users.enabled, true)));
    try {
      const refused = await setLoginEnabled(
        t.db,
        ACTOR,
        internal.map((u) => u.id),
        false,
      );
      assert.equal(refused.ok, false);
      assert.match(refused.ok ? "" : refused.message, /would leave nobody who can sign in and manage users/);
      const still = await t.db
        .select()
        .from(users)
        .where(and(eq(users.kind, "internal"), eq(users.enabled, true)));
      assert.equal(still.length, internal.length);
    } finally {
      await t.db.update(directories).set({ enabled: true }).where(eq(directories.id, directoryId));
      await t.db.delete(users).where(eq(users.username, "ext-admin"));
    }
  });

  test("a move or a toggle of a directory deleted meanwhile answers 404", async () => {
    await t.db.delete(directories).where(eq(directories.id, ids[0] ?? -1));
    await post(`/settings/directories/${ids[0]}/position`, { direction: "up" }).expect(404);
    await post(`/settings/directories/${ids[0]}/enabled`, { enabled: "true" }).expect(404);
    await post(`/settings/directories/${ids[1]}/position`, { direction: "sideways" }).expect(400);
  });
});

describe("deleting a directory", () => {
  test("asks first, then keeps its external users disabled with their roles, and its groups", async () => {
    await reset();
    const directory = await seedDirectory({ name: "Leaving" });
    const [viewer] = await t.db.select().from(roles).where(eq(roles.key, "viewer"));
    const imported = await t.db
      .insert(users)
      .values([
        {
          kind: "external",
          username: "ext-1",
          usernameKey: "ext-1",
          directoryId: directory.id,
          externalId: "u1",
        },
        {
          kind: "external",
          username: "ext-2",
          usernameKey: "ext-2",
          directoryId: directory.id,
          externalId: "u2",
        },
      ])
      .returning();
    await t.db.insert(roleAssignments).values({ roleId: viewer?.id ?? -1, userId: imported[0]?.id ?? -1 });
    await t.db.insert(groups).values({
      kind: "external",
      name: "ext-group",
      nameKey: "ext-group",
      directoryId: directory.id,
      externalId: "g1",
    });

    const confirm = await admin.agent.get(`/settings/directories/${directory.id}/delete`).expect(200);
    assert.match(confirm.text, /Delete the directory “Leaving”\?/);
    assert.match(
      confirm.text,
      /Its 2 external users stay in Roster with their roles, but <strong>disabled<\/strong>/,
    );
    assert.match(confirm.text, /Its 1 group stay/);
    assert.match(confirm.text, new RegExp(`action="/settings/directories/${directory.id}/delete"`));

    const res = await post(`/settings/directories/${directory.id}/delete`, {}).expect(303);
    assert.equal(res.headers.location, "/settings/directories");
    const list = await admin.agent.get("/settings/directories");
    assert.match(
      list.text,
      /Deleted the directory “Leaving”\. 2 external users were disabled and keep their roles\./,
    );
    assert.equal(await getDirectoryRow(directory.id), undefined);
    const after = await t.db.select().from(users).where(eq(users.kind, "external"));
    assert.deepEqual(after.map((u) => [u.username, u.enabled, u.directoryId]).sort(), [
      ["ext-1", false, null],
      ["ext-2", false, null],
    ]);
    const kept = await t.db
      .select()
      .from(roleAssignments)
      .where(
        and(eq(roleAssignments.userId, imported[0]?.id ?? -1), eq(roleAssignments.roleId, viewer?.id ?? -1)),
      );
    assert.equal(kept.length, 1, "roles stay");
    const [group] = await t.db.select().from(groups).where(eq(groups.name, "ext-group"));
    assert.equal(group?.directoryId, null);
    const [entry] = await auditOf("directory.delete");
    assert.deepEqual(entry?.details, { usersDisabled: 2, groupsKept: 1 });
    await t.db.delete(users).where(eq(users.kind, "external"));
    await t.db.delete(groups);
  });
});

describe("secrets", () => {
  test("no service password reaches a page or a log line", async () => {
    await reset();
    const pages: string[] = [];
    pages.push((await post("/settings/directories", formFor({ name: "" }))).text);
    pages.push((await post("/settings/directories", formFor())).text);
    const [row] = await t.db.select().from(directories);
    pages.push((await admin.agent.get(`/settings/directories/${row?.id}/edit`)).text);
    pages.push((await post(`/settings/directories/${row?.id}`, formFor({ baseDn: "bad" }))).text);
    pages.push((await post("/settings/directories/preset", formFor(), { htmx: true })).text);
    pages.push((await admin.agent.get("/settings/directories")).text);
    for (const page of pages) {
      assert.doesNotMatch(page, new RegExp(SERVICE_PASSWORD));
      assert.doesNotMatch(page, /v1:[A-Za-z0-9+/=]+:/);
    }
    assert.doesNotMatch(t.logs.join(""), new RegExp(`${SERVICE_PASSWORD}|${OTHER_PASSWORD}`));
  });
});
