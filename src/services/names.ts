/**
 * The one rule for "same name": NFC-normalized and lower-cased. `Zoë` typed with a combining
 * diaeresis and `ZOË` precomposed are the same user.
 */
export function nameKey(name: string): string {
  return name.normalize("NFC").toLowerCase();
}

export function normalizeName(name: string): string {
  return name.normalize("NFC").trim();
}

// Latin letters whose stroke or bar is part of the letter, not a combining mark.
const BARRED = { đ: "d", ø: "o", ł: "l", ħ: "h", ŧ: "t", ı: "i" } as Record<string, string>;

/**
 * The form search compares: NFC, lower-case, and without the Latin diacritics (U+0300–U+036F,
 * plus the barred letters above), so "emile" finds Émile and "dorde" finds Đorđe. Marks of other
 * scripts are kept: in Devanagari or Thai they are vowels, not accents. Migration 0003 applies the
 * same rule in SQL to rows written before it.
 */
export function searchFold(text: string): string {
  // Printable ASCII (nearly every name and address) has nothing to fold but its case.
  if (!/[^ -~]/.test(text)) return text.toLowerCase();
  return text
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .normalize("NFC")
    .toLowerCase()
    .replace(/[đøłħŧı]/g, (c) => BARRED[c] ?? c);
}

/** A LIKE pattern finding the text anywhere in a search text; LIKE's own metacharacters are literal. */
export function likePattern(text: string): string {
  return likeFolded(searchFold(text));
}

/** likePattern for text already folded (folding twice is not always a no-op). */
export function likeFolded(folded: string): string {
  return `%${folded.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * A user's search text: the username, the full name and the email's local part, then a tab and the
 * whole email. The trigram index covers what precedes the tab (USER_INDEXED_SEARCH): an email domain
 * is shared by thousands of users, and its trigrams were half of what an import wrote to that index.
 * Searches that reach into a domain read the whole text (user-search.ts). All folded.
 */
export function userSearchText(
  username: string,
  fullName: string | null | undefined,
  email: string | null | undefined,
): string {
  if (!email) return searchTextOf(username, fullName);
  const at = email.lastIndexOf("@");
  const local = at === -1 ? email : email.slice(0, at);
  return `${searchTextOf(username, fullName, local)}\t${searchFold(email).replaceAll("\t", " ")}`;
}

/**
 * What case- and accent-insensitive substring search looks at, folded once when a row is written.
 * A part found inside another (the username inside the email, usually) is left out: every substring
 * of it is found in the other part anyway, and each character costs trigram-index upkeep on every
 * import.
 */
export function searchTextOf(...parts: (string | null | undefined)[]): string {
  // Written as loops: an import calls this for every user it writes.
  const texts: string[] = [];
  // A tab ends what the users' trigram index covers (userSearchText): inside a part it is a space.
  for (const part of parts) if (part) texts.push(searchFold(part).replaceAll("\t", " "));
  let joined = "";
  for (let i = 0; i < texts.length; i += 1) {
    const text = texts[i] as string;
    // Left out when another part contains it; of equal parts the first is kept.
    let covered = false;
    for (let j = 0; j < texts.length && !covered; j += 1) {
      const other = texts[j] as string;
      covered = j !== i && other.includes(text) && (other.length !== text.length || j < i);
    }
    if (!covered) joined = joined === "" ? text : `${joined}\n${text}`;
  }
  return joined;
}

// Control characters and the characters that break LDAP filters, DNs, paths and markup.
const FORBIDDEN = /[\p{Cc}\p{Cf}/\\[\]:;|=+*?<>",&{}()'%]/u;

/** Why a username can't be used, or null when it is fine. Unicode letters are welcome. */
export function usernameProblem(username: string): string | null {
  const name = normalizeName(username);
  if (name.length === 0) return "Enter a username.";
  if (name.length > 100) return "Use at most 100 characters.";
  if (/\s/u.test(name)) return "Usernames can't contain spaces.";
  const bad = FORBIDDEN.exec(name);
  if (bad) {
    const shown = /\p{Cc}|\p{Cf}/u.test(bad[0]) ? "control characters" : `“${bad[0]}”`;
    return `Usernames can't contain ${shown}. Use letters, digits, dots, dashes, underscores or @.`;
  }
  return null;
}

const TIMESTAMP_TEXT =
  /^(\d{4})-(\d\d)-(\d\d)[ T]([01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:[+-]\d\d(?::?\d\d)?|Z)?$/;

/**
 * Whether a timestamp read back from a page link (a list cursor) is one PostgreSQL accepts: a real
 * date and time, so a hand-edited link gets the first page rather than a database error.
 */
export function isTimestampText(text: string): boolean {
  const match = TIMESTAMP_TEXT.exec(text);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return year >= 1 && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** Whether text can be sent to PostgreSQL as text at all (it has no NUL character). */
export function isStorableText(text: string): boolean {
  return !text.includes("\u0000");
}
