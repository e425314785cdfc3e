/**
 * Users by the million in seconds, for the benches: generated users (a third of them external, from
 * one directory) streamed with COPY, groups, and a few groups' memberships, then VACUUM ANALYZE.
 * COPY is postgres.js's `copy … from stdin` on a server, PGlite's `copy … from '/dev/blob'` in
 * memory (a blob per chunk, so the text of a million rows is never held at once).
 */
import type { Writable } from "node:stream";
import type { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import type postgres from "postgres";
import { type Db, queryRows } from "../../src/db/client.ts";
import { directories, groupMembers, groups } from "../../src/db/schema.ts";
import { userFixture } from "../../src/dev/fixtures.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import { nameKey, searchTextOf, userSearchText } from "../../src/services/names.ts";

const BATCH = 2_000;
/** Rows per chunk of COPY text (a few MB). */
const CHUNK = 20_000;

const USER_COLUMNS =
  "kind, username, username_key, full_name, email, department, phone, search_text, enabled, " +
  "directory_id, external_id, dn, last_activity_at";

/** Seeds `userCount` users and `groupCount` groups; returns the milliseconds it took. */
export async function seedUsersAndGroups(db: Db, userCount: number, groupCount: number): Promise<number> {
  const started = performance.now();
  const [directory] = await db
    .insert(directories)
    .values({
      name: "Bench LDAP",
      position: 1,
      urls: ["ldap://127.0.0.1:1"],
      baseDn: "dc=example,dc=test",
      ...presetMapping("openldap"),
    })
    .returning();
  // The users' indexes are built once after the rows are in, which is far cheaper than keeping them
  // up to date row by row (the trigram index above all); each is made again from its own definition.
  const indexes = await queryRows<{ name: string; definition: string }>(
    db,
    sql`select indexname as name, indexdef as definition from pg_indexes
      where schemaname = current_schema() and tablename = 'users' and indexname <> 'users_pkey'`,
  );
  for (const index of indexes) await db.execute(sql.raw(`drop index ${index.name}`));
  await copyUsers(db, userChunks(userCount, directory?.id ?? null, Date.now()));
  for (const index of indexes) await db.execute(sql.raw(index.definition));
  const groupRows = Array.from({ length: groupCount }, (_, i) => {
    const name = `${["Team", "Project", "Équipe", "Dept"][i % 4]} ${i}`;
    const description = `Group number ${i} for benchmarking`;
    const external = i % 2 === 0;
    return {
      kind: external ? ("external" as const) : ("internal" as const),
      name,
      nameKey: nameKey(name),
      description,
      searchText: searchTextOf(name, description),
      directoryId: external ? (directory?.id ?? null) : null,
      externalId: external ? `group-${i}` : null,
    };
  });
  for (let start = 0; start < groupRows.length; start += BATCH) {
    await db.insert(groups).values(groupRows.slice(start, start + BATCH));
  }
  await db.execute(sql`insert into ${groupMembers} (group_id, user_id)
    select g.id, u.id from groups g join users u on u.id % 200 = g.id % 200 where g.id <= 50`);
  await db.execute(sql`vacuum analyze`);
  return Math.round(performance.now() - started);
}

/** The users as COPY text (tab-separated, `\N` for null), CHUNK rows per string. */
function* userChunks(userCount: number, directoryId: number | null, now: number): Generator<string> {
  for (let start = 0; start < userCount; start += CHUNK) {
    const lines: string[] = [];
    for (let i = start; i < Math.min(start + CHUNK, userCount); i++) {
      const f = userFixture(i);
      const external = i % 3 === 0;
      // One user in 10,000 has another domain: a search for it reads every user's email to find them.
      const mail = i % 10_000 === 7 ? f.mail.replace("@example.test", "@rare.example") : f.mail;
      const fields = [
        external ? "external" : "internal",
        f.uid,
        nameKey(f.uid),
        f.cn,
        mail,
        f.department,
        f.telephoneNumber,
        userSearchText(f.uid, f.cn, mail),
        i % 17 !== 0 ? "t" : "f",
        external ? String(directoryId) : null,
        external ? `uuid-${i}` : null,
        external ? `uid=${f.uid},ou=people,dc=example,dc=test` : null,
        i % 5 === 0 ? new Date(now - i * 60_000).toISOString() : null,
      ];
      lines.push(fields.map(copyField).join("\t"));
    }
    yield `${lines.join("\n")}\n`;
  }
}

function copyField(value: string | null): string {
  if (value === null) return "\\N";
  return value.replace(/[\\\t\n\r]/g, (c) =>
    c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r",
  );
}

/** COPY the chunks into users, through whichever driver `db` runs on. */
async function copyUsers(db: Db, chunks: Iterable<string>): Promise<void> {
  const client = (db as unknown as { $client: unknown }).$client;
  const copy = `copy users (${USER_COLUMNS}) from`;
  if (typeof (client as PGlite).exec === "function" && !("unsafe" in (client as object))) {
    for (const chunk of chunks) {
      await (client as PGlite).query(`${copy} '/dev/blob'`, [], { blob: new Blob([chunk]) });
    }
    return;
  }
  const stream: Writable = await (client as postgres.Sql).unsafe(`${copy} stdin`).writable();
  for (const chunk of chunks) {
    if (!stream.write(chunk)) await new Promise((resolve) => stream.once("drain", resolve));
  }
  await new Promise<void>((resolve, reject) => {
    stream.once("error", reject);
    stream.end(() => resolve());
  });
}
