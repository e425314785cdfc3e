/**
 * Sign-in for external users: their directory checks the password. The entry is looked up with the
 * directory's service account by the user's stable id (the DN and username only help find that
 * same entry), then Roster binds as the entry's DN with the password typed. On success the synced
 * fields are refreshed before the session starts.
 *
 * Who may sign in is each directory's rule: only the users imported from it (the default), only
 * those of them in chosen imported groups (directly or through nested groups), or anyone its user
 * search finds — created at the first sign-in with the right password, exactly as an import
 * creates a user (default roles included), and audited.
 *
 * Active Directory users may also type the names Windows accepts: `alice@example.com` (their
 * userPrincipalName, or their sAMAccountName at their domain's DNS name) or `EXAMPLE\alice`. Such a
 * name is looked up in the enabled directories and stands for the user whose entry it finds; the
 * password check is the same.
 */
import { and, eq, sql } from "drizzle-orm";
import { EqualityFilter } from "ldapts";
import { type Db, queryRows } from "../db/client.ts";
import { users } from "../db/schema.ts";
import type { DirectoryLogger, DirectorySession } from "../ldap/client.ts";
import { dnEquals, formatDn, parseDn, resolveBase } from "../ldap/dn.ts";
import { andFilters, type Filter, parseFilter } from "../ldap/filter.ts";
import { bufferAttributes, mapUser, userAttributes } from "../ldap/mapping.ts";
import type { DirectoryMapping, LdapUser } from "../ldap/types.ts";
import { recordAudit, SYSTEM_ACTOR } from "./audit.ts";
import type { ExternalAuthenticator, User } from "./auth.ts";
import { type Directory, defaultRolesOf, listEnabledDirectories } from "./directories.ts";
import { type DirectoryProblem, withStoredDirectory } from "./directory-session.ts";
import { nameKey } from "./names.ts";
import type { SecretBox } from "./secrets.ts";
import { markUserMissing, syncUserEntry } from "./sync/entries.ts";
import { findUserEntry } from "./sync/find.ts";
import { intArray } from "./sync/store.ts";

export interface DirectorySignInDeps {
  db: Db;
  secretBox: SecretBox;
  logger?: DirectoryLogger;
}

type Verdict = Awaited<ReturnType<ExternalAuthenticator>>;

/**
 * An ExternalAuthenticator for signIn(). The enabled directories are tried in their order; only
 * the user's own directory can vouch for it (never another directory's entry with the same
 * username), so a user whose directory is disabled or deleted cannot sign in. A wrong password,
 * an unreachable directory, a disabled entry and a user the directory's rule leaves out all answer
 * "rejected"; an entry that no longer exists answers "missing" and disables the user.
 */
export function createDirectoryAuthenticator(deps: DirectorySignInDeps): ExternalAuthenticator {
  const authenticate = async (user: User, password: string): Promise<Verdict> => {
    if (user.kind !== "external" || user.directoryId === null || user.externalId === null) return "rejected";
    const directories = await listEnabledDirectories(deps.db);
    for (const directory of directories) {
      if (directory.id === user.directoryId) return checkWith(deps, directory, user, password);
    }
    return "rejected";
  };
  return Object.assign(authenticate, {
    signInByName: (name: string, password: string) => signInByName(deps, name, password),
  });
}

async function checkWith(
  deps: DirectorySignInDeps,
  directory: Directory,
  user: User,
  password: string,
): Promise<Verdict> {
  const done = await withStoredDirectory(deps, directory, (session, { mapping }) =>
    checkImportedUser(deps, session, mapping, directory, user, password),
  );
  if (done.ok) return done.value;
  logProblem(deps, done);
  return "rejected";
}

/** The password check of an imported user, in an open session of its directory. */
async function checkImportedUser(
  deps: DirectorySignInDeps,
  session: DirectorySession,
  mapping: DirectoryMapping,
  directory: Directory,
  user: User,
  password: string,
): Promise<Verdict> {
  const found = await findUserEntry(
    session,
    mapping,
    { externalId: user.externalId, dn: user.dn, username: user.username },
    { strict: true },
  );
  if (!found.ok) {
    if (await markUserMissing(deps.db, user.id)) {
      await recordAudit(deps.db, SYSTEM_ACTOR, {
        action: "user.missing_in_directory",
        targetType: "user",
        targetId: user.id,
        targetName: user.username,
        details: { directory: directory.name, dn: user.dn, when: "sign-in" },
      });
    }
    return "missing";
  }
  if (!(await bindsAs(deps, session, directory, found.entry, password))) return "rejected";
  if (!(await allowedByRule(deps.db, directory, user.id))) {
    deps.logger?.debug(
      { directory: directory.name, userId: user.id },
      "directory sign-in refused: the user is in none of the groups allowed to sign in",
    );
    return "rejected";
  }
  const refreshed = await syncUserEntry(deps.db, directory.id, found.entry);
  if (refreshed.outcome === "conflict") {
    deps.logger?.warn({ directory: directory.name, userId: user.id }, "directory sign-in: entry in conflict");
    return "rejected";
  }
  return "ok";
}

/** Whether the password is the entry's and the entry is enabled; a bind failing for another reason is logged. */
async function bindsAs(
  deps: DirectorySignInDeps,
  session: DirectorySession,
  directory: Directory,
  entry: LdapUser,
  password: string,
): Promise<boolean> {
  const bound = await session.bindAs(entry.dn, password);
  if (!bound.ok) {
    if (bound.error.kind !== "invalid_credentials") {
      deps.logger?.warn(
        { directory: directory.name, kind: bound.error.kind },
        "directory sign-in bind failed",
      );
    }
    return false;
  }
  return !entry.disabled;
}

/**
 * Whether the directory's rule lets this imported user in: always, unless the rule names groups —
 * then the user must be a member of one of them that is still this directory's, or of a group
 * nested in one (at any depth; cycles end where they close).
 */
async function allowedByRule(db: Db, directory: Directory, userId: number): Promise<boolean> {
  if (directory.signInPolicy !== "groups") return true;
  if (directory.signInGroupIds.length === 0) return false;
  const [row] = await queryRows<{ allowed: boolean }>(
    db,
    sql`with recursive allowed(id) as (
          select id from groups
          where id = any(${intArray(directory.signInGroupIds)}::int[])
            and directory_id = ${directory.id} and kind = 'external'
          union
          select s.child_id from group_subgroups s join allowed a on s.parent_id = a.id
        )
        select exists (
          select 1 from group_members m join allowed a on a.id = m.group_id where m.user_id = ${userId}
        ) as allowed`,
  );
  return row?.allowed === true;
}

/** Why a directory could not vouch for a sign-in, for the operator's log (never the password). */
function logProblem(deps: DirectorySignInDeps, problem: DirectoryProblem): void {
  if (problem.problem === "unreachable") {
    deps.logger?.warn(
      { directory: problem.directoryName, step: problem.step, kind: problem.error.kind },
      "directory unreachable at sign-in",
    );
  } else if (problem.problem === "answered") {
    deps.logger?.warn(
      { directory: problem.directoryName, kind: problem.error.kind },
      "directory error at sign-in",
    );
  } else {
    deps.logger?.warn({ problem: problem.problem }, problem.message);
  }
}

// ——— Names no Roster user has ———————————————————————————————————————————————————————————

/**
 * Signs in with a name no Roster user has as its username: an Active Directory sign-in name of an
 * imported user, or a person a directory lets in at first sign-in. The first enabled directory
 * with exactly one entry for the name decides; one that can't be reached, holds several such
 * entries, or holds an entry its rule doesn't let in is passed over. Null: the name stands for
 * nobody.
 */
async function signInByName(
  deps: DirectorySignInDeps,
  name: string,
  password: string,
): Promise<User | "rejected" | null> {
  const adName = parseSignInName(name);
  for (const directory of await listEnabledDirectories(deps.db)) {
    const anyone = directory.signInPolicy === "anyone";
    // Only a directory that lets anyone in is asked about a plain username: Roster has every other's.
    if (!anyone && !adName) continue;
    const done = await withStoredDirectory(deps, directory, async (session, { mapping }) => {
      const entry = await findBySignInName(session, mapping, name, { byUsername: anyone, adName });
      if (!entry) return null;
      const imported = await importedUser(deps.db, directory.id, entry.externalId);
      if (imported) {
        const verdict = await checkImportedUser(deps, session, mapping, directory, imported, password);
        return verdict === "ok" ? imported : "rejected";
      }
      return anyone ? admitNewcomer(deps, session, directory, entry, password) : null;
    });
    if (done.ok && done.value !== null) return done.value;
    // A directory whose password can't be decrypted is simply passed over, as before.
    if (!done.ok && done.problem !== "secret") logProblem(deps, done);
  }
  return null;
}

async function importedUser(db: Db, directoryId: number, externalId: string): Promise<User | null> {
  const [user] = await db
    .select()
    .from(users)
    .where(
      and(eq(users.directoryId, directoryId), eq(users.externalId, externalId), eq(users.kind, "external")),
    );
  return user ?? null;
}

/**
 * A person of a directory that lets anyone in, signing in for the first time: once the directory
 * accepts the password, created as an import would create them (the directory's default roles
 * given) and audited. A wrong password, a disabled entry, or a username another Roster user has
 * creates nobody.
 */
async function admitNewcomer(
  deps: DirectorySignInDeps,
  session: DirectorySession,
  directory: Directory,
  entry: LdapUser,
  password: string,
): Promise<User | "rejected"> {
  if (!(await bindsAs(deps, session, directory, entry, password))) return "rejected";
  const [taken] = await deps.db
    .select({ id: users.id })
    .from(users)
    .where(eq(users.usernameKey, nameKey(entry.username)));
  if (taken) {
    deps.logger?.warn(
      { directory: directory.name, userId: taken.id },
      "directory sign-in: another Roster user has the entry's username; nobody was created",
    );
    return "rejected";
  }
  const written = await deps.db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const outcome = await syncUserEntry(tx, directory.id, entry);
    if (outcome.outcome !== "created") return outcome;
    await recordAudit(
      tx,
      { id: outcome.user.id, name: outcome.user.username },
      {
        action: "user.create_at_sign_in",
        targetType: "user",
        targetId: outcome.user.id,
        targetName: outcome.user.username,
        details: {
          directory: directory.name,
          dn: entry.dn,
          defaultRoles: (await defaultRolesOf(tx, directory.id)).map((d) =>
            d.scope ? `${d.roleName} @ ${d.scope}` : d.roleName,
          ),
        },
      },
    );
    return outcome;
  });
  // Another sign-in of the same person may have created the user a moment ago: that is the user.
  if (written.outcome === "conflict" || written.user.kind !== "external") {
    deps.logger?.warn(
      { directory: directory.name },
      "directory sign-in: entry in conflict; nobody was created",
    );
    return "rejected";
  }
  return written.user;
}

// ——— Finding the entry a sign-in name stands for ————————————————————————————————————————————

/** `alice@example.com`: by UPN, else sAMAccountName at the DNS domain; `EXAMPLE\alice`: by sAMAccountName in EXAMPLE. */
type AdSignInName =
  | { form: "upn"; upn: string; account: string; domain: string }
  | { form: "down-level"; domain: string; account: string };

function parseSignInName(name: string): AdSignInName | null {
  const downLevel = /^([^@\\]+)\\([^@\\]+)$/.exec(name);
  if (downLevel?.[1] && downLevel[2])
    return { form: "down-level", domain: downLevel[1], account: downLevel[2] };
  const upn = /^([^@\\]+)@([^@\\]+)$/.exec(name);
  if (upn?.[1] && upn[2]) return { form: "upn", upn: name, account: upn[1], domain: upn[2] };
  return null;
}

/**
 * The one entry of the directory's users a typed name stands for, or null: by the username
 * attribute (when the directory lets anyone in), then as an Active Directory sign-in name.
 */
async function findBySignInName(
  session: DirectorySession,
  mapping: DirectoryMapping,
  typed: string,
  how: { byUsername: boolean; adName: AdSignInName | null },
): Promise<LdapUser | null> {
  if (how.byUsername) {
    const found = await findUserEntry(session, mapping, { username: typed });
    if (found.ok) return found.entry;
    if (found.reason === "ambiguous") return null;
  }
  const name = how.adName;
  if (!name) return null;
  if (name.form === "upn") {
    const byUpn = await searchUsers(session, mapping, equals("userPrincipalName", name.upn));
    if (byUpn.length > 0) return byUpn.length === 1 ? (byUpn[0] ?? null) : null;
  }
  // `EXAMPLE\alice`, and the implicit UPN `alice@example.com` Windows accepts for any account whose
  // explicit UPN is something else: the sAMAccountName in the domain of that NetBIOS or DNS name.
  const [entry, ...others] = await searchUsers(session, mapping, equals("sAMAccountName", name.account));
  if (!entry || others.length > 0) return null;
  const domainName = name.form === "upn" ? "dnsRoot" : "nETBIOSName";
  return (await inDomain(session, entry.dn, domainName, name.domain)) ? entry : null;
}

const equals = (attribute: string, value: string) => new EqualityFilter({ attribute, value });

/** The users (as the directory's user filter and search base define them) matching `byName`. */
async function searchUsers(
  session: DirectorySession,
  mapping: DirectoryMapping,
  byName: Filter,
): Promise<LdapUser[]> {
  const objectFilter = parseFilter(mapping.userFilter);
  if (!objectFilter.ok) return [];
  const base = resolveBase(mapping.userBase, session.connection.baseDn);
  const filter = andFilters(objectFilter.filter, byName);
  const options = { pageSize: mapping.pageSize, bufferAttributes: bufferAttributes(mapping) };
  const pages = session.searchPages(base, filter, mapping.userScope, userAttributes(mapping), options);
  const found: LdapUser[] = [];
  for await (const page of pages) {
    for (const entry of page) {
      const mapped = mapUser(entry, mapping);
      if (mapped.ok) found.push(mapped.value);
    }
  }
  return found;
}

/**
 * Whether the entry belongs to the domain with this NetBIOS name (`EXAMPLE`) or DNS name
 * (`example.com`): the crossRef of the entry's domain (its DC= suffix) in the configuration
 * partition names both. Without this check, `OTHER\alice` or `alice@other.com` would stand for
 * this directory's alice.
 */
async function inDomain(
  session: DirectorySession,
  entryDn: string,
  attribute: "nETBIOSName" | "dnsRoot",
  domain: string,
): Promise<boolean> {
  const rootDse = await session.readEntry("", ["configurationNamingContext"]);
  const configuration = rootDse?.configurationNamingContext;
  if (typeof configuration !== "string" || configuration === "") return false;
  const rdns = parseDn(entryDn);
  const firstDc = rdns.findIndex((rdn) => rdn.length === 1 && rdn[0]?.type.toLowerCase() === "dc");
  if (firstDc < 0) return false;
  const domainDn = formatDn(rdns.slice(firstDc));
  const filter = andFilters(equals("objectClass", "crossRef"), equals(attribute, domain));
  for await (const page of session.searchPages(`CN=Partitions,${configuration}`, filter, "one", ["nCName"])) {
    for (const crossRef of page) {
      const nc = crossRef.nCName;
      if (typeof nc === "string" && dnEquals(nc, domainDn)) return true;
    }
  }
  return false;
}
