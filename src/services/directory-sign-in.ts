/**
 * Sign-in for external users: their directory checks the password. The entry is looked up with the
 * directory's service account by the user's stable id (the DN and username only help find that
 * same entry), then Roster binds as the entry's DN with the password typed. On success the synced
 * fields are refreshed before the session starts.
 *
 * Active Directory users may also type the names Windows accepts: `alice@example.com` (their
 * userPrincipalName) or `EXAMPLE\alice`. Such a name is looked up in the enabled directories and
 * stands for the imported user whose entry it finds; the password check is the same.
 */
import { and, eq } from "drizzle-orm";
import { EqualityFilter } from "ldapts";
import type { Db } from "../db/client.ts";
import { users } from "../db/schema.ts";
import type { DirectoryLogger, DirectorySession } from "../ldap/client.ts";
import { dnEquals, formatDn, parseDn, resolveBase } from "../ldap/dn.ts";
import { andFilters, type Filter, parseFilter } from "../ldap/filter.ts";
import { bufferAttributes, mapUser, userAttributes } from "../ldap/mapping.ts";
import type { DirectoryMapping, LdapUser } from "../ldap/types.ts";
import { recordAudit, SYSTEM_ACTOR } from "./audit.ts";
import type { ExternalAuthenticator, User } from "./auth.ts";
import { type Directory, listEnabledDirectories } from "./directories.ts";
import { type DirectoryProblem, withStoredDirectory } from "./directory-session.ts";
import type { SecretBox } from "./secrets.ts";
import { markUserMissing, syncUserEntry } from "./sync/entries.ts";
import { findUserEntry } from "./sync/find.ts";

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
 * an unreachable directory and a disabled entry all answer "rejected"; an entry that no longer
 * exists answers "missing" and disables the user.
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
    findUserBySignInName: (name: string) => findUserBySignInName(deps, name),
  });
}

async function checkWith(
  deps: DirectorySignInDeps,
  directory: Directory,
  user: User,
  password: string,
): Promise<Verdict> {
  const done = await withStoredDirectory(deps, directory, async (session, { mapping }): Promise<Verdict> => {
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
    const bound = await session.bindAs(found.entry.dn, password);
    if (!bound.ok) {
      if (bound.error.kind !== "invalid_credentials") {
        deps.logger?.warn(
          { directory: directory.name, kind: bound.error.kind },
          "directory sign-in bind failed",
        );
      }
      return "rejected";
    }
    if (found.entry.disabled) return "rejected";
    const refreshed = await syncUserEntry(deps.db, directory.id, found.entry);
    if (refreshed.outcome === "conflict") {
      deps.logger?.warn(
        { directory: directory.name, userId: user.id },
        "directory sign-in: entry in conflict",
      );
      return "rejected";
    }
    return "ok";
  });
  if (done.ok) return done.value;
  logProblem(deps, done);
  return "rejected";
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

// ——— Sign-in names of Active Directory ———————————————————————————————————————————————————

/** How a typed name is looked for: `alice@example.com` by UPN, `EXAMPLE\alice` by account name in EXAMPLE. */
type SignInName = { form: "upn"; upn: string } | { form: "down-level"; domain: string; account: string };

function parseSignInName(name: string): SignInName | null {
  const downLevel = /^([^@\\]+)\\([^@\\]+)$/.exec(name);
  if (downLevel?.[1] && downLevel[2])
    return { form: "down-level", domain: downLevel[1], account: downLevel[2] };
  return /^[^@\\]+@[^@\\]+$/.test(name) ? { form: "upn", upn: name } : null;
}

/**
 * The imported user of the first enabled directory holding exactly one entry with this sign-in
 * name. A directory that can't be reached, or holds several such entries, is passed over; an entry
 * no Roster user was imported from stands for nobody.
 */
async function findUserBySignInName(deps: DirectorySignInDeps, name: string): Promise<User | null> {
  const parsed = parseSignInName(name);
  if (!parsed) return null;
  for (const directory of await listEnabledDirectories(deps.db)) {
    const externalId = await lookUpSignInName(deps, directory, parsed);
    if (externalId === null) continue;
    const [user] = await deps.db
      .select()
      .from(users)
      .where(
        and(
          eq(users.directoryId, directory.id),
          eq(users.externalId, externalId),
          eq(users.kind, "external"),
        ),
      );
    if (user) return user;
  }
  return null;
}

/** The stable id of the one entry with this sign-in name in the directory, or null. */
async function lookUpSignInName(
  deps: DirectorySignInDeps,
  directory: Directory,
  name: SignInName,
): Promise<string | null> {
  const done = await withStoredDirectory(deps, directory, async (session, { mapping }) => {
    const filter =
      name.form === "upn"
        ? new EqualityFilter({ attribute: "userPrincipalName", value: name.upn })
        : new EqualityFilter({ attribute: "sAMAccountName", value: name.account });
    const found = await searchUsers(session, mapping, filter);
    if (found.length !== 1 || !found[0]) return null;
    if (name.form === "down-level" && !(await inNetbiosDomain(session, found[0].dn, name.domain))) {
      return null;
    }
    return found[0].externalId;
  });
  if (done.ok) return done.value;
  // A directory whose password can't be decrypted is simply passed over, as before.
  if (done.problem !== "secret") logProblem(deps, done);
  return null;
}

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
 * Whether the entry belongs to the domain whose NetBIOS name is `domain`: the crossRef of the
 * entry's domain (its DC= suffix) in the configuration partition names it. Without this check,
 * `OTHER\alice` would stand for this directory's alice.
 */
async function inNetbiosDomain(session: DirectorySession, entryDn: string, domain: string): Promise<boolean> {
  const rootDse = await session.readEntry("", ["configurationNamingContext"]);
  const configuration = rootDse?.configurationNamingContext;
  if (typeof configuration !== "string" || configuration === "") return false;
  const rdns = parseDn(entryDn);
  const firstDc = rdns.findIndex((rdn) => rdn.length === 1 && rdn[0]?.type.toLowerCase() === "dc");
  if (firstDc < 0) return false;
  const domainDn = formatDn(rdns.slice(firstDc));
  const filter = andFilters(
    new EqualityFilter({ attribute: "objectClass", value: "crossRef" }),
    new EqualityFilter({ attribute: "nETBIOSName", value: domain }),
  );
  for await (const page of session.searchPages(`CN=Partitions,${configuration}`, filter, "one", ["nCName"])) {
    for (const crossRef of page) {
      const nc = crossRef.nCName;
      if (typeof nc === "string" && dnEquals(nc, domainDn)) return true;
    }
  }
  return false;
}
