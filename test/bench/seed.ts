/**
 * 100,000 users in seconds, for the benches: multi-row inserts of generated users (a third of them
 * external, from one directory), groups, and a few groups' memberships, then VACUUM ANALYZE.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../../src/db/client.ts";
import { directories, groupMembers, groups, users } from "../../src/db/schema.ts";
import { userFixture } from "../../src/dev/fixtures.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import { nameKey, searchTextOf, userSearchText } from "../../src/services/names.ts";

const BATCH = 2_000;

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
  for (let start = 0; start < userCount; start += BATCH) {
    const rows = [];
    for (let i = start; i < Math.min(start + BATCH, userCount); i++) {
      const f = userFixture(i);
      const external = i % 3 === 0;
      // Ten users of another domain: a search for it reads every user's email to find them.
      const mail = i % 10_000 === 7 ? f.mail.replace("@example.test", "@rare.example") : f.mail;
      rows.push({
        kind: external ? ("external" as const) : ("internal" as const),
        username: f.uid,
        usernameKey: nameKey(f.uid),
        fullName: f.cn,
        email: mail,
        department: f.department,
        phone: f.telephoneNumber,
        searchText: userSearchText(f.uid, f.cn, mail),
        enabled: i % 17 !== 0,
        directoryId: external ? (directory?.id ?? null) : null,
        externalId: external ? `uuid-${i}` : null,
        dn: external ? `uid=${f.uid},ou=people,dc=example,dc=test` : null,
        lastActivityAt: i % 5 === 0 ? new Date(Date.now() - i * 60_000) : null,
      });
    }
    await db.insert(users).values(rows);
  }
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
