/**
 * The Users application's directory actions: "Synchronize now" for a user or a group, and
 * converting users between internal and external. Every outcome is a value the page can show;
 * an unreachable directory changes nothing.
 */
import { and, eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { directories, users } from "../db/schema.ts";
import type { DirectoryLogger, DirectorySession } from "../ldap/client.ts";
import { type Actor, recordAudit } from "./audit.ts";
import type { User } from "./auth.ts";
import type { LoadedDirectory } from "./directories.ts";
import { withStoredDirectory } from "./directory-session.ts";
import { getGroup } from "./groups.ts";
import { attempt, ensureManagersRemain, type Outcome, Refusal } from "./guards.ts";
import { nameKey } from "./names.ts";
import { hashPassword } from "./passwords.ts";
import type { SecretBox } from "./secrets.ts";
import { userIdsInDirectory } from "./sync/directory-reads.ts";
import {
  markGroupMissing,
  markUserMissing,
  syncUserEntry,
  type UserChange,
  unlinkFromDirectory,
} from "./sync/entries.ts";
import { type FoundBy, findGroupEntry, findUserEntry } from "./sync/find.ts";
import { type GroupTreeResult, syncGroupTree } from "./sync/group-tree.ts";
import { endSessionsOf } from "./users.ts";

export interface DirectoryDeps {
  db: Db;
  secretBox: SecretBox;
  logger?: DirectoryLogger;
}

type Failure = Extract<Outcome<never>, { ok: false }>;

const fail = (message: string, field = "form"): Failure => ({ ok: false, field, message });

/** Opens the entry's directory, runs `work`, and turns every way of failing into words. */
async function withLoadedDirectory<T>(
  deps: DirectoryDeps,
  directoryId: number | null,
  work: (session: DirectorySession, loaded: LoadedDirectory) => Promise<Outcome<T>>,
): Promise<Outcome<T>> {
  if (directoryId === null) return fail("The directory this entry came from has been deleted.");
  const done = await withStoredDirectory(deps, directoryId, work);
  if (done.ok) return done.value;
  if (done.problem === "deleted") return fail("The directory this entry came from has been deleted.");
  return fail(done.message);
}

export type UserSyncReport =
  | {
      status: "updated" | "unchanged";
      changes: Record<string, UserChange>;
      foundBy: FoundBy;
      directoryName: string;
    }
  | { status: "missing"; directoryName: string; newlyMissing: boolean };

/**
 * Re-reads an external user's entry (by stable id, then DN, then username) and writes what
 * changed. An entry that no longer exists disables the user and marks it, never deletes it.
 */
export async function synchronizeUser(
  deps: DirectoryDeps,
  actor: Actor,
  userId: number,
): Promise<Outcome<UserSyncReport>> {
  const user = await loadUser(deps.db, userId);
  if (!user) return fail("This user no longer exists.");
  if (user.kind !== "external") return fail("Only external users are synchronized with a directory.");
  return withLoadedDirectory<UserSyncReport>(
    deps,
    user.directoryId,
    async (session, { mapping, directory }) => {
      const found = await findUserEntry(session, mapping, {
        externalId: user.externalId,
        dn: user.dn,
        username: user.username,
      });
      if (!found.ok && found.reason === "ambiguous") {
        return fail(
          `${directory.name} has ${found.count} entries with the username ${user.username} and none with this user's id: nothing was changed.`,
        );
      }
      if (!found.ok) {
        const newlyMissing = await markUserMissing(deps.db, user.id);
        if (newlyMissing) {
          await recordAudit(deps.db, actor, {
            action: "user.missing_in_directory",
            targetType: "user",
            targetId: user.id,
            targetName: user.username,
            details: { directory: directory.name, dn: user.dn },
          });
        }
        return { ok: true, value: { status: "missing", directoryName: directory.name, newlyMissing } };
      }
      const outcome = await syncUserEntry(deps.db, directory.id, found.entry, {
        findInDirectory: (ids) => userIdsInDirectory(session, mapping, ids),
      });
      if (outcome.outcome === "conflict") return fail(outcome.reason);
      if (outcome.outcome === "updated") {
        await recordAudit(deps.db, actor, {
          action: "user.sync",
          targetType: "user",
          targetId: user.id,
          targetName: outcome.user.username,
          details: { directory: directory.name, changes: outcome.changes },
        });
      }
      return {
        ok: true,
        value: {
          status: outcome.outcome === "updated" ? "updated" : "unchanged",
          changes: outcome.changes,
          foundBy: found.by,
          directoryName: directory.name,
        },
      };
    },
  );
}

export type GroupSyncReport =
  | ({ status: "synchronized"; directoryName: string } & GroupTreeResult)
  | { status: "missing"; directoryName: string };

/** Re-reads an external group, its members and nested groups, and makes Roster's membership match. */
export async function synchronizeGroup(
  deps: DirectoryDeps,
  actor: Actor,
  groupId: number,
): Promise<Outcome<GroupSyncReport>> {
  const group = await getGroup(deps.db, groupId);
  if (!group) return fail("This group no longer exists.");
  if (group.kind !== "external") return fail("Only external groups are synchronized with a directory.");
  return withLoadedDirectory<GroupSyncReport>(
    deps,
    group.directoryId,
    async (session, { mapping, directory }) => {
      const found = await findGroupEntry(session, mapping, {
        externalId: group.externalId,
        dn: group.dn,
        name: group.name,
      });
      if (!found.ok && found.reason === "ambiguous") {
        return fail(`${directory.name} has ${found.count} groups named ${group.name}: nothing was changed.`);
      }
      if (!found.ok) {
        await markGroupMissing(deps.db, group.id);
        await recordAudit(deps.db, actor, {
          action: "group.sync",
          targetType: "group",
          targetId: group.id,
          targetName: group.name,
          details: { directory: directory.name, missing: true },
        });
        return { ok: true, value: { status: "missing", directoryName: directory.name } };
      }
      const written = await syncGroupTree(deps.db, session, mapping, directory.id, found.entry);
      if (!written.ok) return fail(`${written.reason} Nothing was changed.`);
      const tree = written.tree;
      await recordAudit(deps.db, actor, {
        action: "group.sync",
        targetType: "group",
        targetId: group.id,
        targetName: tree.group.name,
        details: {
          directory: directory.name,
          membersAdded: tree.membersAdded,
          membersRemoved: tree.membersRemoved,
          usersCreated: tree.users.created,
          conflicts: tree.conflicts.length,
        },
      });
      return { ok: true, value: { status: "synchronized", directoryName: directory.name, ...tree } };
    },
  );
}

/**
 * Internal → external: finds the entry with the user's username in the chosen directory and links
 * the user to it (fields synced, roles and groups kept, the Roster password dropped). No entry, or
 * several, is an error and nothing changes.
 */
export async function convertToExternal(
  deps: DirectoryDeps,
  actor: Actor,
  userId: number,
  directoryId: number,
): Promise<Outcome<{ user: User; directoryName: string; changes: Record<string, UserChange> }>> {
  const user = await loadUser(deps.db, userId);
  if (!user) return fail("This user no longer exists.");
  if (user.kind !== "internal") return fail("This user is external already.");
  const [directory] = await deps.db
    .select({ id: directories.id, name: directories.name, enabled: directories.enabled })
    .from(directories)
    .where(eq(directories.id, directoryId));
  if (!directory) return fail("Choose a directory.", "directoryId");
  // Its users can't sign in: the user would lose the password it has and get no way in.
  if (!directory.enabled) {
    return fail(
      `${directory.name} is disabled, so nobody can sign in through it. Enable it first, or choose another directory.`,
      "directoryId",
    );
  }
  type Linked = { user: User; directoryName: string; changes: Record<string, UserChange> };
  return withLoadedDirectory<Linked>(deps, directoryId, async (session, { mapping, directory }) => {
    const found = await findUserEntry(session, mapping, { username: user.username });
    if (!found.ok && found.reason === "ambiguous") {
      return fail(
        `${directory.name} has ${found.count} entries with the username ${user.username}, so Roster can't tell which one is this user. Nothing was changed.`,
        "directoryId",
      );
    }
    if (!found.ok) {
      return fail(
        `${directory.name} has no user with the username ${user.username}. Nothing was changed.`,
        "directoryId",
      );
    }
    if (nameKey(found.entry.username) !== user.usernameKey) {
      return fail(
        `The entry found in ${directory.name} has another username. Nothing was changed.`,
        "directoryId",
      );
    }
    const [linked] = await deps.db
      .select({ username: users.username })
      .from(users)
      .where(and(eq(users.directoryId, directory.id), eq(users.externalId, found.entry.externalId)));
    if (linked) {
      return fail(
        `That entry in ${directory.name} is already linked to the Roster user ${linked.username}. Nothing was changed.`,
        "directoryId",
      );
    }
    // One transaction: a link that would leave nobody able to sign in and manage users (the entry is
    // disabled in the directory, and this was the last such user) is not made at all.
    return attempt(deps.db, async (tx) => {
      const outcome = await syncUserEntry(tx, directory.id, found.entry, { convertInternal: true });
      if (outcome.outcome === "conflict") throw new Refusal(outcome.reason, "directoryId");
      if (outcome.user.id !== user.id) {
        throw new Refusal(
          "That entry is already linked to another Roster user. Nothing was changed.",
          "directoryId",
        );
      }
      if (!outcome.user.enabled)
        await ensureManagersRemain(tx, `Linking ${user.username} to a disabled entry`);
      await recordAudit(tx, actor, {
        action: "user.convert_to_external",
        targetType: "user",
        targetId: user.id,
        targetName: outcome.user.username,
        details: { directory: directory.name, dn: found.entry.dn, changes: outcome.changes },
      });
      return { user: outcome.user, directoryName: directory.name, changes: outcome.changes };
    });
  });
}

/**
 * External → internal: the user gets a Roster password and keeps everything else, roles included;
 * the directory no longer owns its fields. Its other sessions end.
 */
export async function convertToInternal(
  db: Db,
  actor: Actor,
  userId: number,
  password: string,
  keepSessionId?: string,
): Promise<Outcome<User>> {
  const passwordHash = await hashPassword(password);
  return attempt(db, async (tx) => {
    const [user] = await tx.select().from(users).where(eq(users.id, userId)).for("update");
    if (!user) throw new Refusal("This user no longer exists.");
    if (user.kind !== "external") throw new Refusal("This user is internal already.");
    const directoryName = (await loadDirectoryName(tx, user.directoryId)) ?? "a deleted directory";
    const converted = await unlinkFromDirectory(tx, userId, passwordHash);
    await endSessionsOf(tx, userId, keepSessionId);
    await recordAudit(tx, actor, {
      action: "user.convert_to_internal",
      targetType: "user",
      targetId: user.id,
      targetName: user.username,
      details: { directory: directoryName, dn: user.dn },
    });
    return converted;
  });
}

async function loadUser(db: Db, id: number): Promise<User | null> {
  const [user] = await db.select().from(users).where(eq(users.id, id));
  return user ?? null;
}

async function loadDirectoryName(db: Db, id: number | null): Promise<string | null> {
  if (id === null) return null;
  const [row] = await db.select({ name: directories.name }).from(directories).where(eq(directories.id, id));
  return row?.name ?? null;
}
