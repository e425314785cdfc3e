import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { Client } from "ldapts";
import supertest from "supertest";
import { importRuns, users } from "../../src/db/schema.ts";
import type { SlapdServer } from "../../src/dev/slapd.ts";
import { nameKey, userSearchText } from "../../src/services/names.ts";
import {
  createTestApp,
  createUser,
  csrfTokenOf,
  serve,
  signedInAgent,
  type TestApp,
} from "../helpers/app.ts";
import { asFragment, postForm, text } from "../helpers/http.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import {
  addDirectory,
  closeImportTestBed,
  type ImportFixture,
  type ImportTestBed,
  openImportTestBed,
  rowsOf,
  stableIdOf,
} from "./import-support.ts";

let bed: ImportTestBed;
let t: TestApp;
let server: SlapdServer;
let fixture: ImportFixture;
let directoryId: number;
let otherDirectoryId: number;
let adminId: number;

const skip = skipWithoutSlapd;

before(async () => {
  if (skip) return;
  bed = await openImportTestBed();
  ({ t, server, fixture, adminId, directoryId } = bed);
  await createUser(t.db, { username: "manager", role: "user_manager" });
  await createUser(t.db, { username: "viewer", role: "viewer" });
  await createUser(t.db, { username: "nobody" });
  otherDirectoryId = (
    await addDirectory(t.db, t.config.encryptionKey, server, { name: "Other LDAP", position: 2 })
  ).id;
  await prepareStore();
});
after(() => closeImportTestBed(bed));

/** What Roster holds before the searches: one user for each status the results can show. */
async function prepareStore() {
  const external = (
    username: string,
    fields: { fullName: string; email: string; dn: string },
    dirId = directoryId,
  ) => ({
    kind: "external" as const,
    username,
    usernameKey: nameKey(username),
    fullName: fields.fullName,
    email: fields.email,
    searchText: userSearchText(username, fields.fullName, fields.email),
    directoryId: dirId,
    externalId: stableIdOf(fields.dn),
    dn: fields.dn,
  });
  await createUser(t.db, { username: "alpha", fullName: "Old Name" });
  await t.db.insert(users).values([
    external("bravo", {
      fullName: "Bravo Cycle",
      email: "bravo@example.test",
      dn: "uid=bravo,ou=people,dc=example,dc=test",
    }),
    external("leepark", {
      fullName: "Lee+Park",
      email: "old@example.test",
      dn: "cn=Lee\\+Park,ou=people,dc=example,dc=test",
    }),
    {
      ...external(
        "charlie",
        { fullName: "Charlie", email: "", dn: "uid=charlie,ou=elsewhere,dc=example,dc=test" },
        otherDirectoryId,
      ),
      externalId: "another-id",
    },
  ]);
}

const url = (params: Record<string, string>) =>
  `/imports/new?${new URLSearchParams({ directory: String(directoryId), ...params })}`;

async function search(params: Record<string, string>) {
  const { agent } = await signedInAgent(t.app, "admin");
  return agent.get(url(params));
}

describe("the import search page", { skip }, () => {
  test("anonymous visitors are sent to sign in, and htmx requests get HX-Redirect", async () => {
    for (const path of [
      "/imports/new",
      "/imports",
      "/imports/1",
      `/settings/directories/${directoryId}/imports`,
    ]) {
      const res = await supertest(t.app).get(path).expect(303);
      assert.equal(res.headers.location, `/login?returnTo=${encodeURIComponent(path)}`);
    }
    const res = await asFragment(supertest(t.app).get(url({ q: "alpha" })), "section#import-search");
    assert.equal(res.status, 401);
    assert.match(res.headers["hx-redirect"] ?? "", /^\/login\?returnTo=/);
  });

  for (const username of ["viewer", "nobody"]) {
    test(`${username} (no user-management permission) gets 403 and no results`, async () => {
      const { agent } = await signedInAgent(t.app, username);
      for (const path of [url({ q: "alpha" }), "/imports", `/settings/directories/${directoryId}/imports`]) {
        const res = await agent.get(path);
        assert.equal(res.status, 403, path);
        assert.doesNotMatch(res.text, /alpha@example\.test|import-form/);
      }
    });
  }

  test("a user manager can open it; the page explains what to type", async () => {
    const { agent } = await signedInAgent(t.app, "manager");
    const res = await agent.get("/imports/new").expect(200);
    assert.match(res.text, /<h1>Import users &amp; groups<\/h1>/);
    assert.match(res.text, /<select id="field-directory" name="directory">/, "two directories: a choice");
    assert.match(res.text, /Choose a directory/);
    assert.match(text(res.text), /\* is a wildcard/);
  });

  test("the Users list and each directory in Settings lead to the import", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    assert.match(
      (await agent.get("/users").expect(200)).text,
      /<a class="button secondary" href="\/imports\/new">Import users &amp; groups<\/a>/,
    );
    const list = await agent.get("/settings/directories").expect(200);
    assert.match(
      list.text,
      new RegExp(
        `<a href="/imports/new\\?directory=${directoryId}">Import<span class="visually-hidden"> from Example LDAP</span></a>`,
      ),
    );
    const preselected = await agent.get(`/imports/new?directory=${otherDirectoryId}`).expect(200);
    assert.match(
      preselected.text,
      new RegExp(`<option value="${otherDirectoryId}" selected>Other LDAP</option>`),
    );
  });

  test("a search answers with the whole page, or only the region for htmx", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const full = await agent.get(url({ q: "alpha", kind: "users" })).expect(200);
    assert.match(full.text, /^<!doctype html>/);
    assert.match(full.text, /<section id="import-search"/);
    assert.match(full.headers.vary ?? "", /HX-Request/);
    const partial = await asFragment(
      agent.get(url({ q: "alpha", kind: "users" })),
      "section#import-search",
    ).expect(200);
    assert.match(partial.text, /^\s*<section id="import-search"/);
    assert.doesNotMatch(partial.text, /<html|<header|<h1>/);
    assert.deepEqual(
      rowsOf(partial.text).map((r) => r.name),
      ["alpha"],
    );
  });

  test("finds users by username, part of a full name or email, ignoring case", async () => {
    const names = async (q: string) => rowsOf((await search({ q, kind: "users" })).text).map((r) => r.name);
    assert.deepEqual(await names("ALPHA"), ["alpha"]);
    assert.deepEqual(await names("o'brien"), ["sobrien"]);
    assert.deepEqual(await names("leepark@example"), ["leepark"]);
    assert.deepEqual((await names("cycle")).sort(), ["alpha", "bravo", "charlie"]);
  });

  test("a search that finds nothing offers nothing to import or to copy roles from", async () => {
    const res = await search({ q: "nobody-is-called-this", kind: "both" });
    assert.equal(res.status, 200);
    assert.match(text(res.text), /0 matches .* Nothing in the directory matches this search\./);
    assert.doesNotMatch(res.text, /Import selected|id="import-submit"/);
    assert.doesNotMatch(res.text, /Copy roles|name="copyFrom"/);
    assert.doesNotMatch(res.text, /Select all|Nothing selected yet/);
    // With results, both are there.
    const found = await search({ q: "alpha", kind: "users" });
    assert.match(found.text, /id="import-submit"/);
    assert.match(found.text, /Copy roles and assignments/);
  });

  test("finds groups by name, with their member counts", async () => {
    const res = await search({ q: "cycle-", kind: "groups" });
    const rows = rowsOf(res.text);
    assert.deepEqual(
      rows.map((r) => r.name),
      ["cycle-a", "cycle-b", "cycle-c"],
    );
    assert.match(
      text(res.text),
      /cycle-a Group 2 members cn=cycle-a, ou=groups, dc=example, dc=test New Creates an external group/,
    );
    const big = await search({ q: "everyone", kind: "groups" });
    assert.match(
      text(big.text),
      /everyone Group 2,500 members .* New/,
      "the member count of a 2,500-member group",
    );
  });

  test("* is a wildcard; users and groups both come back", async () => {
    const rows = rowsOf((await search({ q: "cycle-*", kind: "both" })).text);
    assert.deepEqual(
      rows.map((r) => r.name),
      ["cycle-a", "cycle-b", "cycle-c"],
    );
    const prefix = rowsOf((await search({ q: "b*o", kind: "users" })).text).map((r) => r.name);
    assert.ok(prefix.includes("bravo"));
  });

  test("a raw LDAP filter is combined with the directory's user or group filter", async () => {
    const users = rowsOf((await search({ q: "(|(uid=alpha)(cn=cycle-a))", kind: "both" })).text);
    assert.deepEqual(
      users.map((r) => `${r.key.split(":")[0]} ${r.name}`),
      ["user alpha", "group cycle-a"],
    );
    const groupsOnly = await search({ q: "(cn=cycle-a)", kind: "users" });
    assert.match(text(groupsOnly.text), /0 matches/, "a group is not returned as a user");
    const everyone = await search({ q: "(objectClass=*)", kind: "users" });
    assert.doesNotMatch(text(everyone.text), /roster-svc/, "the service account is not a user");
  });

  test("a malformed filter is refused with 422 and a message that points at the problem", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent.get(url({ q: "(&(uid=alpha)(cn=x)", kind: "users" })).expect(422);
    assert.match(res.text, /class="error-summary"/);
    assert.match(
      res.text,
      /<a href="#field-q">The LDAP filter is not valid: Unbalanced parenthesis: this &#39;\(&#39; is never closed at position 1\.<\/a>/,
    );
    assert.match(res.text, /id="field-q-error"/);
    assert.match(res.text, /aria-describedby="field-q-hint field-q-error"/);
    assert.match(res.text, /value="\(&amp;\(uid=alpha\)\(cn=x\)"/, "the filter typed is kept");
    const partial = await asFragment(
      agent.get(url({ q: "(uid=a\\zz)", kind: "users" })),
      "section#import-search",
    ).expect(422);
    assert.match(partial.text, /^\s*<section id="import-search"/);
    assert.match(text(partial.text), /Invalid escape: .* at position 7\./);
  });

  test("filter metacharacters typed in the box are matched literally, never as filter syntax", async () => {
    assert.deepEqual(
      rowsOf((await search({ q: "Paren(s)\\Back", kind: "users" })).text).map((r) => r.name),
      ["meta"],
    );
    const injection = await search({ q: "x)(uid=*", kind: "users" });
    assert.match(text(injection.text), /0 matches/);
  });

  test("non-ASCII text finds Unicode names, whatever the normalization form", async () => {
    const names = async (q: string) => rowsOf((await search({ q, kind: "users" })).text).map((r) => r.name);
    assert.deepEqual(await names("đorđe"), ["đorđe"]);
    assert.deepEqual(await names("李小龙"), ["李小龙"]);
    assert.deepEqual(await names("balašević"), ["đorđe"]);
    // The entry's uid is written decomposed (zoe + U+0308); typed precomposed, it is found and shown NFC.
    assert.ok((await names("Zoë")).includes("zoë"));
  });

  test("counts every match past the server's 1,000-entry limit and pages through them", async () => {
    // contractor1 lives in ou=contractors, outside the directory's user base.
    const people = (fixture.ldif.match(/^objectClass: inetOrgPerson$/gm) ?? []).length - 1;
    assert.ok(people > 2500);
    const first = await search({ q: "*", kind: "users" });
    assert.match(text(first.text), new RegExp(`${people.toLocaleString("en-US")} matches`));
    assert.match(text(first.text), /showing 1–50/);
    assert.equal(rowsOf(first.text).length, 50);
    const pages = Math.ceil(people / 50);
    const last = await search({ q: "*", kind: "users", page: String(pages) });
    assert.equal(rowsOf(last.text).length, people - (pages - 1) * 50);
    assert.match(text(last.text), new RegExp(`Page ${pages} of ${pages}`));
    const names = new Set([...rowsOf(first.text), ...rowsOf(last.text)].map((r) => r.name));
    assert.equal(names.size, 50 + people - (pages - 1) * 50, "pages do not overlap");
  });

  test("each row says what importing it would do compared with Roster's store", async () => {
    const rows = rowsOf(
      (await search({ q: "(|(uid=alpha)(uid=bravo)(uid=charlie)(uid=sobrien)(uid=leepark))", kind: "users" }))
        .text,
    );
    const status = Object.fromEntries(rows.map((r) => [r.name, r.status]));
    assert.deepEqual(status, {
      alpha: "Update",
      bravo: "Up to date",
      charlie: "Conflict",
      sobrien: "New",
      leepark: "Update",
    });
    const page = text((await search({ q: "(|(uid=alpha)(uid=charlie)(uid=leepark))", kind: "users" })).text);
    assert.match(
      page,
      /alpha .* Update Changes full name, email/,
      "an internal user with the username is synchronized",
    );
    assert.match(page, /leepark .* Update Changes email/);
    assert.match(page, /charlie .* Conflict The username belongs to a user of the directory “Other LDAP”/);
  });

  test("two matches with one username: the second is a conflict naming the first", async () => {
    const admin = new Client({ url: server.url });
    await admin.bind(server.rootDn, server.rootPassword);
    const first = `uid=dupe,ou=people,${server.baseDn}`;
    const second = `cn=Dupe Two,ou=people,${server.baseDn}`;
    try {
      await admin.add(first, { objectClass: "inetOrgPerson", uid: "dupe", cn: "Dupe One", sn: "Dupe" });
      await admin.add(second, { objectClass: "inetOrgPerson", uid: "DUPE", cn: "Dupe Two", sn: "Dupe" });
      const res = await search({ q: "dupe", kind: "users" });
      assert.deepEqual(
        rowsOf(res.text).map((r) => r.status),
        ["New", "Conflict"],
      );
      assert.match(
        text(res.text),
        /Conflict Another entry of this directory \(uid=dupe,ou=people,dc=example,dc=test\) has the same username\./,
      );
    } finally {
      for (const dn of [first, second]) await admin.del(dn).catch(() => {});
      await admin.unbind();
    }
  });

  test("markup in directory attributes is shown as text", async () => {
    const res = await search({ q: "xss", kind: "users" });
    assert.match(res.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.doesNotMatch(res.text, /<script>alert/);
  });

  test("a search needs a directory when there are several", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const res = await agent.get("/imports/new?q=alpha").expect(422);
    assert.match(res.text, /<a href="#field-directory">Choose the directory to search\.<\/a>/);
  });

  test("an unreachable directory is reported, not a crash", async () => {
    const { agent } = await signedInAgent(t.app, "admin");
    const dead = await addDirectory(
      t.db,
      t.config.encryptionKey,
      { ...server, url: "ldap://127.0.0.1:1" },
      { name: "Dead LDAP", position: 3 },
    );
    const res = await agent.get(`/imports/new?directory=${dead.id}&q=alpha`).expect(502);
    assert.match(text(res.text), /Roster could not search Dead LDAP: The server refused the connection/);
  });
});

describe("choosing what to import", { skip }, () => {
  test("ticks survive paging without JavaScript, and unticking removes an entry", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const params = { directory: String(directoryId), kind: "users", q: "*" };
    const page1 = rowsOf((await agent.get(url({ kind: "users", q: "*" }))).text);
    const chosen = page1.slice(0, 3);
    const toPage2 = await postForm(agent, "/imports/selection", csrf, {
      ...params,
      page: "1",
      shown: page1.map((r) => r.info),
      pick: chosen.map((r) => r.key),
      goto: "2",
      copyFrom: "",
    }).expect(303);
    assert.equal(toPage2.headers.location, `${url({ kind: "users", q: "*" })}&page=2`);
    const page2 = await agent.get(toPage2.headers.location).expect(200);
    assert.match(text(page2.text), /3 entries selected/);
    const back = await agent.get(url({ kind: "users", q: "*" }));
    const checked = [...back.text.matchAll(/name="pick" value="([^"]+)" checked/g)].map((m) => m[1]);
    assert.deepEqual(
      checked,
      chosen.map((r) => r.key),
    );
    await postForm(agent, "/imports/selection", csrf, {
      ...params,
      page: "1",
      shown: page1.map((r) => r.info),
      pick: chosen.slice(1).map((r) => r.key),
      copyFrom: "",
    }).expect(303);
    assert.match(text((await agent.get(url({ kind: "users", q: "*" }))).text), /2 entries selected/);
  });

  test("selecting all on a page, all matches, and clearing, with htmx answering in place", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const params = { directory: String(directoryId), kind: "users", q: "cycle", page: "1", copyFrom: "" };
    const rows = rowsOf((await agent.get(url({ kind: "users", q: "cycle" }))).text);
    const all = await asFragment(
      postForm(agent, "/imports/selection", csrf, {
        ...params,
        shown: rows.map((r) => r.info),
        action: "select-page",
      }),
      "section#import-search",
    ).expect(200);
    assert.match(all.text, /^\s*<section id="import-search"/);
    assert.match(text(all.text), /3 entries selected/);
    assert.match(
      all.text,
      /id="selection-status" tabindex="-1" aria-live="polite"[^>]* autofocus/,
      "focus goes to the new selection status",
    );
    assert.equal(all.headers["hx-replace-url"], url({ kind: "users", q: "cycle" }));
    const matches = await asFragment(
      postForm(agent, "/imports/selection", csrf, { ...params, total: "3", action: "select-matches" }),
      "section#import-search",
    ).expect(200);
    assert.match(text(matches.text), /All 3 matches of “cycle” are selected/);
    assert.match(matches.text, /Import all 3 matches/);
    assert.equal([...matches.text.matchAll(/name="pick" value="[^"]+" checked disabled/g)].length, 3);
    const cleared = await asFragment(
      postForm(agent, "/imports/selection", csrf, { ...params, action: "clear" }),
      "section#import-search",
    ).expect(200);
    assert.match(text(cleared.text), /Nothing selected yet/);
    const paged = await asFragment(
      postForm(agent, "/imports/selection", csrf, { ...params, q: "*", goto: "3" }),
      "section#import-search",
    ).expect(200);
    assert.equal(paged.headers["hx-push-url"], `${url({ kind: "users", q: "*" })}&page=3`);
    assert.match(paged.text, /id="import-results-title" tabindex="-1" autofocus/);
  });

  test("the roles picker finds users and groups without JavaScript and keeps the choice", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const params = { directory: String(directoryId), kind: "users", q: "alpha", page: "1" };
    const found = await postForm(agent, "/imports/selection", csrf, {
      ...params,
      action: "find-source",
      copyQ: "adm",
      copyFrom: "",
    }).expect(303);
    const page = await agent.get(found.headers.location ?? "").expect(200);
    assert.match(text(page.text), /Users and groups matching “adm”/);
    assert.match(
      page.text,
      new RegExp(
        `<input id="field-copyFrom-user-${adminId}" name="copyFrom" type="radio" value="user:${adminId}">`,
      ),
    );
    await postForm(agent, "/imports/selection", csrf, {
      ...params,
      copyQ: "",
      copyFrom: `user:${adminId}`,
    }).expect(303);
    const kept = await agent.get(url({ kind: "users", q: "alpha" }));
    assert.match(
      kept.text,
      new RegExp(`value="user:${adminId}" checked`),
      "the chosen source stays listed and chosen",
    );
  });

  test("importing nothing is refused with 422 and a message", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const res = await postForm(agent, "/imports", csrf, {
      directory: String(directoryId),
      kind: "users",
      q: "alpha",
      page: "1",
      action: "clear",
      copyFrom: "",
    });
    assert.equal(res.status, 422);
    assert.match(
      res.text,
      /<a href="#field-pick">Choose at least one user or group to import, or select all matches\.<\/a>/,
    );
    // Beside the results too, not only in the summary at the top.
    assert.match(
      res.text,
      /<p class="error" id="field-pick-error"><span class="visually-hidden">Error:<\/span> Choose at least one user or group to import, or select all matches\.<\/p>/,
    );
    // With htmx (a boosted form), the address stays the search's, not /imports (the runs list).
    assert.equal(res.headers["hx-replace-url"], `/imports/new?directory=${directoryId}&kind=users&q=alpha`);
    assert.equal((await t.db.select().from(importRuns)).length, 0);
  });

  test("Import creates a queued run of the chosen entries (with the roles to copy) and goes to it", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const rows = rowsOf((await agent.get(url({ kind: "users", q: "sobrien" }))).text);
    const res = await postForm(agent, "/imports", csrf, {
      directory: String(directoryId),
      kind: "users",
      q: "sobrien",
      page: "1",
      shown: rows.map((r) => r.info),
      pick: rows.map((r) => r.key),
      copyFrom: `user:${adminId}`,
    }).expect(303);
    const id = Number(/^\/imports\/(\d+)$/.exec(res.headers.location ?? "")?.[1]);
    const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
    assert.equal(run?.status, "queued");
    assert.equal(run?.actorName, "admin");
    assert.deepEqual(run?.selection, {
      mode: "entries",
      entries: [
        {
          kind: "user",
          externalId: stableIdOf(`cn=O'Brien\\, Seán,ou=people,dc=example,dc=test`),
          dn: "cn=O'Brien\\2C Seán,ou=people,dc=example,dc=test",
          name: "sobrien",
        },
      ],
    });
    assert.deepEqual(run?.copyRolesFrom, { type: "user", id: adminId, name: "admin" });
    const next = await agent.get(url({ kind: "users", q: "sobrien" }));
    assert.match(text(next.text), /Nothing selected yet/, "the selection is used up");
  });

  test("a role source that no longer exists is refused beside its field, and no run starts without it", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const rows = rowsOf((await agent.get(url({ kind: "users", q: "sobrien" }))).text);
    const runsBefore = (await t.db.select().from(importRuns)).length;
    const res = await postForm(agent, "/imports", csrf, {
      directory: String(directoryId),
      kind: "users",
      q: "sobrien",
      page: "1",
      shown: rows.map((r) => r.info),
      pick: rows.map((r) => r.key),
      copyFrom: "group:2147483000", // chosen on the page, deleted since
    });
    assert.equal(res.status, 422);
    assert.match(
      res.text,
      /<p class="error" id="field-copyFrom-error"><span class="visually-hidden">Error:<\/span> The user or group chosen to copy roles from no longer exists\./,
    );
    assert.match(res.text, /<a href="#field-copyFrom">/);
    assert.equal((await t.db.select().from(importRuns)).length, runsBefore);
  });

  test("“Select all N matches” stores the query, not the entries", async () => {
    const { agent, csrf } = await signedInAgent(t.app, "admin");
    const params = { directory: String(directoryId), kind: "both", q: "*", page: "1", copyFrom: "" };
    await postForm(agent, "/imports/selection", csrf, {
      ...params,
      total: "2530",
      action: "select-matches",
    }).expect(303);
    const res = await postForm(agent, "/imports", csrf, params).expect(303);
    const id = Number(/(\d+)$/.exec(res.headers.location ?? "")?.[1]);
    const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, id));
    assert.deepEqual(run?.selection, { mode: "query", text: "*", kind: "both" });
    assert.equal(run?.total, 2530);
  });

  test("a browser that follows the 303 at once finds the new selection, even when the session store is slow", async () => {
    // A browser follows a redirect as soon as its headers arrive. Slow down every session write, so
    // that a redirect sent before the session is saved would show the page without the selection.
    const pool = t.database.pool;
    const slow = await createTestApp({
      config: { sessionSecret: t.config.sessionSecret, encryptionKey: t.config.encryptionKey },
      database: {
        ...t.database,
        pool: {
          async query(sql, params) {
            if (/insert into\s+"?session"?/i.test(sql)) await new Promise((done) => setTimeout(done, 300));
            return pool.query(sql, params);
          },
        },
      },
    });
    const site = await serve(slow.app);
    try {
      const cookies = new Map<string, string>();
      const go = async (path: string, form?: Record<string, string>) => {
        const res = await fetch(`${site.url}${path}`, {
          method: form ? "POST" : "GET",
          redirect: "manual",
          headers: {
            cookie: [...cookies].map(([name, value]) => `${name}=${value}`).join("; "),
            ...(form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
          },
          body: form ? new URLSearchParams(form).toString() : null,
        });
        for (const line of res.headers.getSetCookie()) {
          const [pair = ""] = line.split(";");
          const at = pair.indexOf("=");
          cookies.set(pair.slice(0, at), pair.slice(at + 1));
        }
        return res;
      };
      const login = await (await go("/login")).text();
      const signedIn = await go("/login", {
        username: "admin",
        password: "correct horse battery staple",
        _csrf: csrfTokenOf(login),
      });
      assert.equal(signedIn.status, 303);
      await signedIn.body?.cancel();
      const page = url({ kind: "both", q: "*" });
      const csrf = csrfTokenOf(await (await go(page)).text());
      const chosen = await go("/imports/selection", {
        _csrf: csrf,
        directory: String(directoryId),
        kind: "both",
        q: "*",
        page: "1",
        total: "2530",
        action: "select-matches",
      });
      assert.equal(chosen.status, 303);
      // Follow on the headers alone, before the body has ended, as a browser does.
      const next = await go(chosen.headers.get("location") ?? "");
      const html = await next.text();
      await chosen.text();
      assert.match(text(html), /All 2,530 matches of “\*” are selected/);
      assert.match(
        html,
        /id="selection-status" tabindex="-1" aria-live="polite"[^>]* autofocus/,
        "focus goes to the selection status",
      );
    } finally {
      await site.close();
      await slow.close();
    }
  });

  test("selection and import refuse anonymous visitors and users without permission", async () => {
    const anonymous = supertest.agent(t.app);
    const token = csrfTokenOf((await anonymous.get("/login")).text);
    for (const path of ["/imports/selection", "/imports", "/imports/1/cancellation"]) {
      const res = await postForm(anonymous, path, token, { directory: String(directoryId), q: "alpha" });
      assert.equal(res.status, 303, path);
      assert.equal(res.headers.location, "/login?returnTo=%2F");
    }
    const before = (await t.db.select().from(importRuns)).length;
    for (const username of ["viewer", "nobody"]) {
      const { agent, csrf } = await signedInAgent(t.app, username);
      for (const path of ["/imports/selection", "/imports", "/imports/1/cancellation"]) {
        const res = await postForm(agent, path, csrf, {
          directory: String(directoryId),
          q: "alpha",
          action: "select-matches",
        });
        assert.equal(res.status, 403, path);
      }
    }
    assert.equal((await t.db.select().from(importRuns)).length, before);
  });
});
