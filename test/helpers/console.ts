/** Small helpers for the Users application's integration tests. */
import assert from "node:assert/strict";
import { desc, eq } from "drizzle-orm";
import type supertest from "supertest";
import type { Db } from "../../src/db/client.ts";
import {
  auditLog,
  directories,
  groupMembers,
  groupSubgroups,
  groups,
  roles,
  users,
} from "../../src/db/schema.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import { nameKey, searchTextOf, userSearchText } from "../../src/services/names.ts";

type Agent = ReturnType<typeof supertest.agent>;

/** The headers htmx 4 sends when it swaps one region. */
export function asFragment<T extends { set(name: string, value: string): T }>(request: T, target: string): T {
  return request.set("HX-Request", "true").set("HX-Request-Type", "partial").set("HX-Target", target);
}

export function postForm(
  agent: Agent,
  url: string,
  csrf: string,
  body: Record<string, string | string[]> = {},
) {
  return agent
    .post(url)
    .type("form")
    .send(toQuery({ _csrf: csrf, ...body }));
}

/** Repeated fields (`user=1&user=2`) as urlencoded text, which supertest's object form can't express. */
function toQuery(body: Record<string, string | string[]>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(body)) {
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  }
  return params.toString();
}

/** Follows a 303 and returns the page it leads to. */
export async function follow(agent: Agent, response: { status: number; headers: Record<string, string> }) {
  assert.equal(response.status, 303, "expected a 303 redirect");
  const location = response.headers.location;
  assert.ok(location, "redirect without a location");
  return agent.get(location).expect(200);
}

/** The flash message on a page, as text. */
export function flashOf(html: string): string {
  const match = /<div class="flash flash-(\w+)"[^>]*>([\s\S]*?)<\/div>/.exec(html);
  return match ? `${match[1]}: ${decode(match[2] ?? "")}` : "";
}

export function decode(html: string): string {
  return html
    .replace(/<[^>]+>/g, " ")
    .replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ")
    .trim();
}

export async function makeGroup(
  db: Db,
  input: {
    name: string;
    kind?: "internal" | "external";
    description?: string;
    directoryId?: number;
    externalId?: string;
  },
) {
  const [group] = await db
    .insert(groups)
    .values({
      kind: input.kind ?? "internal",
      name: input.name,
      nameKey: nameKey(input.name),
      description: input.description ?? "",
      searchText: searchTextOf(input.name, input.description),
      directoryId: input.directoryId ?? null,
      externalId: input.externalId ?? null,
    })
    .returning();
  assert.ok(group);
  return group;
}

export async function addToGroup(db: Db, groupId: number, userId: number) {
  await db.insert(groupMembers).values({ groupId, userId });
}

export async function nestGroup(db: Db, parentId: number, childId: number) {
  await db.insert(groupSubgroups).values({ parentId, childId });
}

export async function makeDirectory(
  db: Db,
  name = "Corporate LDAP",
  overrides: Partial<typeof directories.$inferInsert> = {},
) {
  const [max] = await db
    .select({ position: directories.position })
    .from(directories)
    .orderBy(desc(directories.position));
  const [directory] = await db
    .insert(directories)
    .values({
      name,
      position: (max?.position ?? 0) + 1,
      urls: ["ldap://127.0.0.1:1"],
      baseDn: "dc=example,dc=test",
      ...presetMapping("openldap"),
      ...overrides,
    })
    .returning();
  assert.ok(directory);
  return directory;
}

export async function makeExternalUser(
  db: Db,
  input: {
    username: string;
    directoryId: number;
    externalId?: string;
    dn?: string;
    fullName?: string;
    email?: string;
  },
) {
  const [user] = await db
    .insert(users)
    .values({
      kind: "external",
      username: input.username,
      usernameKey: nameKey(input.username),
      fullName: input.fullName ?? "",
      email: input.email ?? "",
      searchText: userSearchText(input.username, input.fullName, input.email),
      directoryId: input.directoryId,
      externalId: input.externalId ?? `id-${input.username}`,
      dn: input.dn ?? `uid=${input.username},ou=people,dc=example,dc=test`,
    })
    .returning();
  assert.ok(user);
  return user;
}

export async function roleId(db: Db, key: string): Promise<number> {
  const [role] = await db.select({ id: roles.id }).from(roles).where(eq(roles.key, key));
  assert.ok(role, `no role ${key}`);
  return role.id;
}

export async function lastAudit(db: Db) {
  const [entry] = await db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(1);
  return entry;
}

export async function userNamed(db: Db, username: string) {
  const [user] = await db
    .select()
    .from(users)
    .where(eq(users.usernameKey, nameKey(username)));
  return user;
}
