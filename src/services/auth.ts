import { and, count, eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { roleAssignments, roles, users } from "../db/schema.ts";
import { type Actor, recordAudit, SYSTEM_ACTOR } from "./audit.ts";
import { nameKey, normalizeName, userSearchText } from "./names.ts";
import { hashPassword, verifyAgainstDummy, verifyPassword } from "./passwords.ts";

export type User = typeof users.$inferSelect;

/**
 * Checks a password for an external user against its directory. Supplied by the directory sign-in
 * service; without it external users cannot sign in.
 */
export interface ExternalAuthenticator {
  (user: User, password: string): Promise<"ok" | "rejected" | "missing">;
  /**
   * Sign-in with a name no Roster user has as its username: a directory's own sign-in name
   * standing for an imported user (Active Directory's `alice@example.com` or `EXAMPLE\alice`), or
   * a person a directory lets in at first sign-in (created then). The user once its directory has
   * accepted the password; "rejected" when a directory knows the name but refused; null when the
   * name stands for nobody.
   */
  signInByName?(name: string, password: string): Promise<User | "rejected" | null>;
}

export type SignInResult = { ok: true; user: User } | { ok: false };

export async function signIn(
  db: Db,
  username: string,
  password: string,
  externalAuth?: ExternalAuthenticator,
): Promise<SignInResult> {
  const [user] = await db
    .select()
    .from(users)
    .where(eq(users.usernameKey, nameKey(normalizeName(username))));
  if (!user) return signInByName(db, username, password, externalAuth);
  const passwordOk =
    user.kind === "internal"
      ? user.passwordHash !== null && (await verifyPassword(user.passwordHash, password))
      : externalAuth !== undefined && (await externalAuth(user, password)) === "ok";
  return passwordOk ? startSignIn(db, user) : { ok: false };
}

async function signInByName(
  db: Db,
  name: string,
  password: string,
  externalAuth?: ExternalAuthenticator,
): Promise<SignInResult> {
  const found = (await externalAuth?.signInByName?.(name, password)) ?? null;
  // Nobody: the same time as a real password check, so an unknown name can't be told apart.
  if (found === null) return { ok: await verifyAgainstDummy(password) };
  // Only an external user can be reached this way: its directory has checked the password.
  return found !== "rejected" && found.kind === "external" ? startSignIn(db, found) : { ok: false };
}

/** The password was right: the sign-in is recorded, if the user may sign in. */
async function startSignIn(db: Db, user: User): Promise<SignInResult> {
  // The directory's check synchronizes the user: an account it enabled again may sign in now.
  const [current] = await db
    .update(users)
    .set({ lastLoginAt: new Date(), lastActivityAt: new Date() })
    .where(and(eq(users.id, user.id), eq(users.enabled, true)))
    .returning();
  return current ? { ok: true, user: current } : { ok: false };
}

export interface NewInternalUser {
  username: string;
  password: string;
  fullName?: string;
  email?: string;
}

export async function insertInternalUser(db: Db, input: NewInternalUser): Promise<User> {
  const username = normalizeName(input.username);
  const fullName = input.fullName?.trim() ?? "";
  const email = input.email?.trim() ?? "";
  const [user] = await db
    .insert(users)
    .values({
      kind: "internal",
      username,
      usernameKey: nameKey(username),
      fullName,
      email,
      searchText: userSearchText(username, fullName, email),
      passwordHash: await hashPassword(input.password),
    })
    .returning();
  if (!user) throw new Error("insert returned no row");
  return user;
}

/** True until the first user exists: only then is the one-time setup page offered. */
export async function needsSetup(db: Db): Promise<boolean> {
  const [row] = await db.select({ n: count() }).from(users);
  return Number(row?.n ?? 0) === 0;
}

export type FirstAdminResult = { ok: true; user: User } | { ok: false; reason: "already_set_up" };

/**
 * Creates the first Server Administrator. The predefined role's row is locked first, so two
 * instances (or two browsers) racing through setup create one administrator, not two.
 */
export async function createFirstAdmin(
  db: Db,
  input: NewInternalUser,
  actor?: Actor,
): Promise<FirstAdminResult> {
  return db.transaction(async (tx) => {
    const [role] = await tx.select().from(roles).where(eq(roles.key, "server_admin")).for("update");
    if (!role) throw new Error("predefined roles are missing; run ensurePredefinedRoles first");
    const [existing] = await tx.select({ n: count() }).from(users);
    if (Number(existing?.n ?? 0) > 0) return { ok: false, reason: "already_set_up" } as const;
    const user = await insertInternalUser(tx as unknown as Db, input);
    await tx.insert(roleAssignments).values({ roleId: role.id, userId: user.id, scope: "" });
    await recordAudit(tx as unknown as Db, actor ?? { id: user.id, name: user.username }, {
      action: "user.create_first_admin",
      targetType: "user",
      targetId: user.id,
      targetName: user.username,
    });
    return { ok: true, user } as const;
  });
}

/** Creates the configured bootstrap administrator on first start; never changes an existing user. */
export async function bootstrapAdmin(
  db: Db,
  admin: { username: string; password: string } | null,
): Promise<void> {
  if (!admin) return;
  const [existing] = await db
    .select({ id: users.id })
    .from(users)
    .where(eq(users.usernameKey, nameKey(normalizeName(admin.username))));
  if (existing) return;
  await createFirstAdmin(db, admin, SYSTEM_ACTOR);
}

const ACTIVITY_INTERVAL_MS = 60_000;

/** When this process last recorded each user's activity, per database. */
const activityRecorded = new WeakMap<Db, Map<number, number>>();

/**
 * Records activity at most once a minute per user, so page views don't each cost a write: this
 * process skips the statement within the minute, and the condition holds across instances.
 */
export async function touchActivity(db: Db, userId: number): Promise<void> {
  const now = Date.now();
  const recorded = activityRecorded.get(db) ?? new Map<number, number>();
  activityRecorded.set(db, recorded);
  const at = recorded.get(userId);
  if (at !== undefined && now - at < ACTIVITY_INTERVAL_MS) return;
  await db
    .update(users)
    .set({ lastActivityAt: sql`now()` })
    .where(
      sql`${users.id} = ${userId} and (${users.lastActivityAt} is null or ${users.lastActivityAt} < now() - interval '1 minute')`,
    );
  if (recorded.size > 10_000) {
    for (const [id, time] of recorded) if (now - time >= ACTIVITY_INTERVAL_MS) recorded.delete(id);
  }
  recorded.set(userId, now);
}
