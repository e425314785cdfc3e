import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import supertest from "supertest";
import { queryRows } from "../../src/db/client.ts";
import { users } from "../../src/db/schema.ts";
import { userSearchText } from "../../src/services/names.ts";
import {
  COUNT_LIMIT,
  DENSE_MATCHES,
  DENSE_WALK,
  decodeCursor,
  encodeCursor,
  formatCount,
  type ListQuery,
  listEntries,
} from "../../src/services/user-list.ts";
import { searchReachesEmails, userSearchCondition } from "../../src/services/user-search.ts";
import { createTestApp, createUser, signedInAgent, type TestApp } from "../helpers/app.ts";
import { insertBareUsers, makeDirectory, makeExternalUser, makeGroup } from "../helpers/console.ts";
import { asFragment, decode } from "../helpers/http.ts";

let t: TestApp;
let agent: Awaited<ReturnType<typeof signedInAgent>>["agent"];

before(async () => {
  t = await createTestApp();
  await createUser(t.db, { username: "admin", role: "server_admin" });
  await createUser(t.db, { username: "alice", fullName: "Alice Dupont" });
  await createUser(t.db, { username: "Émile", fullName: "Émile Zola" });
  await createUser(t.db, { username: "zoë", fullName: "Zoë Jansen" });
  const directory = await makeDirectory(t.db, "Corporate LDAP");
  await makeExternalUser(t.db, {
    username: "carol",
    directoryId: directory.id,
    fullName: "Carol Ångström",
    email: "carol@corp.example",
  });
  await makeExternalUser(t.db, { username: "dave", directoryId: directory.id, fullName: "Dave Dupont" });
  await makeGroup(t.db, { name: "Admins", description: "People who run things" });
  await makeGroup(t.db, {
    name: "Engineering",
    kind: "external",
    directoryId: directory.id,
    externalId: "g-eng",
    description: "Builders",
  });
  ({ agent } = await signedInAgent(t.app, "admin"));
});
after(() => t.close());

const query = (partial: Partial<ListQuery>): ListQuery => ({
  filter: "all",
  search: "",
  sort: "name",
  ...partial,
});

describe("the list of users and groups", () => {
  test("shows users and groups together, with kind, directory, sign-in status and last activity", async () => {
    const res = await agent.get("/users").expect(200);
    const text = decode(res.text);
    assert.match(text, /alice Alice Dupont Internal user — not applicable Enabled Never/);
    assert.match(text, /carol Carol Ångström carol@corp.example External user Corporate LDAP Enabled Never/);
    assert.match(text, /Engineering Builders External group Corporate LDAP — not applicable/);
    assert.match(text, /Admins People who run things Internal group/);
    assert.match(
      text,
      /admin Internal user — not applicable Enabled \d{4}-\d\d-\d\d \d\d:\d\d UTC/,
      "the admin's own activity",
    );
    assert.match(res.text, /<a href="\/groups\/\d+">Engineering<\/a>/);
  });

  test("counts each kind beside its filter", async () => {
    const res = await agent.get("/users").expect(200);
    const text = decode(res.text);
    assert.match(text, /All \(8\)/);
    assert.match(text, /Internal users \(4\)/);
    assert.match(text, /External users \(2\)/);
    assert.match(text, /Internal groups \(1\)/);
    assert.match(text, /External groups \(1\)/);
  });

  test("each filter shows only its kind, and marks itself current", async () => {
    const cases = {
      "internal-users": ["admin", "alice", "Émile", "zoë"],
      "external-users": ["carol", "dave"],
      "internal-groups": ["Admins"],
      "external-groups": ["Engineering"],
    };
    for (const [filter, expected] of Object.entries(cases)) {
      const res = await agent.get(`/users?filter=${filter}`).expect(200);
      assert.deepEqual(rowNames(res.text).sort(), [...expected].sort(), filter);
      assert.match(res.text, new RegExp(`id="filter-${filter}"[^>]*aria-current="true"`));
    }
  });

  test("searches case- and accent-insensitively in usernames, full names and email, with non-ASCII text", async () => {
    const search = async (q: string) => rowNames((await agent.get(`/users?q=${encodeURIComponent(q)}`)).text);
    assert.deepEqual(await search("ÉMILE"), ["Émile"]);
    assert.deepEqual(await search("émile"), ["Émile"]);
    assert.deepEqual(await search("zoe\u0308"), ["zoë"], "NFD input finds the NFC name");
    assert.deepEqual(await search("ZOLA"), ["Émile"], "full name");
    assert.deepEqual(await search("ångström"), ["carol"]);
    assert.deepEqual(await search("emile"), ["Émile"], "without the accent");
    assert.deepEqual(await search("angstrom"), ["carol"], "without the ring and the diaeresis");
    assert.deepEqual(await search("zöla"), ["Émile"], "an accent the name does not have");
    assert.deepEqual(await search("CORP.EXAMPLE"), ["carol"], "email");
    assert.deepEqual(await search("dupont"), ["alice", "dave"]);
    assert.deepEqual(await search("builders"), ["Engineering"], "a group's description");
    assert.deepEqual(await search("o'brien"), [], "a quote is just a character");
    assert.deepEqual(await search("a_i"), [], "LIKE's _ matches only itself");
  });

  test("search and filter combine, and the counts follow the search", async () => {
    const res = await agent.get("/users?q=dupont&filter=external-users").expect(200);
    assert.deepEqual(rowNames(res.text), ["dave"]);
    const text = decode(res.text);
    assert.match(text, /All \(2\)/);
    assert.match(text, /Internal users \(1\)/);
    assert.match(text, /External users \(1\)/);
    assert.match(text, /1 external users matching “dupont”/);
  });

  test("sorts by name both ways, users and groups interleaved", async () => {
    const up = rowNames((await agent.get("/users?filter=all").expect(200)).text);
    const down = rowNames((await agent.get("/users?sort=-name").expect(200)).text);
    assert.deepEqual(down, [...up].reverse());
    assert.ok(up.indexOf("Admins") > up.indexOf("admin"), "the user admin sorts before the group Admins");
    const res = await agent.get("/users?sort=-name").expect(200);
    assert.match(res.text, /aria-sort="descending"/);
    assert.match(res.text, /<input type="hidden" form="user-search" name="sort" value="-name">/);
  });

  test("keeps filter, search and sort in the links, so the URL carries the whole state", async () => {
    const res = await agent.get("/users?q=dupont&sort=-name").expect(200);
    assert.match(
      res.text,
      /id="filter-internal-users" href="\/users\?filter=internal-users&amp;q=dupont&amp;sort=-name"/,
    );
    assert.match(res.text, /id="sort-name" href="\/users\?q=dupont"/);
    assert.match(res.text, /<input id="field-q" name="q" type="search" value="dupont"/);
  });

  test("an htmx request gets only the list region; a plain one the whole page", async () => {
    const full = await agent.get("/users?q=alice").expect(200);
    assert.match(full.text, /^<!doctype html>/);
    assert.match(full.text, /<section id="user-list"/);
    const part = await asFragment(agent.get("/users?q=alice"), "section#user-list").expect(200);
    assert.match(part.text, /^<section id="user-list"/);
    assert.doesNotMatch(part.text, /<html|<header|id="user-search"/);
    assert.deepEqual(rowNames(part.text), ["alice"]);
    assert.match(part.headers.vary ?? "", /HX-Request/);
  });

  test("a malformed cursor or an unknown filter is ignored, not an error", async () => {
    const res = await agent.get("/users?after=not-a-cursor&filter=everyone&sort=sideways").expect(200);
    assert.equal(rowNames(res.text).length, 8);
  });
});

describe("keyset paging", () => {
  before(async () => {
    await insertBareUsers(
      t.db,
      Array.from({ length: 120 }, (_, i) => `page-user-${String(i).padStart(3, "0")}`),
    );
  });

  test("pages through a search 50 at a time, forwards and back, without gaps or repeats", async () => {
    const first = await agent.get("/users?q=page-user").expect(200);
    const page1 = rowNames(first.text);
    assert.equal(page1.length, 50);
    assert.equal(page1[0], "page-user-000");
    assert.doesNotMatch(first.text, /rel="prev"/);
    const next1 = nextHref(first.text);
    assert.ok(next1);
    assert.match(next1, /^\/users\?q=page-user&after=/);
    const second = await agent.get(next1).expect(200);
    const page2 = rowNames(second.text);
    assert.equal(page2[0], "page-user-050");
    assert.equal(page2.length, 50);
    const third = await agent.get(nextHref(second.text) ?? "").expect(200);
    const page3 = rowNames(third.text);
    assert.deepEqual(
      page3,
      Array.from({ length: 20 }, (_, i) => `page-user-${100 + i}`),
    );
    assert.equal(nextHref(third.text), null, "no next page after the last");
    const back = await agent.get(previousHref(third.text) ?? "").expect(200);
    assert.deepEqual(rowNames(back.text), page2);
    const back2 = await agent.get(previousHref(back.text) ?? "").expect(200);
    assert.deepEqual(rowNames(back2.text), page1);
    assert.equal(previousHref(back2.text), null, "no previous page before the first");
  });

  test("pages the whole list (index walk) the same way, descending too", async () => {
    const seen: string[] = [];
    let href: string | null = "/users?filter=internal-users&sort=-name";
    while (href) {
      const res = await agent.get(href).expect(200);
      seen.push(...rowNames(res.text));
      href = nextHref(res.text);
    }
    assert.equal(seen.length, 124);
    assert.equal(new Set(seen).size, 124);
    const { rows } = (await t.database.pool.query(
      "select username from users where kind = 'internal' order by username_key desc",
    )) as { rows: { username: string }[] };
    assert.deepEqual(
      seen,
      rows.map((r) => r.username),
    );
  });

  test("when the link pressed is gone from the new page, the status takes focus instead", async () => {
    const first = await agent.get("/users?q=page-user").expect(200);
    const second = /id="page-next" href="([^"]+)"/.exec(first.text)?.[1]?.replace(/&amp;/g, "&") ?? "";
    const fromNext = await asFragment(agent.get(second), "section#user-list").set("HX-Source", "a#page-next");
    assert.doesNotMatch(
      fromNext.text,
      /role="status" tabindex="-1" autofocus/,
      "page 2 still has a next page",
    );
    const third = /id="page-next" href="([^"]+)"/.exec(fromNext.text)?.[1]?.replace(/&amp;/g, "&") ?? "";
    const last = await asFragment(agent.get(third), "section#user-list").set("HX-Source", "a#page-next");
    assert.match(last.text, /<p id="list-status" class="list-status" role="status" tabindex="-1" autofocus>/);
    const typed = await asFragment(agent.get(third), "section#user-list").set(
      "HX-Source",
      "form#user-search",
    );
    assert.doesNotMatch(typed.text, /autofocus/, "typing in the search never moves focus");
  });

  test("the pagination links update the region in place", async () => {
    const res = await asFragment(agent.get("/users?q=page-user"), "section#user-list").expect(200);
    assert.match(res.text, /id="page-next" href="[^"]+" rel="next" hx-get="[^"]+" hx-target="#user-list"/);
  });
});

describe("the list service", () => {
  test("orders a user and a group of the same name by kind, and pages between them", async () => {
    await makeGroup(t.db, { name: "twin" });
    await createUser(t.db, { username: "twin" });
    const all = await listEntries(t.db, query({ search: "twin" }));
    assert.deepEqual(
      all.entries.map((e) => `${e.type}:${e.name}`),
      ["user:twin", "group:twin"],
    );
    for (const search of ["twin", ""]) {
      const firstKey = search ? undefined : { key: "twin", rank: 0 as const };
      const page = await listEntries(t.db, query({ search, after: firstKey, pageSize: 1 }));
      const expected = search ? "user:twin" : "group:twin";
      assert.equal(`${page.entries[0]?.type}:${page.entries[0]?.name}`, expected, `search "${search}"`);
    }
  });

  test("cursors survive the URL and reject tampering", () => {
    const cursor = { key: 'zoë,"x"', rank: 1 as const };
    assert.deepEqual(decodeCursor(encodeCursor(cursor)), { ...cursor, part: 0, value: null });
    const sorted = { key: "ann", rank: 0 as const, part: 2, value: "2026-01-02 03:04:05.678901+00" };
    assert.deepEqual(decodeCursor(encodeCursor(sorted)), sorted);
    assert.equal(decodeCursor(Buffer.from('["a",0,1,"); drop table users"]').toString("base64url")), null);
    assert.equal(decodeCursor("eyJrZXkiOjF9"), null);
    assert.equal(decodeCursor(Buffer.from('["a",7]').toString("base64url")), null);
  });

  test(`a search matching more than ${DENSE_MATCHES} rows still pages in order, with lower-bound counts`, async () => {
    const rows = Array.from({ length: DENSE_MATCHES + 100 }, (_, i) => {
      const username = `dense-${String(i).padStart(5, "0")}`;
      return {
        kind: "external" as const,
        username,
        usernameKey: username,
        searchText: username,
        externalId: username,
      };
    });
    for (let i = 0; i < rows.length; i += 2000) await t.db.insert(users).values(rows.slice(i, i + 2000));
    const first = await listEntries(t.db, query({ search: "dense-", pageSize: 3 }));
    assert.deepEqual(
      first.entries.map((e) => e.name),
      ["dense-00000", "dense-00001", "dense-00002"],
    );
    assert.equal(first.counts.atLeast.all, true);
    assert.match(formatCount(first.counts, "external-users"), /^\d{1,2},\d00\+$/);
    const later = await listEntries(
      t.db,
      query({ search: "dense-", after: { key: "dense-05050", rank: 0 }, pageSize: 3 }),
    );
    assert.deepEqual(
      later.entries.map((e) => e.name),
      ["dense-05051", "dense-05052", "dense-05053"],
    );
    const back = await listEntries(t.db, query({ search: "dense-", sort: "-name", pageSize: 2 }));
    assert.deepEqual(
      back.entries.map((e) => e.name),
      ["dense-05099", "dense-05098"],
    );
    await t.db.execute(sql`delete from users where username like 'dense-%'`);
  });

  test(`a dense search whose matches lie past the first ${DENSE_WALK} names still pages in order`, async () => {
    // Names that don't match, then (in name order) more matches than a search collects.
    await t.db.execute(sql`insert into users (kind, username, username_key, search_text, external_id)
      select 'external', name, name, name, name
      from (select 'aa-' || lpad(i::text, 6, '0') as name from generate_series(1, ${DENSE_WALK + 100}) as i) as names`);
    await t.db.execute(sql`insert into users (kind, username, username_key, search_text, external_id)
      select 'external', name, name, name, name
      from (select 'zz-bunched-' || lpad(i::text, 5, '0') as name from generate_series(1, ${DENSE_MATCHES + 100}) as i) as names`);
    try {
      const names = (page: Awaited<ReturnType<typeof listEntries>>) => page.entries.map((e) => e.name);
      const first = await listEntries(t.db, query({ search: "bunched", pageSize: 3 }));
      assert.deepEqual(names(first), ["zz-bunched-00001", "zz-bunched-00002", "zz-bunched-00003"]);
      assert.equal(first.counts.atLeast["external-users"], true);
      const next = await listEntries(t.db, query({ search: "bunched", after: first.next, pageSize: 3 }));
      assert.deepEqual(names(next), ["zz-bunched-00004", "zz-bunched-00005", "zz-bunched-00006"]);
      const back = await listEntries(t.db, query({ search: "bunched", before: next.previous, pageSize: 3 }));
      assert.deepEqual(names(back), names(first));
      const last = await listEntries(t.db, query({ search: "bunched", sort: "-name", pageSize: 2 }));
      assert.deepEqual(names(last), ["zz-bunched-05100", "zz-bunched-05099"]);
      // Sorted by another column, each run walks and then collects the same way.
      const byKind = await listEntries(t.db, query({ search: "bunched", sort: "kind", pageSize: 2 }));
      assert.deepEqual(names(byKind), ["zz-bunched-00001", "zz-bunched-00002"]);
    } finally {
      await t.db.execute(sql`delete from users where username like 'aa-%' or username like 'zz-bunched-%'`);
    }
  });

  test(`past ${COUNT_LIMIT.toLocaleString("en")} rows the counts are the database's estimates, and say so`, async () => {
    await t.db.execute(sql`insert into users (kind, username, username_key, search_text, external_id)
      select 'external', 'many-' || i, 'many-' || i, 'many-' || i, 'many-' || i
      from generate_series(1, ${COUNT_LIMIT + 990}) as i`);
    await t.db.execute(sql`analyze users`);
    try {
      const text = decode((await agent.get("/users?filter=external-users").expect(200)).text);
      assert.match(text, /External users \(about 11,000\)/);
      assert.match(text, /Internal users \(\d{1,3}\)/, "fewer than the limit: counted exactly");
      assert.match(text, /All \(about 11,000\)/);
      assert.match(text, /About 11,000 external users\./);
      assert.match(text, /Page 1 of about 220/);
      const end = await agent.get("/users?filter=external-users&at=end").expect(200);
      assert.match(decode(end.text), /About 220 pages/, "the last page's number is not known");
      assert.deepEqual(rowNames(end.text).slice(-1), ["many-9999"]);
    } finally {
      await t.db.execute(sql`delete from users where username like 'many-%'`);
    }
  });
});

/** The names in the list's rows, in order. */
function rowNames(html: string): string[] {
  const body = /<tbody id="user-rows">([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? "";
  return [...body.matchAll(/<td><a href="\/(?:users|groups)\/\d+">([^<]*)<\/a><\/td>/g)].map((m) =>
    decode(m[1] ?? ""),
  );
}

function nextHref(html: string): string | null {
  const match = /id="page-next" href="([^"]+)"/.exec(html);
  return match?.[1] ? match[1].replace(/&amp;/g, "&") : null;
}

function previousHref(html: string): string | null {
  const match = /id="page-previous" href="([^"]+)"/.exec(html);
  return match?.[1] ? match[1].replace(/&amp;/g, "&") : null;
}

describe("searching users by email", () => {
  const names = ["kim", "bob", "eve"];
  before(async () => {
    const directory = await makeDirectory(t.db, "Email LDAP");
    await makeExternalUser(t.db, {
      username: "kim",
      directoryId: directory.id,
      fullName: "Ana Kim",
      email: "Ana.Kim123@Rare.Example",
    });
    await makeExternalUser(t.db, { username: "bob", directoryId: directory.id, email: "bob@corp.example" });
    await makeExternalUser(t.db, {
      username: "eve",
      directoryId: directory.id,
      email: "eve@sub.corp.example",
    });
  });
  after(async () => {
    await t.db.execute(sql`delete from users where username in ('kim', 'bob', 'eve')`);
  });

  const found = async (search: string) =>
    (await listEntries(t.db, query({ search, filter: "external-users" }))).entries
      .map((e) => e.name)
      .filter((name) => names.includes(name));

  test("finds a user by the domain, by part of it, by the local part and across the @", async () => {
    assert.deepEqual(await found("rare.example"), ["kim"], "the whole domain");
    assert.deepEqual(await found("RARE"), ["kim"], "part of the domain only");
    assert.deepEqual(await found("corp.example"), ["bob", "eve"]);
    assert.deepEqual(await found("@corp"), ["bob"], "an @ then the start of the domain");
    assert.deepEqual(await found("kim123@rare.ex"), ["kim"], "across the @");
    assert.deepEqual(await found("3@r"), ["kim"], "a short local part before the @");
    assert.deepEqual(await found("ana.kim123"), ["kim"], "the local part");
    assert.deepEqual(await found("example"), ["bob", "eve", "kim"]);
    assert.deepEqual(await found("corp.examplex"), []);
    assert.deepEqual(await found("kim@rare"), [], "the @ must follow the local part");
  });

  test("the search text: the domain only after the tab, and every domain listed once", async () => {
    const [kim] = await t.db.select().from(users).where(sql`username = 'kim'`);
    // The username is in the full name; the index covers what precedes the tab.
    assert.equal(kim?.searchText, "ana kim\nana.kim123\tana.kim123@rare.example");
    const domains = await queryRows<{ domain: string }>(t.db, sql`select domain from email_domains`);
    const listed = domains.map((row) => row.domain);
    for (const domain of ["corp.example", "rare.example", "sub.corp.example"])
      assert.equal(listed.filter((d) => d === domain).length, 1, domain);
  });

  test("a search inside a known domain finds its users on the domain index, not by reading every email", async () => {
    assert.deepEqual(await searchReachesEmails(t.db, "RARE.example"), ["rare.example"]);
    assert.equal(await searchReachesEmails(t.db, "kim@rare"), true, "an @: every email may hold it");
    assert.equal(await searchReachesEmails(t.db, "dupont"), false);
    const plan = await t.db.transaction(async (tx) => {
      await tx.execute(sql`set local enable_seqscan = off`);
      const condition = userSearchCondition("rare.example", ["rare.example"]);
      const rows = await queryRows<{ "QUERY PLAN": string }>(
        tx,
        sql`explain select id from users where ${condition}`,
      );
      return rows.map((row) => row["QUERY PLAN"]).join("\n");
    });
    assert.match(plan, /users_email_domain_idx/);
    assert.doesNotMatch(plan, /Seq Scan/);
  });

  test("a text inside more domains than are worth listing reads every email", async () => {
    await t.db.execute(sql`insert into users (kind, username, username_key, email, search_text)
      select 'internal', 'wide-' || i, 'wide-' || i, 'w@d' || i || '.wide.example',
        'wide-' || i || E'\tw@d' || i || '.wide.example'
      from generate_series(1, 60) as i`);
    try {
      assert.equal(await searchReachesEmails(t.db, "wide.example"), true);
      const page = await listEntries(t.db, query({ search: "wide.example", pageSize: 100 }));
      assert.equal(page.entries.length, 60);
    } finally {
      await t.db.execute(sql`delete from users where username like 'wide-%'`);
    }
  });

  test("a changed email's new domain is found", async () => {
    await t.db.execute(
      sql`update users set email = 'bob@new.example', search_text = ${userSearchText("bob", "", "bob@new.example")}
          where username = 'bob'`,
    );
    assert.deepEqual(await found("new.example"), ["bob"]);
    assert.deepEqual(await found("corp.example"), ["eve"]);
  });
});

/** The rows' `user:12` / `group:3`, in order. */
function rowIds(html: string): string[] {
  const body = /<tbody id="user-rows">([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? "";
  return [...body.matchAll(/<tr id="(user|group)-(\d+)">/g)].map((m) => `${m[1]}:${m[2]}`);
}

function linkOf(html: string, id: string): string | null {
  const match = new RegExp(`id="${id}" href="([^"]+)"`).exec(html);
  return match?.[1] ? match[1].replace(/&amp;/g, "&") : null;
}

describe("pages, page sizes and sorting", () => {
  before(async () => {
    const other = await makeDirectory(t.db, "Another LDAP");
    await makeExternalUser(t.db, { username: "yves", directoryId: other.id, fullName: "Yves Other" });
    await t.db.execute(sql`update users set enabled = false where username in ('page-user-007', 'dave')`);
    await t.db.execute(
      sql`update users set last_activity_at = now() - (interval '1 minute' * id)
          where username in ('page-user-001', 'page-user-002', 'carol', 'yves')`,
    );
  });

  test("says which page of how many, with first, previous, next and last links", async () => {
    const first = await agent.get("/users?q=page-user").expect(200);
    assert.match(decode(first.text), /Page 1 of 3/);
    assert.equal(linkOf(first.text, "page-first"), null);
    assert.equal(linkOf(first.text, "page-previous"), null);
    const last = await agent.get(linkOf(first.text, "page-last") ?? "").expect(200);
    assert.deepEqual(
      rowNames(last.text),
      Array.from({ length: 20 }, (_, i) => `page-user-${100 + i}`),
      "the last page holds what the full pages before it leave",
    );
    assert.match(decode(last.text), /Page 3 of 3/);
    assert.equal(linkOf(last.text, "page-next"), null);
    assert.equal(linkOf(last.text, "page-last"), null);
    const second = await agent.get(linkOf(last.text, "page-previous") ?? "").expect(200);
    assert.match(decode(second.text), /Page 2 of 3/);
    assert.equal(rowNames(second.text)[0], "page-user-050");
    const again = await agent.get(linkOf(second.text, "page-first") ?? "").expect(200);
    assert.deepEqual(rowNames(again.text), rowNames(first.text));
    assert.match(decode(again.text), /Page 1 of 3/);
  });

  test("a page size of 25 shows 25 rows and keeps to it in every link; an unknown size is 50", async () => {
    const res = await agent.get("/users?q=page-user&size=25").expect(200);
    assert.equal(rowNames(res.text).length, 25);
    assert.match(decode(res.text), /Page 1 of 5/);
    assert.match(linkOf(res.text, "page-next") ?? "", /size=25/);
    assert.match(linkOf(res.text, "sort-kind") ?? "", /size=25/);
    assert.match(res.text, /<option value="25" selected>/);
    const odd = await agent.get("/users?q=page-user&size=7").expect(200);
    assert.equal(rowNames(odd.text).length, 50);
  });

  const oracle: Record<string, string> = {
    name: "key asc, rank asc",
    "-name": "key desc, rank desc",
    kind: "(kind = 'internal') asc, key asc, rank asc",
    "-kind": "(kind = 'external') asc, key desc, rank desc",
    directory:
      "(directory_id is null) asc, (kind = 'internal') asc, lower(dir) asc, directory_id asc, key asc, rank asc",
    "-directory":
      "(directory_id is null) asc, (kind = 'internal') asc, lower(dir) desc, directory_id desc, key desc, rank desc",
    status: "(rank = 1) asc, enabled asc, key asc, rank asc",
    "-status": "(rank = 1) asc, enabled desc, key desc, rank desc",
    activity: "(rank = 1) asc, (at is null) asc, at asc, key asc, rank asc",
    "-activity": "(rank = 1) asc, (at is null) asc, at desc, key desc, rank desc",
  };

  async function expectedOrder(sort: string): Promise<string[]> {
    const rows = await queryRows<{ type: string; id: number }>(
      t.db,
      sql.raw(`select type, id from (
          select 'user' as type, 0 as rank, u.id, u.username_key as key, u.kind, u.directory_id,
            u.enabled, u.last_activity_at as at, d.name as dir
          from users u left join directories d on d.id = u.directory_id
          union all
          select 'group', 1, g.id, g.name_key, g.kind, g.directory_id, null, null, d.name
          from groups g left join directories d on d.id = g.directory_id
        ) r order by ${oracle[sort]}`),
    );
    return rows.map((r) => `${r.type}:${r.id}`);
  }

  for (const sort of Object.keys(oracle)) {
    test(`sorting by ${sort} orders every row as documented, page after page`, async () => {
      const seen: string[] = [];
      let href: string | null = `/users?sort=${sort}&size=25`;
      while (href) {
        const res = await agent.get(href).expect(200);
        seen.push(...rowIds(res.text));
        href = linkOf(res.text, "page-next");
      }
      assert.deepEqual(seen, await expectedOrder(sort));
    });
  }

  test("paging back from the last page reads the same rows in reverse, for a sort by activity", async () => {
    const expected = await expectedOrder("-activity");
    const seen: string[][] = [];
    let href: string | null = "/users?sort=-activity&size=25&at=end";
    while (href) {
      const res = await agent.get(href).expect(200);
      seen.unshift(rowIds(res.text));
      href = linkOf(res.text, "page-previous");
    }
    assert.deepEqual(seen.flat(), expected);
    assert.equal(seen[seen.length - 1]?.length, expected.length % 25 || 25);
  });

  test("each column header sorts, says how, and turns the current sort around", async () => {
    const res = await agent.get("/users?sort=-activity").expect(200);
    assert.match(
      res.text,
      /<th scope="col" aria-sort="descending"><a id="sort-activity" href="\/users\?sort=activity"/,
    );
    assert.match(res.text, /id="sort-kind" href="\/users\?sort=kind"/);
    assert.match(res.text, /id="sort-name" href="\/users"/);
    assert.match(decode(res.text), /Users and groups, by last activity, newest first/);
  });

  test("without JavaScript, Select all reloads the page with every user ticked", async () => {
    const res = await agent.get("/users?q=page-user").expect(200);
    assert.match(
      res.text,
      /<input type="checkbox" id="select-all" data-select-all="user" data-form="bulk-actions" hidden>/,
    );
    const all = await agent.get(linkOf(res.text, "select-all-link") ?? "").expect(200);
    const boxes = [
      ...all.text.matchAll(
        /<input type="checkbox" id="select-\d+" name="user" value="\d+" form="bulk-actions"( checked)?>/g,
      ),
    ];
    assert.equal(boxes.length, 50);
    assert.ok(boxes.every((m) => m[1] === " checked"));
    assert.ok(linkOf(all.text, "unselect-all-link"));
    assert.doesNotMatch(
      all.text.match(/name="returnTo" value="([^"]*)"/)?.[1] ?? "",
      /select=all/,
      "the bulk action returns to the list without the selection",
    );
  });
});

describe("CSV export", () => {
  before(async () => {
    await createUser(t.db, { username: "formula", fullName: '=HYPERLINK("http://evil.example","click")' });
    await createUser(t.db, { username: "plusminus", fullName: "+1 -2" });
    await createUser(t.db, { username: "at-sign", fullName: "@SUM(A1)" });
    await makeGroup(t.db, { name: "Quoted", description: 'Says "hi", then\nleaves' });
  });

  test("downloads every match of the filter and search, in the list's order, not just a page", async () => {
    const res = await agent.get("/users.csv?q=page-user&sort=-name").expect(200);
    assert.match(res.headers["content-type"] ?? "", /^text\/csv; charset=utf-8/);
    assert.match(
      res.headers["content-disposition"] ?? "",
      /^attachment; filename="?users-\d{4}-\d\d-\d\d\.csv"?$/,
    );
    const lines = res.text.split("\r\n");
    assert.equal(
      lines[0],
      "\uFEFFType,Name,Full name or description,Email,Kind,Directory,Sign-in,Missing in directory,Last activity (UTC)",
    );
    assert.equal(lines.length, 1 + 120 + 1, "header, 120 users, and the final line break");
    assert.equal(lines[1], "user,page-user-119,,,internal,,enabled,no,");
    assert.equal(lines[120], "user,page-user-000,,,internal,,enabled,no,");
    assert.match(lines[114] ?? "", /^user,page-user-006,/);
    assert.match(lines[113] ?? "", /^user,page-user-007,.*,disabled,no,$/);
  });

  test("quotes commas, quotes and line breaks, and defuses cells a spreadsheet would run as formulas", async () => {
    const res = await agent.get("/users.csv?filter=all").expect(200);
    assert.ok(res.text.includes('user,formula,"\'=HYPERLINK(""http://evil.example"",""click"")",,internal,'));
    assert.ok(res.text.includes('user,plusminus,"\'+1 -2",,internal,'));
    assert.ok(res.text.includes('user,at-sign,"\'@SUM(A1)",,internal,'));
    assert.ok(res.text.includes('group,Quoted,"Says ""hi"", then\nleaves",,internal,,,no,\r\n'));
    assert.ok(
      res.text.includes("user,carol,Carol Ångström,carol@corp.example,external,Corporate LDAP,enabled,no,"),
    );
  });

  test("the list links to the export of what it shows", async () => {
    const res = await agent.get("/users?q=dupont&filter=external-users&sort=-kind&size=25").expect(200);
    assert.equal(linkOf(res.text, "export-csv"), "/users.csv?filter=external-users&q=dupont&sort=-kind");
    const csv = await agent.get("/users.csv?filter=external-users&q=dupont").expect(200);
    assert.deepEqual(
      csv.text
        .split("\r\n")
        .slice(1, -1)
        .map((line) => line.split(",")[1]),
      ["dave"],
    );
  });

  test("is for user managers only", async () => {
    const anonymous = await supertest(t.app).get("/users.csv").expect(303);
    assert.match(anonymous.headers.location ?? "", /^\/login/);
    await createUser(t.db, { username: "plain-viewer", role: "viewer" });
    const viewer = await signedInAgent(t.app, "plain-viewer");
    await viewer.agent.get("/users.csv").expect(403);
  });
});
