/**
 * The one way to work with a stored directory: load it, decrypt its service password, connect,
 * bind, run the work, always close — and say in words what failed when something does. Import
 * runs, the import search, Synchronize now, conversion and directory sign-in all come through here.
 */
import type { Db } from "../db/client.ts";
import { type DirectoryLogger, type DirectorySession, type OpenStep, openDirectory } from "../ldap/client.ts";
import { type ClassifiedLdapError, DirectoryError } from "../ldap/errors.ts";
import {
  type Directory,
  getDirectory,
  type LoadedDirectory,
  StoredSecretError,
  toLoaded,
} from "./directories.ts";
import type { SecretBox } from "./secrets.ts";

export interface DirectorySessionDeps {
  db: Db;
  secretBox: SecretBox;
  logger?: DirectoryLogger | undefined;
}

export type DirectoryProblem =
  /** The directory row is gone. */
  | { ok: false; problem: "deleted"; message: string }
  /** Its stored password can't be decrypted (the encryption key changed). */
  | { ok: false; problem: "secret"; message: string; directoryName: string }
  /** Connect, StartTLS or bind failed: `error` says how. */
  | {
      ok: false;
      problem: "unreachable";
      message: string;
      directoryName: string;
      step: OpenStep;
      error: ClassifiedLdapError;
    }
  /** The directory answered the work with an error. */
  | {
      ok: false;
      problem: "answered";
      message: string;
      directoryName: string;
      error: ClassifiedLdapError;
      cause: DirectoryError;
    };

export type DirectoryWork<T> = { ok: true; value: T; directory: Directory } | DirectoryProblem;

/**
 * Runs `work` with an open session of the stored directory (given by id or as its row). Failures to
 * load, decrypt, connect, bind, and directory errors thrown by `work` come back as values with a
 * message; any other error of `work` (a database error, a cancelled run) is thrown as it is.
 */
export async function withStoredDirectory<T>(
  deps: DirectorySessionDeps,
  which: number | Directory,
  work: (session: DirectorySession, loaded: LoadedDirectory) => Promise<T>,
): Promise<DirectoryWork<T>> {
  const directory = typeof which === "number" ? await getDirectory(deps.db, which) : which;
  if (!directory) return { ok: false, problem: "deleted", message: "The directory was deleted." };
  const directoryName = directory.name;
  let loaded: LoadedDirectory;
  try {
    loaded = toLoaded(directory, deps.secretBox);
  } catch (err) {
    if (!(err instanceof StoredSecretError)) throw err;
    return { ok: false, problem: "secret", message: err.message, directoryName };
  }
  const opened = await openDirectory(loaded.connection, deps.logger ? { logger: deps.logger } : {});
  if (!opened.ok) {
    return {
      ok: false,
      problem: "unreachable",
      message: `Roster could not reach ${directoryName}: ${opened.error.message}`,
      directoryName,
      step: opened.step,
      error: opened.error,
    };
  }
  try {
    return { ok: true, value: await work(opened.session, loaded), directory };
  } catch (err) {
    if (!(err instanceof DirectoryError)) throw err;
    return {
      ok: false,
      problem: "answered",
      message: `${directoryName} answered with an error: ${err.classified.message}`,
      directoryName,
      error: err.classified,
      cause: err,
    };
  } finally {
    await opened.session.close();
  }
}
