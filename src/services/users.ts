import { asc, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { directories, groupMembers, groups, sessions, users } from "../db/schema.ts";
import { type Actor, recordAudit } from "./audit.ts";
import type { User } from "./auth.ts";
import { attempt, ensureManagersRemain, isUniqueViolation, type Outcome, Refusal } from "./guards.ts";
import { nameKey, normalizeName, userSearchText } from "./names.ts";
import { hashPassword } from "./passwords.ts";
import { changesBetween } from "./roles.ts";

export type { User } from "./auth.ts";

export interface UserDetails extends User {
  directoryName: string | null;
  directoryEnabled: boolean | null;
}

export async function getUser(db: Db, id: number): Promise<UserDetails | null> {
  const [row] = await db
    .select({ user: users, directoryName: directories.name, directoryEnabled: directories.enabled })
    .from(users)
    .leftJoin(directories, eq(directories.id, users.directoryId))
    .where(eq(users.id, id));
  return row
    ? { ...row.user, directoryName: row.directoryName, directoryEnabled: row.directoryEnabled }
    : null;
}

export interface AccountFields {
  fullName: string;
  email: string;
  department: string;
  phone: string;
}

export interface NewUser extends AccountFields {
  username: string;
  password: string;
}

export async function createInternalUser(db: Db, actor: Actor, input: NewUser): Promise<Outcome<User>> {
  const username = normalizeName(input.username);
  const passwordHash = await hashPassword(input.password);
  return attempt(db, async (tx) => {
    const [taken] = await tx
      .select({ id: users.id })
      .from(users)
      .where(eq(users.usernameKey, nameKey(username)));
    if (taken) throw new Refusal("Another user already has this username.", "username");
    const [user] = await tx
      .insert(users)
      .values({
        kind: "internal",
        username,
        usernameKey: nameKey(username),
        ...accountValues(username, input),
        passwordHash,
      })
      .returning();
    if (!user) throw new Error("insert returned no row");
    await recordAudit(tx, actor, {
      action: "user.create",
      targetType: "user",
      targetId: user.id,
      targetName: user.username,
    });
    return user;
  }).catch((err: unknown): Outcome<User> => {
    if (isUniqueViolation(err)) {
      return { ok: false, field: "username", message: "Another user already has this username." };
    }
    throw err;
  });
}

function accountValues(username: string, input: AccountFields) {
  const fullName = input.fullName.trim();
  const email = input.email.trim();
  return {
    fullName,
    email,
    department: input.department.trim(),
    phone: input.phone.trim(),
    searchText: userSearchText(username, fullName, email),
  };
}

/** Internal users: everything but the username. External users' fields belong to their directory. */
export async function updateAccount(
  db: Db,
  actor: Actor,
  id: number,
  input: AccountFields,
): Promise<Outcome<{ user: User; changed: string[] }>> {
  return attempt(db, async (tx) => {
    const [before] = await tx.select().from(users).where(eq(users.id, id)).for("update");
    if (!before) throw new Refusal("This user no longer exists.");
    if (before.kind !== "internal") {
      throw new Refusal("An external user's details come from the directory: synchronize instead.");
    }
    const [user] = await tx
      .update(users)
      .set({ ...accountValues(before.username, input), updatedAt: new Date() })
      .where(eq(users.id, id))
      .returning();
    if (!user) throw new Error("update returned no row");
    const changes = changesBetween(before, user, ["fullName", "email", "department", "phone"]);
    if (Object.keys(changes).length > 0) {
      await recordAudit(tx, actor, {
        action: "user.update",
        targetType: "user",
        targetId: user.id,
        targetName: user.username,
        details: { changes },
      });
    }
    return { user, changed: Object.keys(changes) };
  });
}

export interface EnableResult {
  changed: string[];
  unchanged: string[];
}

/**
 * Enables or disables sign-in for users. Refuses to disable the acting user, or the last users who
 * can manage users; a disabled user's sessions end at their next request.
 */
export async function setLoginEnabled(
  db: Db,
  actor: Actor,
  ids: number[],
  enabled: boolean,
): Promise<Outcome<EnableResult>> {
  const unique = [...new Set(ids)];
  return attempt(db, async (tx) => {
    if (unique.length === 0) throw new Refusal("Choose at least one user.", "user");
    if (!enabled && actor.id !== null && unique.includes(actor.id)) {
      throw new Refusal("You can't disable your own account.");
    }
    const found = await tx
      .select()
      .from(users)
      .where(inArray(users.id, unique))
      .orderBy(asc(users.usernameKey));
    if (found.length !== unique.length) throw new Refusal("One of the chosen users no longer exists.");
    // Disabling a user the directory disabled makes it the administrator's choice: the directory
    // enabling the account again then no longer enables it here.
    const toChange = found.filter((u) => u.enabled !== enabled || u.disabledByDirectory);
    if (toChange.length > 0) {
      await tx
        .update(users)
        .set({ enabled, disabledByDirectory: false, updatedAt: new Date() })
        .where(
          inArray(
            users.id,
            toChange.map((u) => u.id),
          ),
        );
      if (!enabled) {
        const names = toChange.length === 1 ? (toChange[0]?.username ?? "") : `${toChange.length} users`;
        await ensureManagersRemain(tx, `Disabling ${names}`);
      }
      for (const user of toChange) {
        await recordAudit(tx, actor, {
          action: enabled ? "user.enable" : "user.disable",
          targetType: "user",
          targetId: user.id,
          targetName: user.username,
        });
      }
    }
    return {
      changed: toChange.map((u) => u.username),
      unchanged: found.filter((u) => !toChange.includes(u)).map((u) => u.username),
    };
  });
}

/** Sets an internal user's password and ends that user's other sessions. */
export async function resetPassword(
  db: Db,
  actor: Actor,
  id: number,
  password: string,
  keepSessionId?: string,
): Promise<Outcome<User>> {
  const passwordHash = await hashPassword(password);
  return attempt(db, async (tx) => {
    const [user] = await tx.select().from(users).where(eq(users.id, id)).for("update");
    if (!user) throw new Refusal("This user no longer exists.");
    if (user.kind !== "internal") {
      throw new Refusal(
        "An external user's password is kept by the directory. Convert the user to internal first.",
      );
    }
    await tx.update(users).set({ passwordHash, updatedAt: new Date() }).where(eq(users.id, id));
    await endSessionsOf(tx, id, keepSessionId);
    await recordAudit(tx, actor, {
      action: "user.password_reset",
      targetType: "user",
      targetId: user.id,
      targetName: user.username,
    });
    return user;
  });
}

/** Signs a user out everywhere (but the session given). */
export async function endSessionsOf(db: Db, userId: number, keepSessionId?: string): Promise<void> {
  await db
    .delete(sessions)
    .where(
      sql`(${sessions.sess} ->> 'userId') = ${String(userId)} and ${sessions.sid} <> ${keepSessionId ?? ""}`,
    );
}

export interface GroupRef {
  id: number;
  name: string;
  kind: "internal" | "external";
}

/** The groups a user is a direct member of. */
export async function groupsOfUser(db: Db, userId: number): Promise<GroupRef[]> {
  return db
    .select({ id: groups.id, name: groups.name, kind: groups.kind })
    .from(groupMembers)
    .innerJoin(groups, eq(groups.id, groupMembers.groupId))
    .where(eq(groupMembers.userId, userId))
    .orderBy(asc(groups.nameKey));
}

export interface UserRef {
  id: number;
  username: string;
  fullName: string;
}

export async function usersByIds(db: Db, ids: number[]): Promise<UserRef[]> {
  const unique = [...new Set(ids)].filter((id) => Number.isSafeInteger(id));
  if (unique.length === 0) return [];
  return db
    .select({ id: users.id, username: users.username, fullName: users.fullName })
    .from(users)
    .where(inArray(users.id, unique))
    .orderBy(asc(users.usernameKey));
}
