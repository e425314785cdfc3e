/**
 * Distinguished names (RFC 4514). Servers hand back the same DN in different spellings
 * (`cn=O'Brien\, Seán` as written by slapadd, `cn=O'Brien\2C Seán` as normalized by slapd,
 * `CN=…` from Active Directory), so DNs are only ever compared after parsing.
 */

export interface Ava {
  /** The attribute type as written (`CN`, `uid`, `2.5.4.3`). */
  type: string;
  /** The decoded value; for a `#hex` value, `#` followed by the lowercase hex. */
  value: string;
  /** True when the value was given as `#hex` (BER-encoded) rather than a string. */
  hex: boolean;
}

/** One relative DN: usually one AVA, several for multi-valued RDNs (`cn=Pat+uid=pat`). */
export type Rdn = Ava[];

/** RDNs from the leaf to the root, as written. */
export type ParsedDn = Rdn[];

export class DnSyntaxError extends Error {
  /** 1-based character position of the problem. */
  readonly position: number;

  constructor(message: string, position: number) {
    super(`${message} at position ${position}`);
    this.name = "DnSyntaxError";
    this.position = position;
  }
}

const ATTRIBUTE_TYPE = /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)*)$/;
const HEX_PAIR = /^[0-9A-Fa-f]{2}$/;
const ESCAPABLE = new Set([" ", '"', "#", "+", ",", ";", "<", "=", ">", "\\"]);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Parses a DN; throws DnSyntaxError pointing at the problem. The empty string is the root (no RDNs). */
export function parseDn(text: string): ParsedDn {
  return new DnParser(text).parse();
}

export function isValidDn(text: string): boolean {
  try {
    parseDn(text);
    return true;
  } catch (err) {
    if (err instanceof DnSyntaxError) return false;
    throw err;
  }
}

/** Escapes an attribute value for use inside a DN (RFC 4514 section 2.4). */
export function escapeDnValue(value: string): string {
  let result = "";
  const chars = Array.from(value);
  chars.forEach((char, index) => {
    const atEdge = index === 0 || index === chars.length - 1;
    if (char === "\0") result += "\\00";
    else if ('"+,;<>\\'.includes(char)) result += `\\${char}`;
    else if (char === " " && atEdge) result += "\\ ";
    else if (char === "#" && index === 0) result += "\\#";
    else result += char;
  });
  return result;
}

/** Writes a parsed DN back with canonical (minimal RFC 4514) escaping, keeping the case as written. */
export function formatDn(dn: ParsedDn): string {
  return dn.map(formatRdn).join(",");
}

/**
 * A canonical form for comparing DNs: attribute types lowercased, values unescaped, NFC-normalized,
 * lowercased with runs of spaces collapsed (the case-ignore matching of cn, uid, ou, dc…), AVAs of
 * multi-valued RDNs sorted, then re-escaped canonically. Throws DnSyntaxError on a malformed DN.
 */
export function normalizeDn(text: string): string {
  return formatDn(parseDn(text).map(normalizeRdn));
}

/** The normalized RDNs of a parsed DN, leaf first: `slice(1).join(",")` is the normalized parent. */
export function normalizedRdns(dn: ParsedDn): string[] {
  return dn.map((rdn) => formatRdn(normalizeRdn(rdn)));
}

/**
 * The one DN equality: servers spell the same DN differently (`\2C` or `\,`, `CN=` or `cn=`), so
 * DNs are compared parsed. A missing (null) or malformed DN equals nothing.
 */
export function dnEquals(a: string | null, b: string | null): boolean {
  if (a === null || b === null) return false;
  const left = tryNormalizeDn(a);
  return left !== null && left === tryNormalizeDn(b);
}

/**
 * Whether a stored DN still names the entry now at `current`, for change detection: the same text
 * costs no parsing (nearly every entry of a re-import); other spellings are compared parsed.
 */
export function sameDnText(stored: string | null, current: string): boolean {
  return stored === current || dnEquals(stored, current);
}

/** True when `dn` lies strictly below `base` (pass `includeSelf` to accept `base` itself). */
export function isDescendantOf(dn: string, base: string, options: { includeSelf?: boolean } = {}): boolean {
  const child = tryParseNormalized(dn);
  const ancestor = tryParseNormalized(base);
  if (child === null || ancestor === null) return false;
  if (child.length < ancestor.length) return false;
  if (child.length === ancestor.length && !options.includeSelf) return false;
  const offset = child.length - ancestor.length;
  return ancestor.every((rdn, index) => formatRdn(rdn) === formatRdn(child[index + offset] ?? []));
}

/** Whether a search of `base` with `scope` can return the entry at `dn`. */
export function withinSearch(dn: string, base: string, scope: "base" | "one" | "sub"): boolean {
  if (dnEquals(dn, base)) return scope !== "one";
  const parsed = tryParseNormalized(dn);
  return parsed !== null && parsed.length > 1 && childrenWithinSearch(formatDn(parsed.slice(1)), base, scope);
}

/** Whether a search of `base` with `scope` can return the entries right under `parent`. */
export function childrenWithinSearch(parent: string, base: string, scope: "base" | "one" | "sub"): boolean {
  if (scope === "base") return false;
  return scope === "one" ? dnEquals(parent, base) : isDescendantOf(parent, base, { includeSelf: true });
}

/**
 * The value of a DN's first RDN (`Lee, Ann` for `cn=Lee\2C Ann,ou=people`), to name an entry known
 * only by its DN; null when the text is not a DN or its first RDN is not one plain value.
 */
export function leafValue(text: string): string | null {
  try {
    const rdn = parseDn(text)[0];
    const ava = rdn?.length === 1 ? rdn[0] : undefined;
    return ava === undefined || ava.hex ? null : ava.value;
  } catch (err) {
    if (err instanceof DnSyntaxError) return null;
    throw err;
  }
}

/** The DN one level up, or null for a single-RDN (or empty) DN. */
export function parentDn(text: string): string | null {
  const parsed = parseDn(text);
  return parsed.length > 1 ? formatDn(parsed.slice(1)) : null;
}

/**
 * Resolves a configured search base: null or blank means the base DN; a DN already under the base
 * DN is used as is; anything else is taken as relative to the base DN (`ou=people`).
 */
export function resolveBase(base: string | null, baseDn: string): string {
  const trimmed = base?.trim() ?? "";
  if (trimmed === "") return baseDn;
  if (isDescendantOf(trimmed, baseDn, { includeSelf: true })) return trimmed;
  return `${trimmed},${baseDn}`;
}

function formatRdn(rdn: Rdn): string {
  return rdn.map((ava) => `${ava.type}=${ava.hex ? ava.value : escapeDnValue(ava.value)}`).join("+");
}

function normalizeRdn(rdn: Rdn): Rdn {
  const avas = rdn.map(normalizeAva);
  return avas.sort((a, b) => compareStrings(`${a.type}=${a.value}`, `${b.type}=${b.value}`));
}

function normalizeAva(ava: Ava): Ava {
  const type = ava.type.toLowerCase();
  if (ava.hex) return { type, value: ava.value.toLowerCase(), hex: true };
  const value = ava.value.normalize("NFC").toLowerCase().replace(/\s+/g, " ").trim();
  return { type, value, hex: false };
}

function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

function tryParseNormalized(text: string): ParsedDn | null {
  try {
    return parseDn(text).map(normalizeRdn);
  } catch (err) {
    if (err instanceof DnSyntaxError) return null;
    throw err;
  }
}

/** normalizeDn, or null for a malformed DN. */
export function tryNormalizeDn(text: string): string | null {
  const parsed = tryParseNormalized(text);
  return parsed === null ? null : formatDn(parsed);
}

export interface CachedDn {
  /** The RDNs leaf first, as written (shared with other results: never modify them). */
  rdns: ParsedDn;
  /** What normalizeDn gives. */
  key: string;
  /** The parent: its normalized form, and formatDn of it; null for a DN of one RDN or none. */
  parent: { key: string; text: string } | null;
}

interface CachedParent {
  rdns: ParsedDn;
  key: string;
  text: string;
}

/**
 * Parses DNs that mostly share a parent (the members of a group): each parent's text is parsed,
 * normalized and formatted once. Gives exactly what parseDn, normalizeDn and formatDn give; null
 * where parseDn would throw.
 */
export class DnCache {
  private readonly parents = new Map<string, CachedParent | null>();

  constructor(private readonly capacity = 10_000) {}

  parse(text: string): CachedDn | null {
    let first: { rdn: Rdn; restAt: number } | null;
    try {
      first = new DnParser(text).parseFirst();
    } catch (err) {
      if (err instanceof DnSyntaxError) return null;
      throw err;
    }
    if (first === null) return { rdns: [], key: "", parent: null };
    const firstKey = formatRdn(normalizeRdn(first.rdn));
    if (first.restAt === -1) return { rdns: [first.rdn], key: firstKey, parent: null };
    const parent = this.parent(text.slice(first.restAt));
    if (parent === null) return null;
    return {
      rdns: [first.rdn, ...parent.rdns],
      // join, not a template: a flat string, where concatenation would keep a rope of three parts.
      key: [firstKey, parent.key].join(","),
      parent: { key: parent.key, text: parent.text },
    };
  }

  private parent(text: string): CachedParent | null {
    const known = this.parents.get(text);
    if (known !== undefined) return known;
    let parent: CachedParent | null = null;
    try {
      const rdns = parseDn(text);
      // After a separator an RDN must follow: "uid=a," is not a DN even though "" is the root.
      if (rdns.length > 0) parent = { rdns, key: normalizedRdns(rdns).join(","), text: formatDn(rdns) };
    } catch (err) {
      if (!(err instanceof DnSyntaxError)) throw err;
    }
    if (this.parents.size < this.capacity) this.parents.set(text, parent);
    return parent;
  }
}

/** A small recursive-descent parser; also accepts the legacy `;` separator and quoted values. */
class DnParser {
  private pos = 0;

  constructor(private readonly text: string) {}

  parse(): ParsedDn {
    this.skipSpaces();
    if (this.atEnd()) return [];
    const rdns: ParsedDn = [this.parseRdn()];
    while (!this.atEnd()) {
      const separator = this.text[this.pos];
      if (separator !== "," && separator !== ";") this.fail(`Expected ',' but found '${separator}'`);
      this.pos += 1;
      rdns.push(this.parseRdn());
    }
    return rdns;
  }

  /**
   * The first RDN, and where the rest starts after its separator (-1 when it is the only one);
   * null for the root. `parse()` of the rest then continues exactly where `parse()` would.
   */
  parseFirst(): { rdn: Rdn; restAt: number } | null {
    this.skipSpaces();
    if (this.atEnd()) return null;
    const rdn = this.parseRdn();
    if (this.atEnd()) return { rdn, restAt: -1 };
    const separator = this.text[this.pos];
    if (separator !== "," && separator !== ";") this.fail(`Expected ',' but found '${separator}'`);
    return { rdn, restAt: this.pos + 1 };
  }

  private parseRdn(): Rdn {
    const avas: Rdn = [this.parseAva()];
    while (this.text[this.pos] === "+") {
      this.pos += 1;
      avas.push(this.parseAva());
    }
    return avas;
  }

  private parseAva(): Ava {
    this.skipSpaces();
    const type = this.parseType();
    this.skipSpaces();
    const next = this.text[this.pos];
    if (next === "#") return { type, value: this.parseHexValue(), hex: true };
    if (next === '"') return { type, value: this.parseQuotedValue(), hex: false };
    return { type, value: this.parseStringValue(), hex: false };
  }

  private parseType(): string {
    const start = this.pos;
    while (!this.atEnd() && !"=,;+".includes(this.text[this.pos] ?? "")) this.pos += 1;
    const raw = this.text.slice(start, this.pos).trim();
    if (raw === "") this.fail("Expected an attribute name", start);
    if (this.text[this.pos] !== "=") this.fail(`Missing '=' after '${raw}'`);
    const type = raw.replace(/^oid\./i, "");
    if (!ATTRIBUTE_TYPE.test(type)) this.fail(`Invalid attribute name '${raw}'`, start);
    this.pos += 1;
    return type;
  }

  private parseHexValue(): string {
    const start = this.pos;
    this.pos += 1;
    while (/[0-9A-Fa-f]/.test(this.text[this.pos] ?? "")) this.pos += 1;
    const hex = this.text.slice(start + 1, this.pos);
    if (hex.length === 0 || hex.length % 2 !== 0)
      this.fail("A '#' value needs an even number of hex digits", start);
    this.skipSpaces();
    this.expectValueEnd();
    return `#${hex.toLowerCase()}`;
  }

  private parseQuotedValue(): string {
    const opening = this.pos;
    this.pos += 1;
    const value = new ValueBuilder();
    while (this.text[this.pos] !== '"') {
      if (this.atEnd()) this.fail("Unterminated quoted value", opening);
      this.readChar(value, true);
    }
    this.pos += 1;
    this.skipSpaces();
    this.expectValueEnd();
    return value.finish((message) => this.fail(message, opening));
  }

  private parseStringValue(): string {
    const start = this.pos;
    const value = new ValueBuilder();
    while (!this.atEnd() && !",;+".includes(this.text[this.pos] ?? "")) {
      if (this.text[this.pos] === '"') this.fail("Unescaped '\"' in a value (write \\\")");
      this.readChar(value);
    }
    return value.finish((message) => this.fail(message, start));
  }

  /** Reads one literal character or escape into the value; inside quotes every space counts. */
  private readChar(value: ValueBuilder, quoted = false): void {
    const char = this.text[this.pos] ?? "";
    if (char !== "\\") {
      const codePoint = this.text.codePointAt(this.pos) ?? 0;
      const literal = String.fromCodePoint(codePoint);
      value.literal(literal, char === " " && !quoted);
      this.pos += literal.length;
      return;
    }
    const pair = this.text.slice(this.pos + 1, this.pos + 3);
    if (HEX_PAIR.test(pair)) {
      value.byte(Number.parseInt(pair, 16));
      this.pos += 3;
      return;
    }
    const escaped = this.text[this.pos + 1];
    if (escaped === undefined || !ESCAPABLE.has(escaped)) {
      this.fail("Invalid escape: '\\' must be followed by a special character or two hex digits");
    }
    value.escaped(escaped);
    this.pos += 2;
  }

  private expectValueEnd(): void {
    if (!this.atEnd() && !",;+".includes(this.text[this.pos] ?? ""))
      this.fail("Unexpected text after a value");
  }

  private skipSpaces(): void {
    while (this.text[this.pos] === " ") this.pos += 1;
  }

  private atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  private fail(message: string, at = this.pos): never {
    throw new DnSyntaxError(message, at + 1);
  }
}

/**
 * Collects a value from literal characters and `\XX` byte escapes (which together may spell one
 * UTF-8 character), dropping unescaped trailing spaces as RFC 4514 requires.
 */
class ValueBuilder {
  private text = "";
  private bytes: number[] = [];
  /** Length of `text` up to the last character that must be kept (escaped or non-space). */
  private significant = 0;
  private error: string | null = null;

  literal(char: string, isSpace: boolean): void {
    this.flushBytes();
    this.text += char;
    if (!isSpace) this.significant = this.text.length;
  }

  escaped(char: string): void {
    this.flushBytes();
    this.text += char;
    this.significant = this.text.length;
  }

  byte(value: number): void {
    this.bytes.push(value);
  }

  finish(fail: (message: string) => never): string {
    this.flushBytes();
    if (this.error !== null) fail(this.error);
    return this.text.slice(0, this.significant);
  }

  private flushBytes(): void {
    if (this.bytes.length === 0) return;
    try {
      this.text += utf8.decode(Uint8Array.from(this.bytes));
    } catch {
      this.error ??= "Hex escapes do not spell valid UTF-8";
    }
    this.bytes = [];
    this.significant = this.text.length;
  }
}
