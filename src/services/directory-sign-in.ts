/**
 * Sign-in for external users: their directory checks the password. The entry is looked up with the
 * directory's service account by the user's stable id (the DN and username only help find that
 * same entry), then Roster binds as the entry's DN with the password typed. On success the synced
 * fields are refreshed before the session starts.
 */
import type { Db } from "../db/client.ts";
import { type DirectoryLogger, withDirectory } from "../ldap/client.ts";
import { DirectoryError } from "../ldap/errors.ts";
import { recordAudit, SYSTEM_ACTOR } from "./audit.ts";
import type { ExternalAuthenticator, User } from "./auth.ts";
import { type LoadedDirectory, listEnabledDirectories, StoredSecretError, toLoaded } from "./directories.ts";
import { findUserEntry, markUserMissing, upsertExternalUser } from "./external-users.ts";
import type { SecretBox } from "./secrets.ts";

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
  return async (user, password) => {
    if (user.kind !== "external" || user.directoryId === null || user.externalId === null) return "rejected";
    const directories = await listEnabledDirectories(deps.db);
    for (const directory of directories) {
      if (directory.id !== user.directoryId) continue;
      let loaded: LoadedDirectory;
      try {
        loaded = toLoaded(directory, deps.secretBox);
      } catch (err) {
        if (!(err instanceof StoredSecretError)) throw err;
        deps.logger?.warn({ directory: directory.name }, err.message);
        return "rejected";
      }
      return checkWith(deps, loaded, user, password);
    }
    return "rejected";
  };
}

async function checkWith(
  deps: DirectorySignInDeps,
  loaded: LoadedDirectory,
  user: User,
  password: string,
): Promise<Verdict> {
  const { directory, mapping, connection } = loaded;
  try {
    const result = await withDirectory(
      connection,
      async (session): Promise<Verdict> => {
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
        const refreshed = await upsertExternalUser(deps.db, directory.id, found.entry);
        if (refreshed.outcome === "conflict") {
          deps.logger?.warn(
            { directory: directory.name, userId: user.id },
            "directory sign-in: entry in conflict",
          );
          return "rejected";
        }
        return "ok";
      },
      { logger: deps.logger },
    );
    if (!result.ok) {
      deps.logger?.warn(
        { directory: directory.name, step: result.step, kind: result.error.kind },
        "directory unreachable at sign-in",
      );
      return "rejected";
    }
    return result.value;
  } catch (err) {
    if (!(err instanceof DirectoryError)) throw err;
    deps.logger?.warn({ directory: directory.name, kind: err.classified.kind }, "directory error at sign-in");
    return "rejected";
  }
}
