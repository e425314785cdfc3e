/**
 * Which users a search finds: those whose username, full name or email holds the text (folded).
 * A user's search_text holds all of that (userSearchText), but the trigram index only what precedes
 * its tab: everything but the email's domain. A search reads emails only when its text has an "@",
 * or lies inside a domain some user has (email_domains): then the users of those few domains are
 * found on the index of users' email domains, and every other search from the trigram index alone.
 */
import { type SQL, sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { USER_EMAIL_DOMAIN, USER_INDEXED_SEARCH } from "../db/schema.ts";
import { likeFolded, searchFold } from "./names.ts";

/**
 * How far a search reaches into users' emails: not at all (false), into the domains listed, or
 * into every email (true: the text has an "@", or lies inside more domains than are worth listing).
 */
export type EmailReach = boolean | readonly string[];

/** More domains than this holding the text (a search for "com"): every email is read instead. */
const LISTED_DOMAINS = 50;

/** Whether, and where, the search must read users' emails (see above): one look at the known domains. */
export async function searchReachesEmails(db: Db, search: string): Promise<EmailReach> {
  const folded = searchFold(search);
  if (folded === "") return false;
  if (folded.includes("@")) return true;
  const domains = (await queryRows<{ domain: string }>(db, domainLookup(folded))).map((r) => r.domain);
  if (domains.length === 0) return false;
  return domains.length > LISTED_DOMAINS ? true : domains;
}

/** The known email domains holding the folded text, one more than LISTED_DOMAINS at most. */
export function domainLookup(folded: string): SQL {
  return sql`select domain from email_domains where domain like ${patternLiteral(likeFolded(folded))}
    order by domain limit ${sql.raw(String(LISTED_DOMAINS + 1))}`;
}

/** The condition on users' columns, given what searchReachesEmails answered for the search. */
export function userSearchCondition(search: string, reachesEmails: EmailReach): SQL {
  const folded = searchFold(search);
  const indexed = (text: string) => sql`${USER_INDEXED_SEARCH} like ${patternLiteral(likeFolded(text))}`;
  if (reachesEmails === false) return indexed(folded);
  if (reachesEmails !== true) {
    // Without an "@" the text lies in the email's local part, which the trigram index covers, or in
    // what follows its "@": a domain listed, whose users the domain index finds.
    const domains = reachesEmails.map((d) => sql.raw(`'${d.replaceAll("\0", "").replaceAll("'", "''")}'`));
    return sql`(${indexed(folded)} or ${USER_EMAIL_DOMAIN} in (${sql.join(domains, sql`, `)}))`;
  }
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
