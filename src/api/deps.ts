import type { Db } from "../db/client.ts";
import type { DirectoryLogger } from "../ldap/client.ts";
import type { SecretBox } from "../services/secrets.ts";

export interface ApiDeps {
  db: Db;
  secretBox: SecretBox;
  directoryLogger?: DirectoryLogger;
  /** Asks the import worker to look for a new run now rather than at its next poll. */
  wake?: () => void;
  /** Requests a client may send per window (per API token, or per signed-in user). */
  rateLimit?: { limit: number; windowMs: number };
  /** The session cookie's name: a request without it (nor a token) is anonymous. */
  sessionCookie: string;
}
