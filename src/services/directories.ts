/**
 * Settings › Directories: the LDAP servers Roster reads users and groups from. Plain inputs and
 * outputs; the service password is encrypted here and nowhere else, and never leaves as plain text
 * except inside a DirectoryConnection handed to src/ldap.
 */
import { X509Certificate } from "node:crypto";
import { and, asc, count, desc, eq, inArray, ne, notInArray, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { directories, directoryDefaultRoles, groups, roles, users } from "../db/schema.ts";
import type { DirectoryLogger } from "../ldap/client.ts";
import { dnEquals, isValidDn } from "../ldap/dn.ts";
import type { PresetId } from "../ldap/presets.ts";
import { type ConnectionTestResult, testConnection } from "../ldap/test-connection.ts";
import type { DirectoryConnection, DirectoryMapping } from "../ldap/types.ts";
import { type Actor, recordAudit } from "./audit.ts";
import { attempt, ensureManagersRemain, isUniqueViolation, type Outcome, Refusal } from "./guards.ts";
import { likePattern } from "./names.ts";
import type { SecretBox } from "./secrets.ts";
import { disableUsersOfDirectory } from "./sync/entries.ts";

export type Directory = typeof directories.$inferSelect;

export interface LoadedDirectory {
  connection: DirectoryConnection;
  mapping: DirectoryMapping;
  directory: Directory;
}

export interface DefaultRole {
  roleId: number;
  /** '' for a global assignment, else a resource reference such as `project:42`. */
  scope: string;
}

export interface DefaultRoleView extends DefaultRole {
  roleName: string;
}

export type BindMode = "anonymous" | "service";

export type SignInPolicy = Directory["signInPolicy"];

export const SIGN_IN_POLICIES: readonly SignInPolicy[] = ["imported", "groups", "anyone"];

/** Who may sign in through a directory; `groupIds` counts only with the policy "groups". */
export interface SignInRule {
  policy: SignInPolicy;
  groupIds: number[];
}

/** Everything the form sets. `bindPassword` empty or null keeps the stored password. */
export interface DirectorySettings {
  name: string;
  preset: PresetId;
  urls: string[];
  startTls: boolean;
  caCertPem: string | null;
  verifyCertificate: boolean;
  connectTimeoutMs: number;
  operationTimeoutMs: number;
  bindMode: BindMode;
  bindDn: string | null;
  bindPassword: string | null;
  baseDn: string;
  mapping: DirectoryMapping;
  defaultRoles: DefaultRole[];
  /** Absent: a new directory admits only imported users; an edited one keeps its rule. */
  signIn?: SignInRule;
}

/** The parts of the settings a connection test needs. */
export type ConnectionSettings = Omit<DirectorySettings, "name" | "preset" | "defaultRoles" | "signIn">;

// ——— Reading ———

export async function listDirectories(db: Db): Promise<Directory[]> {
  return db.select().from(directories).orderBy(asc(directories.position), asc(directories.id));
}

/** Enabled directories in the order sign-in tries them. */
export async function listEnabledDirectories(db: Db): Promise<Directory[]> {
  return db
    .select()
    .from(directories)
    .where(eq(directories.enabled, true))
    .orderBy(asc(directories.position), asc(directories.id));
}

export async function getDirectory(db: Db, id: number): Promise<Directory | null> {
  const [directory] = await db.select().from(directories).where(eq(directories.id, id));
  return directory ?? null;
}

export async function defaultRolesOf(db: Db, directoryId: number): Promise<DefaultRoleView[]> {
  return db
    .select({
      roleId: directoryDefaultRoles.roleId,
      scope: directoryDefaultRoles.scope,
      roleName: roles.name,
    })
    .from(directoryDefaultRoles)
    .innerJoin(roles, eq(roles.id, directoryDefaultRoles.roleId))
    .where(eq(directoryDefaultRoles.directoryId, directoryId))
    .orderBy(asc(roles.name), asc(directoryDefaultRoles.scope));
}

export interface GroupChoice {
  id: number;
  name: string;
  description: string;
}

/** How many of a directory's groups the sign-in setting lists besides those chosen. */
export const SIGN_IN_GROUP_CHOICES = 50;

/**
 * The groups the sign-in setting offers: those chosen (that still exist), then the directory's other
 * imported groups by name — only those whose name or description has `search`, and at most
 * SIGN_IN_GROUP_CHOICES of them. `total` counts every group imported from the directory.
 */
export async function signInGroupChoices(
  db: Db,
  directoryId: number | null,
  options: { chosen: readonly number[]; search?: string },
): Promise<{ chosen: GroupChoice[]; others: GroupChoice[]; total: number }> {
  if (directoryId === null) return { chosen: [], others: [], total: 0 };
  const ofDirectory = and(eq(groups.directoryId, directoryId), eq(groups.kind, "external"));
  const columns = { id: groups.id, name: groups.name, description: groups.description };
  const chosenIds = [...new Set(options.chosen)];
  const chosen =
    chosenIds.length === 0
      ? []
      : await db
          .select(columns)
          .from(groups)
          .where(and(ofDirectory, inArray(groups.id, chosenIds)))
          .orderBy(asc(groups.nameKey));
  const search = options.search?.trim() ?? "";
  const others = await db
    .select(columns)
    .from(groups)
    .where(
      and(
        ofDirectory,
        chosenIds.length === 0 ? undefined : notInArray(groups.id, chosenIds),
        search === "" ? undefined : sql`${groups.searchText} like ${likePattern(search)}`,
      ),
    )
    .orderBy(asc(groups.nameKey))
    .limit(SIGN_IN_GROUP_CHOICES);
  const [total] = await db.select({ n: count() }).from(groups).where(ofDirectory);
  return { chosen, others, total: Number(total?.n ?? 0) };
}

/** The names of the groups a directory's sign-in rule names, for the list and the audit log. */
export async function signInGroupNames(db: Db, directory: Pick<Directory, "id" | "signInGroupIds">) {
  if (directory.signInGroupIds.length === 0) return [];
  const rows = await db
    .select({ name: groups.name })
    .from(groups)
    .where(
      and(
        eq(groups.directoryId, directory.id),
        eq(groups.kind, "external"),
        inArray(groups.id, directory.signInGroupIds),
      ),
    )
    .orderBy(asc(groups.nameKey));
  return rows.map((row) => row.name);
}

/** The roles a default assignment may use: predefined first, then custom ones, by name. */
export async function listRoleChoices(db: Db): Promise<{ id: number; name: string }[]> {
  return db
    .select({ id: roles.id, name: roles.name })
    .from(roles)
    .orderBy(desc(roles.predefined), asc(roles.name));
}

/** A directory's connection (with the decrypted password) and mapping, as src/ldap takes them. */
export async function loadDirectoryConnection(
  db: Db,
  secretBox: SecretBox,
  id: number,
): Promise<LoadedDirectory | null> {
  const directory = await getDirectory(db, id);
  return directory ? toLoaded(directory, secretBox) : null;
}

export function toLoaded(directory: Directory, secretBox: SecretBox): LoadedDirectory {
  return {
    directory,
    connection: connectionOf(directory, storedPassword(directory, secretBox)),
    mapping: mappingOf(directory),
  };
}

export function connectionOf(
  source: Pick<
    Directory,
    | "urls"
    | "startTls"
    | "caCertPem"
    | "verifyCertificate"
    | "connectTimeoutMs"
    | "operationTimeoutMs"
    | "bindDn"
    | "baseDn"
  >,
  bindPassword: string | null,
): DirectoryConnection {
  return {
    urls: [...source.urls],
    startTls: source.startTls,
    caCertPem: source.caCertPem,
    verifyCertificate: source.verifyCertificate,
    connectTimeoutMs: source.connectTimeoutMs,
    operationTimeoutMs: source.operationTimeoutMs,
    bindDn: source.bindDn,
    bindPassword: source.bindDn ? bindPassword : null,
    baseDn: source.baseDn,
  };
}

export function mappingOf(directory: Directory): DirectoryMapping {
  return {
    userBase: directory.userBase,
    userFilter: directory.userFilter,
    userScope: directory.userScope,
    groupBase: directory.groupBase,
    groupFilter: directory.groupFilter,
    groupScope: directory.groupScope,
    attrUsername: directory.attrUsername,
    attrFullName: directory.attrFullName,
    attrEmail: directory.attrEmail,
    attrDepartment: directory.attrDepartment,
    attrPhone: directory.attrPhone,
    attrUniqueId: directory.attrUniqueId,
    attrGroupName: directory.attrGroupName,
    attrMember: directory.attrMember,
    memberValues: directory.memberValues,
    pageSize: directory.pageSize,
  };
}

export class StoredSecretError extends Error {
  constructor(directoryName: string, options?: { cause?: unknown }) {
    super(
      `The stored password of ${directoryName} can't be decrypted (was ROSTER_ENCRYPTION_KEY changed?). Enter the password again and save.`,
      options,
    );
    this.name = "StoredSecretError";
  }
}

function storedPassword(directory: Directory, secretBox: SecretBox): string | null {
  if (!directory.bindPasswordEncrypted) return null;
  try {
    return secretBox.decrypt(directory.bindPasswordEncrypted);
  } catch (err) {
    throw new StoredSecretError(directory.name, { cause: err });
  }
}

// ——— Addresses, passwords and certificates ———

/** `ldap://Host` and `ldap://host:389/` are the same server: scheme, lower-cased host and port. */
export function serverAddress(url: string): string {
  const parsed = new URL(url);
  const secure = parsed.protocol === "ldaps:";
  const port = parsed.port || (secure ? "636" : "389");
  return `${parsed.protocol}//${parsed.hostname.toLowerCase()}:${port}`;
}

export type PasswordDecision =
  | { ok: true; password: string | null; keepStored: boolean }
  | { ok: false; message: string };

/**
 * Which password a save or a connection test uses. A blank field keeps the stored password, but
 * only while it goes to the same servers as the same account: otherwise anyone allowed to edit
 * the form could send the stored password to a server of their choosing.
 */
export function decideBindPassword(
  existing: Directory | null,
  settings: Pick<ConnectionSettings, "bindMode" | "bindDn" | "bindPassword" | "urls">,
  secretBox: SecretBox,
): PasswordDecision {
  if (settings.bindMode === "anonymous") return { ok: true, password: null, keepStored: false };
  if (settings.bindPassword) return { ok: true, password: settings.bindPassword, keepStored: false };
  if (!existing?.bindPasswordEncrypted) {
    return { ok: false, message: "Enter the service account's password." };
  }
  const knownServers = new Set(existing.urls.map(serverAddress));
  const sameServers = settings.urls.every((url) => knownServers.has(serverAddress(url)));
  if (!sameServers || !sameBindName(existing.bindDn, settings.bindDn)) {
    return {
      ok: false,
      message:
        "Enter the password again: the server URLs or the bind account changed, and Roster sends a stored password only to the servers and account it was saved for.",
    };
  }
  try {
    return { ok: true, password: secretBox.decrypt(existing.bindPasswordEncrypted), keepStored: true };
  } catch (err) {
    return { ok: false, message: new StoredSecretError(existing.name, { cause: err }).message };
  }
}

/** The same account: DNs compared parsed, user names (`svc@example.com`, `EXAMPLE\\svc`) case-insensitively. */
function sameBindName(stored: string | null, typed: string | null): boolean {
  if (stored === null || typed === null) return false;
  if (isValidDn(stored) && isValidDn(typed)) return dnEquals(stored, typed);
  return stored.toLowerCase() === typed.toLowerCase();
}

/** SHA-256 fingerprints of the certificates in a PEM bundle (for the audit log, not the PEM itself). */
export function certificateFingerprints(pem: string | null): string[] {
  if (!pem) return [];
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => {
    try {
      return new X509Certificate(block).fingerprint256;
    } catch {
      return "unreadable";
    }
  });
}

// ——— Changes ———

export async function createDirectory(
  db: Db,
  secretBox: SecretBox,
  actor: Actor,
  settings: DirectorySettings,
): Promise<Outcome<Directory>> {
  return attempt(db, async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('roster.directories'))`);
    await refuseTakenName(tx, settings.name, null);
    await refuseDuplicateServer(tx, settings, null);
    const password = passwordOrRefuse(null, settings, secretBox);
    const [{ next } = { next: 1 }] = await tx
      .select({ next: sql<number>`coalesce(max(${directories.position}), 0) + 1` })
      .from(directories);
    const [directory] = await tx
      .insert(directories)
      .values({
        ...columnsOf(settings),
        position: Number(next),
        bindPasswordEncrypted: password.password === null ? null : secretBox.encrypt(password.password),
      })
      .returning();
    if (!directory) throw new Error("insert returned no row");
    await refuseForeignSignInGroups(tx, directory.id, settings.signIn);
    const defaults = await replaceDefaultRoles(tx, directory.id, settings.defaultRoles);
    await recordAudit(tx, actor, {
      action: "directory.create",
      targetType: "directory",
      targetId: directory.id,
      targetName: directory.name,
      details: { settings: auditView(directory, defaults, await signInGroupNames(tx, directory)) },
    });
    return directory;
  }).catch(nameTakenOnRace<Directory>);
}

export async function updateDirectory(
  db: Db,
  secretBox: SecretBox,
  actor: Actor,
  id: number,
  settings: DirectorySettings,
): Promise<Outcome<Directory>> {
  return attempt(db, async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('roster.directories'))`);
    const [before] = await tx.select().from(directories).where(eq(directories.id, id)).for("update");
    if (!before) throw new Refusal("This directory no longer exists.");
    await refuseTakenName(tx, settings.name, id);
    await refuseDuplicateServer(tx, settings, id);
    const password = passwordOrRefuse(before, settings, secretBox);
    const encrypted = password.keepStored
      ? before.bindPasswordEncrypted
      : password.password === null
        ? null
        : secretBox.encrypt(password.password);
    const defaultsBefore = await defaultRolesOf(tx, id);
    const [directory] = await tx
      .update(directories)
      .set({ ...columnsOf(settings), bindPasswordEncrypted: encrypted, updatedAt: new Date() })
      .where(eq(directories.id, id))
      .returning();
    if (!directory) throw new Error("update returned no row");
    await refuseForeignSignInGroups(tx, directory.id, settings.signIn);
    const defaultsAfter = await replaceDefaultRoles(tx, id, settings.defaultRoles);
    const changes = changesBetween(
      auditView(before, defaultsBefore, await signInGroupNames(tx, before)),
      auditView(directory, defaultsAfter, await signInGroupNames(tx, directory)),
    );
    if (!password.keepStored && password.password !== null) changes.bindPassword = ["(hidden)", "changed"];
    // Who may sign in has an entry of its own, so the audit log can be filtered for it.
    const { signIn, ...otherChanges } = changes;
    const target = { targetType: "directory", targetId: directory.id, targetName: directory.name };
    if (signIn) {
      await recordAudit(tx, actor, {
        action: "directory.sign_in_changed",
        ...target,
        details: { from: signIn[0], to: signIn[1] },
      });
    }
    if (!signIn || Object.keys(otherChanges).length > 0) {
      await recordAudit(tx, actor, {
        action: "directory.update",
        ...target,
        details: { changes: otherChanges },
      });
    }
    return directory;
  }).catch(nameTakenOnRace<Directory>);
}

export interface MoveResult {
  directory: Directory;
  /** 1-based place in the sign-in order after the move. */
  place: number;
  moved: boolean;
}

/** Swaps a directory with its neighbour in the sign-in order (positions are renumbered 1…n). */
export async function moveDirectory(
  db: Db,
  actor: Actor,
  id: number,
  direction: "up" | "down",
): Promise<Outcome<MoveResult>> {
  return attempt(db, async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('roster.directories'))`);
    const ordered = await tx
      .select()
      .from(directories)
      .orderBy(asc(directories.position), asc(directories.id))
      .for("update");
    const index = ordered.findIndex((d) => d.id === id);
    const directory = ordered[index];
    if (!directory) throw new Refusal("This directory no longer exists.");
    const swapWith = direction === "up" ? index - 1 : index + 1;
    if (swapWith < 0 || swapWith >= ordered.length) return { directory, place: index + 1, moved: false };
    const reordered = [...ordered];
    [reordered[index], reordered[swapWith]] = [ordered[swapWith] as Directory, directory];
    for (const [i, d] of reordered.entries()) {
      if (d.position !== i + 1) {
        await tx
          .update(directories)
          .set({ position: i + 1 })
          .where(eq(directories.id, d.id));
      }
    }
    await recordAudit(tx, actor, {
      action: "directory.move",
      targetType: "directory",
      targetId: directory.id,
      targetName: directory.name,
      details: { direction, from: index + 1, to: swapWith + 1 },
    });
    return { directory, place: swapWith + 1, moved: true };
  });
}

/**
 * A disabled directory is skipped at sign-in (its users can't sign in) but can still be imported
 * from. Refused when it would leave nobody able to sign in and manage users.
 */
export async function setDirectoryEnabled(
  db: Db,
  actor: Actor,
  id: number,
  enabled: boolean,
): Promise<Outcome<{ directory: Directory; changed: boolean }>> {
  return attempt(db, async (tx) => {
    const [before] = await tx.select().from(directories).where(eq(directories.id, id)).for("update");
    if (!before) throw new Refusal("This directory no longer exists.");
    if (before.enabled === enabled) return { directory: before, changed: false };
    const [directory] = await tx
      .update(directories)
      .set({ enabled, updatedAt: new Date() })
      .where(eq(directories.id, id))
      .returning();
    if (!directory) throw new Error("update returned no row");
    if (!enabled) await ensureManagersRemain(tx, `Disabling ${directory.name}`);
    await recordAudit(tx, actor, {
      action: enabled ? "directory.enable" : "directory.disable",
      targetType: "directory",
      targetId: directory.id,
      targetName: directory.name,
    });
    return { directory, changed: true };
  });
}

export interface DeletionImpact {
  externalUsers: number;
  enabledExternalUsers: number;
  groups: number;
}

export async function deletionImpact(db: Db, id: number): Promise<DeletionImpact> {
  const [people] = await db
    .select({
      all: count(),
      enabled: sql<number>`count(*) filter (where ${users.enabled})`,
    })
    .from(users)
    .where(and(eq(users.directoryId, id), eq(users.kind, "external")));
  const [groupCount] = await db.select({ n: count() }).from(groups).where(eq(groups.directoryId, id));
  return {
    externalUsers: Number(people?.all ?? 0),
    enabledExternalUsers: Number(people?.enabled ?? 0),
    groups: Number(groupCount?.n ?? 0),
  };
}

/**
 * Deletes a directory. Its external users stay, disabled, with their role assignments (a trigger
 * of migration 0004 sets their directory to null); its groups stay too (their foreign key does).
 */
export async function deleteDirectory(
  db: Db,
  actor: Actor,
  id: number,
): Promise<Outcome<{ directory: Directory; usersDisabled: number; groupsKept: number }>> {
  return attempt(db, async (tx) => {
    const [directory] = await tx.select().from(directories).where(eq(directories.id, id)).for("update");
    if (!directory) throw new Refusal("This directory no longer exists.");
    const usersDisabled = await disableUsersOfDirectory(tx, id);
    const [kept] = await tx.select({ n: count() }).from(groups).where(eq(groups.directoryId, id));
    await tx.delete(directories).where(eq(directories.id, id));
    await ensureManagersRemain(tx, `Deleting ${directory.name}`);
    const result = { directory, usersDisabled, groupsKept: Number(kept?.n ?? 0) };
    await recordAudit(tx, actor, {
      action: "directory.delete",
      targetType: "directory",
      targetId: directory.id,
      targetName: directory.name,
      details: { usersDisabled: result.usersDisabled, groupsKept: result.groupsKept },
    });
    return result;
  });
}

// ——— Connection tests ———

/** Tests settings as typed in the form, saved or not; stores nothing. */
export async function testConnectionSettings(
  settings: ConnectionSettings,
  password: string | null,
  logger?: DirectoryLogger,
): Promise<ConnectionTestResult> {
  const connection = connectionOf({ ...settings, bindDn: bindDnOf(settings) }, password);
  return testConnection(connection, settings.mapping, { logger });
}

/** The outcome of a test of the form's settings, run before the directory was added. */
export interface FormTestOutcome {
  ok: boolean;
  usersCount: number | null;
  groupsCount: number | null;
  /** When it ran, ms since the epoch. */
  at: number;
}

/** Keeps, for a directory just added, the test its administrator ran on the same settings. */
export async function recordFormTest(db: Db, id: number, test: FormTestOutcome): Promise<Directory | null> {
  const [updated] = await db
    .update(directories)
    .set({
      lastTestedAt: new Date(test.at),
      lastTestOk: test.ok,
      lastUserCount: test.usersCount,
      lastGroupCount: test.groupsCount,
    })
    .where(eq(directories.id, id))
    .returning();
  return updated ?? null;
}

/** Tests a saved directory and keeps the outcome (shown in the list) and an audit entry. */
export async function testSavedDirectory(
  db: Db,
  secretBox: SecretBox,
  actor: Actor,
  id: number,
  logger?: DirectoryLogger,
): Promise<{ directory: Directory; result: ConnectionTestResult } | null> {
  const directory = await getDirectory(db, id);
  if (!directory) return null;
  let result: ConnectionTestResult;
  try {
    const loaded = toLoaded(directory, secretBox);
    result = await testConnection(loaded.connection, loaded.mapping, { logger });
  } catch (err) {
    if (!(err instanceof StoredSecretError)) throw err;
    result = {
      ok: false,
      steps: [
        {
          step: "bind",
          ok: false,
          ms: 0,
          message: err.message,
          error: { kind: "invalid_credentials", message: err.message, detail: "stored password unreadable" },
        },
      ],
    };
  }
  const [updated] = await db
    .update(directories)
    .set({
      lastTestedAt: new Date(),
      lastTestOk: result.ok,
      lastUserCount: result.usersCount ?? null,
      lastGroupCount: result.groupsCount ?? null,
    })
    .where(eq(directories.id, id))
    .returning();
  const failed = result.steps.find((step) => !step.ok);
  await recordAudit(db, actor, {
    action: "directory.test_connection",
    targetType: "directory",
    targetId: id,
    targetName: directory.name,
    details: {
      ok: result.ok,
      serverUrl: result.serverUrl ?? null,
      users: result.usersCount ?? null,
      groups: result.groupsCount ?? null,
      ...(failed
        ? { failedStep: failed.step, reason: failed.error?.kind, ldapCode: failed.error?.ldapCode }
        : {}),
    },
  });
  return { directory: updated ?? directory, result };
}

// ——— Steps ———

function bindDnOf(settings: Pick<ConnectionSettings, "bindMode" | "bindDn">): string | null {
  return settings.bindMode === "service" && settings.bindDn ? settings.bindDn : null;
}

function columnsOf(settings: DirectorySettings) {
  const { mapping } = settings;
  return {
    name: settings.name,
    preset: settings.preset,
    urls: settings.urls,
    startTls: settings.startTls,
    caCertPem: settings.caCertPem,
    verifyCertificate: settings.verifyCertificate,
    connectTimeoutMs: settings.connectTimeoutMs,
    operationTimeoutMs: settings.operationTimeoutMs,
    bindDn: bindDnOf(settings),
    baseDn: settings.baseDn,
    userBase: mapping.userBase,
    userFilter: mapping.userFilter,
    userScope: mapping.userScope,
    groupBase: mapping.groupBase,
    groupFilter: mapping.groupFilter,
    groupScope: mapping.groupScope,
    attrUsername: mapping.attrUsername,
    attrFullName: mapping.attrFullName,
    attrEmail: mapping.attrEmail,
    attrDepartment: mapping.attrDepartment,
    attrPhone: mapping.attrPhone,
    attrUniqueId: mapping.attrUniqueId,
    attrGroupName: mapping.attrGroupName,
    attrMember: mapping.attrMember,
    memberValues: mapping.memberValues,
    pageSize: mapping.pageSize,
    ...(settings.signIn
      ? {
          signInPolicy: settings.signIn.policy,
          // Kept only where they count: a rule changed to "imported users" forgets its groups.
          signInGroupIds: settings.signIn.policy === "groups" ? [...new Set(settings.signIn.groupIds)] : [],
        }
      : {}),
  };
}

/** The groups of a "groups" rule: at least one, each imported from this very directory. */
async function refuseForeignSignInGroups(tx: Db, directoryId: number, rule?: SignInRule): Promise<void> {
  if (rule?.policy !== "groups") return;
  const ids = [...new Set(rule.groupIds)];
  if (ids.length === 0) {
    throw new Refusal("Choose at least one imported group, or another option.", "signInGroupIds");
  }
  const [found] = await tx
    .select({ n: count() })
    .from(groups)
    .where(and(eq(groups.directoryId, directoryId), eq(groups.kind, "external"), inArray(groups.id, ids)));
  if (Number(found?.n ?? 0) !== ids.length) {
    throw new Refusal(
      "Choose groups imported from this directory: one of those chosen is not, or no longer exists.",
      "signInGroupIds",
    );
  }
}

function passwordOrRefuse(existing: Directory | null, settings: DirectorySettings, secretBox: SecretBox) {
  const decision = decideBindPassword(existing, settings, secretBox);
  if (!decision.ok) throw new Refusal(decision.message, "bindPassword");
  return decision;
}

async function refuseTakenName(tx: Db, name: string, exceptId: number | null): Promise<void> {
  const [taken] = await tx
    .select({ id: directories.id })
    .from(directories)
    .where(sql`lower(${directories.name}) = lower(${name})`);
  if (taken && taken.id !== exceptId) throw new Refusal("Another directory already has this name.", "name");
}

function nameTakenOnRace<T>(err: unknown): Outcome<T> {
  if (isUniqueViolation(err))
    return { ok: false, field: "name", message: "Another directory already has this name." };
  throw err;
}

/**
 * Two directories may share a server (different base DNs, different default roles), but the same
 * server read at the same base DN twice would import the same people twice.
 */
async function refuseDuplicateServer(tx: Db, settings: DirectorySettings, exceptId: number | null) {
  const others = await tx
    .select({ name: directories.name, urls: directories.urls, baseDn: directories.baseDn })
    .from(directories)
    .where(exceptId === null ? undefined : ne(directories.id, exceptId));
  const addresses = new Set(settings.urls.map(serverAddress));
  for (const other of others) {
    const shared = other.urls.find((url) => addresses.has(serverAddress(url)));
    if (shared && dnEquals(other.baseDn, settings.baseDn)) {
      throw new Refusal(
        `${shared} is already used by the directory “${other.name}” with the same base DN. Edit that directory instead.`,
        "urls",
      );
    }
  }
}

async function replaceDefaultRoles(
  tx: Db,
  directoryId: number,
  wanted: DefaultRole[],
): Promise<DefaultRoleView[]> {
  await tx.delete(directoryDefaultRoles).where(eq(directoryDefaultRoles.directoryId, directoryId));
  const unique = [...new Map(wanted.map((d) => [`${d.roleId}\u0000${d.scope}`, d])).values()];
  if (unique.length === 0) return [];
  const ids = [...new Set(unique.map((d) => d.roleId))];
  const found = await tx.select({ id: roles.id }).from(roles).where(inArray(roles.id, ids));
  if (found.length !== ids.length) {
    throw new Refusal("One of the chosen roles no longer exists: choose again.", "defaultRoles");
  }
  await tx.insert(directoryDefaultRoles).values(unique.map((d) => ({ directoryId, ...d })));
  return defaultRolesOf(tx, directoryId);
}

type AuditView = Record<string, unknown>;

/** What the audit log shows of a directory: every setting, never the password, the CA as fingerprints. */
function auditView(directory: Directory, defaults: DefaultRoleView[], signInGroups: string[]): AuditView {
  return {
    name: directory.name,
    preset: directory.preset,
    urls: directory.urls,
    startTls: directory.startTls,
    caCertificate: certificateFingerprints(directory.caCertPem),
    verifyCertificate: directory.verifyCertificate,
    connectTimeoutMs: directory.connectTimeoutMs,
    operationTimeoutMs: directory.operationTimeoutMs,
    bindDn: directory.bindDn ?? "(anonymous)",
    bindPasswordSet: directory.bindPasswordEncrypted !== null,
    baseDn: directory.baseDn,
    ...mappingOf(directory),
    defaultRoles: defaults.map((d) => (d.scope ? `${d.roleName} @ ${d.scope}` : d.roleName)),
    signIn:
      directory.signInPolicy === "groups"
        ? { policy: "groups", groups: signInGroups }
        : { policy: directory.signInPolicy },
  };
}

function changesBetween(before: AuditView, after: AuditView): Record<string, [unknown, unknown]> {
  const changes: Record<string, [unknown, unknown]> = {};
  for (const key of Object.keys(after)) {
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) changes[key] = [before[key], after[key]];
  }
  return changes;
}
