/**
 * Which users a search finds: those whose username, full name or email holds the text (folded).
 * A user's search_text holds all of that (userSearchText), but the trigram index only what precedes
 * its tab: everything but the email's domain. A search reads whole search texts only when it could
 * match beyond the indexed part: when its text has an "@", or lies inside a domain some user has
 * (email_domains). Every other search is answered from the index alone.
 */
import { type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { USER_INDEXED_SEARCH } from "../db/schema.ts";
import { likeFolded, searchFold } from "./names.ts";

/** Whether the search must read users' emails (see above): one look at the few known domains. */
export async function searchReachesEmails(db: Db, search: string): Promise<boolean> {
  const folded = searchFold(search);
  if (folded === "") return false;
  if (folded.includes("@")) return true;
  return (await queryRows(db, domainLookup(folded))).length > 0;
}

/** A row when some known email domain holds the folded text. */
export function domainLookup(folded: string): SQL {
  return sql`select 1 from email_domains where domain like ${patternLiteral(likeFolded(folded))} limit 1`;
}

/** The condition on users' columns, given what searchReachesEmails answered for the search. */
export function userSearchCondition(search: string, reachesEmails: boolean): SQL {
  const folded = searchFold(search);
  const indexed = (text: string) => sql`${USER_INDEXED_SEARCH} like ${patternLiteral(likeFolded(text))}`;
  if (!reachesEmails) return indexed(folded);
  const anywhere = sql`search_text like ${patternLiteral(likeFolded(folded))}`;
  const at = folded.indexOf("@");
  if (at === -1) return anywhere;
  // What comes before the text's first "@" lies in the email's local part, which the index covers:
  // it picks the few users whose whole search text is worth reading.
  return sql`(${indexed(folded)} or (${indexed(folded.slice(0, at))} and ${anywhere}))`;
}

/**
 * The pattern as an SQL literal rather than a bound parameter: a prepared statement may settle on
 * one generic plan for every pattern, blind to how many rows each matches, and that choice is the
 * whole difference between 1 ms and 100 ms here. With standard-conforming strings (the default
 * since PostgreSQL 9.1, and required by Roster) only the quote needs doubling; text holds no NUL.
 */
export function patternLiteral(pattern: string): SQL {
  return sql.raw(`'${pattern.replaceAll("\0", "").replaceAll("'", "''")}'`);
}
