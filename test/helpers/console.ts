/** Rows for the console's integration tests: groups, directories, external users, and readers of the store. */
import assert from "node:assert/strict";
import { desc, eq } from "drizzle-orm";
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

/** The directory form's user and group fields as the OpenLDAP preset fills them in. */
export const OPENLDAP_FORM_MAPPING = {
  userBase: "ou=people",
  userFilter: "(objectClass=inetOrgPerson)",
  userScope: "sub",
  attrUsername: "uid",
  attrFullName: "cn",
  attrEmail: "mail",
  attrDepartment: "departmentNumber",
  attrPhone: "telephoneNumber",
  attrUniqueId: "entryUUID",
  groupBase: "ou=groups",
  groupFilter: "(objectClass=groupOfNames)",
  groupScope: "sub",
  attrGroupName: "cn",
  attrMember: "member",
  memberValues: "dn",
};

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

/** Internal users with a username and nothing else (no password, no roles), inserted at once: lists to page through. */
export async function insertBareUsers(db: Db, usernames: string[]): Promise<void> {
  await db.insert(users).values(
    usernames.map((username) => ({
      kind: "internal" as const,
      username,
      usernameKey: nameKey(username),
      searchText: searchTextOf(username),
    })),
  );
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
