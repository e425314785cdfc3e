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

/**
 * What case-insensitive substring search looks at, lower-cased once when a row is written. A part
 * found inside another (the username inside the email, usually) is left out: every substring of it
 * is found in the other part anyway, and each character costs trigram-index upkeep on every import.
 */
export function searchTextOf(...parts: (string | null | undefined)[]): string {
  const texts = parts.filter((p): p is string => Boolean(p)).map((p) => p.normalize("NFC").toLowerCase());
  return texts
    .filter((text, i) =>
      texts.every((other, j) => j === i || !other.includes(text) || (other.length === text.length && i < j)),
    )
    .join("\n");
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
