/**
 * One directory entry at a time, for the console's actions (Synchronize now on a user, directory
 * sign-in, conversion to external): the same batched writes and rules as an import, given a batch of
 * one, plus the field-by-field changes those pages show and the marks of entries gone missing.
 */
import { and, eq, or, sql } from "drizzle-orm";
import type { Db } from "../../db/client.ts";
import { groups, users } from "../../db/schema.ts";
import { sameDnText } from "../../ldap/dn.ts";
import type { LdapUser } from "../../ldap/types.ts";
import type { User } from "../auth.ts";
import { nameKey } from "../names.ts";
import { signInAfterSync } from "./decide.ts";
import { upsertUsers } from "./write.ts";

export type UserChange = [from: unknown, to: unknown];

export type UserEntryOutcome =
  | { outcome: "created" | "updated" | "unchanged"; user: User; changes: Record<string, UserChange> }
  | { outcome: "conflict"; entry: LdapUser; reason: string };

export interface UserEntryOptions {
  /** See UpsertContext.findInDirectory: which of these stable ids the directory still has. */
  findInDirectory?: (externalIds: string[]) => Promise<ReadonlySet<string>>;
  /** See UpsertContext.convertInternal: link an internal user with the entry's username. */
  convertInternal?: boolean;
}

/**
 * Writes one user entry as an import would (matched by stable id, then username; conflicts
 * reported, never taken over), inside the caller's transaction or its own.
 */
export async function syncUserEntry(
  db: Db,
  directoryId: number,
  entry: LdapUser,
  options: UserEntryOptions = {},
): Promise<UserEntryOutcome> {
  return db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    // The rows the entry can match, as they were: the changes shown are against them.
    const before = await tx
      .select()
      .from(users)
      .where(
        or(
          and(eq(users.directoryId, directoryId), eq(users.externalId, entry.externalId)),
          eq(users.usernameKey, nameKey(entry.username)),
        ),
      );
    const result = await upsertUsers(
      tx,
      {
        directoryId,
        handledUsers: async () => new Map(),
        importedGroups: new Map(),
        copyRolesFrom: null,
        ...(options.findInDirectory ? { findInDirectory: options.findInDirectory } : {}),
        ...(options.convertInternal ? { convertInternal: true } : {}),
      },
      [entry],
    );
    const id = result.ids.get(entry.externalId);
    if (id === undefined || id === null) {
      const reason = result.entries[0]?.reason || "The entry could not be written.";
      return { outcome: "conflict", entry, reason };
    }
    const outcome =
      result.counts.created > 0 ? "created" : result.counts.updated > 0 ? "updated" : "unchanged";
    if (outcome === "unchanged") {
      // An import leaves unchanged rows alone; a synchronization of one user says when it was checked.
      await tx.execute(sql`update users set last_synced_at = now() where id = ${id} and kind = 'external'`);
    }
    const [user] = await tx.select().from(users).where(eq(users.id, id));
    if (!user) throw new Error("the synchronized user is gone");
    const previous = before.find((row) => row.id === id);
    // The fields shown are an external user's; an internal one that stays internal keeps its own.
    const changes =
      previous && outcome === "updated" && user.kind === "external" ? entryChanges(previous, entry) : {};
    if (previous && previous.kind !== user.kind) changes.kind = [previous.kind, user.kind];
    return { outcome, user, changes };
  });
}

const SYNCED_FIELDS = ["username", "fullName", "email", "department", "phone", "dn"] as const;

/** Field-by-field differences between a user and its entry (the DN compared parsed, not as text). */
export function entryChanges(user: User, entry: LdapUser): Record<string, UserChange> {
  const next = {
    username: entry.username,
    fullName: entry.fullName,
    email: entry.email ?? "",
    department: entry.department ?? "",
    phone: entry.phone ?? "",
    dn: entry.dn,
  };
  const changes: Record<string, UserChange> = {};
  for (const field of SYNCED_FIELDS) {
    const same = field === "dn" ? sameDnText(user.dn, next.dn) : user[field] === next[field];
    if (!same) changes[field] = [user[field], next[field]];
  }
  if (user.externalId !== entry.externalId) changes.externalId = [user.externalId, entry.externalId];
  const signIn = signInAfterSync(!entry.disabled, user);
  if (signIn.enabled !== user.enabled) changes.enabled = [user.enabled, signIn.enabled];
  if (user.missingInDirectory) changes.missingInDirectory = [true, false];
  return changes;
}

/**
 * An external user whose entry is gone: disabled (never deleted), its roles kept, and marked so
 * the console can say why. Returns false when it was marked already. When the entry comes back
 * enabled, the user is enabled again — unless an administrator had disabled it.
 */
export async function markUserMissing(db: Db, userId: number, now = new Date()): Promise<boolean> {
  const updated = await db
    .update(users)
    .set({
      missingInDirectory: true,
      enabled: false,
      disabledByDirectory: sql`${users.disabledByDirectory} or ${users.enabled}`,
      lastSyncedAt: now,
      updatedAt: now,
    })
    .where(and(eq(users.id, userId), sql`not (${users.missingInDirectory} and not ${users.enabled})`))
    .returning({ id: users.id });
  return updated.length > 0;
}

/** An external group whose entry is gone: marked, its members and roles kept. */
export async function markGroupMissing(db: Db, groupId: number, now = new Date()): Promise<void> {
  await db
    .update(groups)
    .set({ missingInDirectory: true, lastSyncedAt: now, updatedAt: now })
    .where(eq(groups.id, groupId));
}

/**
 * External → internal: the directory no longer owns the user. It keeps its id, username, fields,
 * roles and groups, and signs in with the Roster password given (already hashed).
 */
export async function unlinkFromDirectory(tx: Db, userId: number, passwordHash: string): Promise<User> {
  const [converted] = await tx
    .update(users)
    .set({
      kind: "internal",
      passwordHash,
      directoryId: null,
      externalId: null,
      dn: null,
      missingInDirectory: false,
      lastSyncedAt: null,
      updatedAt: new Date(),
    })
    .where(eq(users.id, userId))
    .returning();
  if (!converted) throw new Error("update returned no row");
  return converted;
}

/** A directory deleted: its users can't sign in any more (they are kept, with their roles). */
export async function disableUsersOfDirectory(tx: Db, directoryId: number): Promise<number> {
  const disabled = await tx
    .update(users)
    .set({ enabled: false, updatedAt: new Date() })
    .where(and(eq(users.directoryId, directoryId), eq(users.kind, "external"), eq(users.enabled, true)))
    .returning({ id: users.id });
  return disabled.length;
}
