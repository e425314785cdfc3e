/**
 * Search filters (RFC 4515). Typed text never reaches a filter string: it becomes ldapts Filter
 * objects whose values are sent as raw octets. Raw filters typed by an administrator are checked
 * here first so that mistakes come back with a position, then handed to ldapts' parser.
 */

import {
  AndFilter,
  ApproximateFilter,
  EqualityFilter,
  ExtensibleFilter,
  Filter,
  FilterParser,
  GreaterThanEqualsFilter,
  LessThanEqualsFilter,
  NotFilter,
  OrFilter,
  PresenceFilter,
  SubstringFilter,
} from "ldapts";
import { DirectoryError } from "./errors.ts";

export type { Filter } from "ldapts";

export type ParseFilterResult =
  | { ok: true; filter: Filter }
  | { ok: false; message: string; position?: number };

export type BuildFilterResult =
  | { ok: true; filter: Filter; text: string }
  | { ok: false; message: string; position?: number };

export interface SearchFilterInput {
  /** What the administrator typed: plain text, or a raw filter starting with `(`. */
  text: string;
  /** Attributes plain text is matched against (username, full name, email…). */
  attributes: string[];
  /** The directory's user or group filter, which every result must also match. */
  objectFilter: string;
}

/** RFC 4515 escaping of an assertion value: `\` `*` `(` `)` NUL become \5c \2a \28 \29 \00; a Buffer is escaped byte by byte. */
export function escapeFilterValue(value: string | Buffer): string {
  return Filter.escape(value);
}

/** Parses an RFC 4515 filter, reporting the first problem with a 1-based position. */
/** A directory's configured filter, parsed; a malformed one is the directory's error, not a crash. */
export function compileDirectoryFilter(filter: string): Filter {
  const parsed = parseFilter(filter);
  if (parsed.ok) return parsed.filter;
  throw new DirectoryError({
    kind: "protocol",
    message: `The directory's filter is invalid: ${parsed.message}`,
    detail: `filter: ${filter}`,
  });
}

export function parseFilter(text: string): ParseFilterResult {
  const trimmed = text.trim();
  if (trimmed === "") return { ok: false, message: "The filter is empty." };
  // Like ldapts (and ldapsearch), accept a single item written without its parentheses.
  const offset = trimmed.startsWith("(") ? 0 : -1;
  const source = offset === 0 ? trimmed : `(${trimmed})`;
  const leading = text.length - text.trimStart().length;
  let scanned: Scanned;
  try {
    scanned = new FilterScanner(source).scan();
  } catch (err) {
    if (!(err instanceof FilterSyntaxError)) throw err;
    const position = Math.max(1, err.index + 1 + offset + leading);
    return { ok: false, message: `${err.reason} at position ${position}.`, position };
  }
  return parseWithLdapts(scanned);
}

/** The filter's canonical text, as it would be sent. */
export function filterToString(filter: Filter): string {
  return filter.toString();
}

/**
 * The filter for a search box: empty text → the object filter; text starting with `(` → that raw
 * filter AND the object filter; other text → a case-insensitive match on any of the attributes,
 * where `*` is a wildcard, a text without `*` matches anywhere in the value, and every other
 * character is matched literally.
 */
export function buildSearchFilter(input: SearchFilterInput): BuildFilterResult {
  const objectFilter = parseFilter(input.objectFilter);
  if (!objectFilter.ok)
    return { ok: false, message: `The directory's filter is invalid: ${objectFilter.message}` };
  const text = input.text.trim();
  if (text === "") return built(objectFilter.filter);
  if (text.startsWith("(")) {
    const raw = parseFilter(input.text);
    if (!raw.ok) return raw;
    return built(new AndFilter({ filters: [objectFilter.filter, raw.filter] }));
  }
  if (input.attributes.length === 0) return { ok: false, message: "No attributes are mapped to search on." };
  const matches = input.attributes.map((attribute) => textMatch(attribute, text.normalize("NFC")));
  const anyAttribute = matches.length === 1 && matches[0] ? matches[0] : new OrFilter({ filters: matches });
  return built(new AndFilter({ filters: [objectFilter.filter, anyAttribute] }));
}

/** AND of filters, without wrapping a lone filter. */
export function andFilters(...filters: Filter[]): Filter {
  return filters.length === 1 && filters[0] ? filters[0] : new AndFilter({ filters });
}

function built(filter: Filter): BuildFilterResult {
  return { ok: true, filter, text: filter.toString() };
}

function textMatch(attribute: string, text: string): Filter {
  const parts = text.split("*");
  if (parts.length === 1) return new SubstringFilter({ attribute, any: [text] });
  if (parts.every((part) => part === "")) return new PresenceFilter({ attribute });
  const initial = parts[0] ?? "";
  const final = parts[parts.length - 1] ?? "";
  const any = parts.slice(1, -1).filter((part) => part !== "");
  return new SubstringFilter({ attribute, initial, any, final });
}

function parseWithLdapts({ text, attributes }: Scanned): ParseFilterResult {
  try {
    // ldapts decodes each \XX escape to one UTF-16 unit, which garbles UTF-8 and binary values;
    // giving it pure ASCII and re-decoding the octets afterwards keeps them intact.
    const filter = FilterParser.parseString(asciiOnly(text));
    return { ok: true, filter: restore(filter, attributes) };
  } catch (err) {
    if (err instanceof FilterSyntaxError) return { ok: false, message: `${err.reason}.` };
    const reason = err instanceof Error ? err.message.replace(/[:.]\s.*$/s, "") : String(err);
    return { ok: false, message: `The filter could not be parsed: ${reason}.` };
  }
}

function asciiOnly(source: string): string {
  let result = "";
  for (const char of source) {
    if (char.charCodeAt(0) < 0x80) result += char;
    else result += escapeFilterValue(Buffer.from(char, "utf8"));
  }
  return result;
}

/**
 * Puts back the attribute descriptions ldapts cannot read (options such as `;binary`, numeric
 * OIDs), and turns values, which came back as one char per octet, into UTF-8 strings (or Buffers
 * when binary).
 */
function restore(filter: Filter, attributes: Map<string, string>): Filter {
  if (filter instanceof AndFilter || filter instanceof OrFilter) {
    filter.filters = filter.filters.map((child) => restore(child, attributes));
  } else if (filter instanceof NotFilter) {
    filter.filter = restore(filter.filter, attributes);
  } else if (filter instanceof ExtensibleFilter) {
    filter.matchType = attributes.get(filter.matchType) ?? filter.matchType;
  } else if ("attribute" in filter && typeof filter.attribute === "string") {
    filter.attribute = attributes.get(filter.attribute) ?? filter.attribute;
  }
  return decodeValues(filter);
}

function decodeValues(filter: Filter): Filter {
  if (filter instanceof EqualityFilter) {
    filter.value = octets(filter.value);
  } else if (filter instanceof SubstringFilter) {
    filter.initial = textOctets(filter.initial);
    filter.any = filter.any.map(textOctets);
    filter.final = textOctets(filter.final);
  } else if (
    filter instanceof ApproximateFilter ||
    filter instanceof GreaterThanEqualsFilter ||
    filter instanceof LessThanEqualsFilter ||
    filter instanceof ExtensibleFilter
  ) {
    filter.value = textOctets(filter.value);
  }
  return filter;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function octets(value: string | Buffer): string | Buffer {
  if (Buffer.isBuffer(value)) return value;
  const bytes = Buffer.from(value, "latin1");
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return bytes;
  }
}

function textOctets(value: string): string {
  const decoded = octets(value);
  if (Buffer.isBuffer(decoded)) {
    throw new FilterSyntaxError("Binary (non-UTF-8) values can only be used in equality matches", -1);
  }
  return decoded;
}

class FilterSyntaxError extends Error {
  constructor(
    readonly reason: string,
    /** 0-based index into the scanned text. */
    readonly index: number,
  ) {
    super(reason);
  }
}

const ATTRIBUTE_DESCRIPTION = /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)(?:;[A-Za-z0-9-]+)*$/;
/** What ldapts' own parser accepts as an attribute name. */
const LDAPTS_ATTRIBUTE = /^[A-Za-z][A-Za-z0-9-]*$/;

interface Scanned {
  /** The filter without insignificant whitespace, attribute descriptions ldapts cannot read replaced. */
  text: string;
  /** Placeholder → the attribute description it stands for. */
  attributes: Map<string, string>;
}
const MATCHING_RULE = /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$/;

/**
 * Checks a filter's structure by recursive descent, throwing FilterSyntaxError with an index.
 * Returns the filter without the whitespace between its parts, which ldapts does not accept.
 */
class FilterScanner {
  private pos = 0;
  private readonly ignored = new Set<number>();
  /** Start index → [end index, placeholder] for attribute names ldapts cannot parse. */
  private readonly substituted = new Map<number, [number, string]>();
  private readonly placeholders = new Map<string, string>();

  constructor(private readonly text: string) {}

  scan(): Scanned {
    this.filter();
    this.skipSpaces();
    if (this.pos < this.text.length) {
      if (this.text[this.pos] === ")") this.fail("Unbalanced parenthesis: this ')' has no matching '('");
      this.fail("Unexpected text after the end of the filter");
    }
    let text = "";
    for (let index = 0; index < this.text.length; index += 1) {
      const substitute = this.substituted.get(index);
      if (substitute) {
        text += substitute[1];
        index = substitute[0] - 1;
      } else if (!this.ignored.has(index)) {
        text += this.text[index];
      }
    }
    return { text, attributes: this.placeholders };
  }

  /** Swaps an attribute description ldapts would reject (`cn;lang-en`, `2.5.4.3`) for a plain name. */
  private substitute(start: number, attribute: string): void {
    if (attribute === "" || LDAPTS_ATTRIBUTE.test(attribute)) return;
    const placeholder = `rosterattr${this.placeholders.size}`;
    this.placeholders.set(placeholder, attribute);
    this.substituted.set(start, [start + attribute.length, placeholder]);
  }

  private filter(): void {
    const open = this.pos;
    if (this.text[this.pos] !== "(") this.fail("Expected '(' to start a filter");
    this.pos += 1;
    const operator = this.text[this.pos];
    if (operator === "&" || operator === "|") this.set(open, operator);
    else if (operator === "!") this.not(open);
    else this.item(open);
  }

  private set(open: number, operator: string): void {
    this.pos += 1;
    this.skipSpaces();
    if (this.text[this.pos] === ")") this.fail(`'${operator}' needs at least one filter inside it`, open);
    while (this.text[this.pos] !== ")") {
      if (this.pos >= this.text.length) this.fail("Unbalanced parenthesis: this '(' is never closed", open);
      this.filter();
      this.skipSpaces();
    }
    this.pos += 1;
  }

  private not(open: number): void {
    this.pos += 1;
    this.skipSpaces();
    if (this.pos >= this.text.length) this.fail("Unbalanced parenthesis: this '(' is never closed", open);
    if (this.text[this.pos] === ")") this.fail("'!' needs a filter inside it", open);
    this.filter();
    this.skipSpaces();
    if (this.pos >= this.text.length) this.fail("Unbalanced parenthesis: this '(' is never closed", open);
    if (this.text[this.pos] !== ")") this.fail("'!' takes exactly one filter");
    this.pos += 1;
  }

  private item(open: number): void {
    const start = this.pos;
    while (this.text[this.pos] !== ")") {
      const char = this.text[this.pos];
      if (char === undefined) this.fail("Unbalanced parenthesis: this '(' is never closed", open);
      if (char === "(") this.fail("Unescaped '(' in a value (write \\28)");
      if (char === "\\") this.escape();
      else this.pos += 1;
    }
    if (start === this.pos) this.fail("Empty filter '()'", open);
    this.assertion(start, this.text.slice(start, this.pos));
    this.pos += 1;
  }

  private escape(): void {
    const pair = this.text.slice(this.pos + 1, this.pos + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(pair)) {
      this.fail("Invalid escape: '\\' must be followed by two hex digits (write \\5c for a backslash)");
    }
    this.pos += 3;
  }

  private assertion(start: number, item: string): void {
    const equals = item.indexOf("=");
    if (equals === -1) this.fail(`Missing '=' in '${item}'`, start);
    const operator = /[~<>:]$/.test(item.slice(0, equals)) ? (item[equals - 1] ?? "") : "";
    const attribute = item.slice(0, equals - operator.length);
    const value = item.slice(equals + 1);
    if (operator === ":") {
      this.extensible(start, attribute);
      return;
    }
    if (attribute === "") this.fail("Missing attribute name before the operator", start);
    if (!ATTRIBUTE_DESCRIPTION.test(attribute)) this.fail(`Invalid attribute name '${attribute}'`, start);
    this.substitute(start, attribute);
    const valueStart = start + equals + 1;
    if (operator !== "" && value.includes("*")) {
      this.fail(
        `'*' is not allowed with '${operator}=' (write \\2a for a literal '*')`,
        valueStart + value.indexOf("*"),
      );
    }
    const doubled = value.indexOf("**");
    if (doubled !== -1) this.fail("Two '*' in a row", valueStart + doubled);
  }

  /** `attr[:dn][:rule]:=value` or `[:dn]:rule:=value`. */
  private extensible(start: number, head: string): void {
    const parts = head.split(":");
    const attribute = parts[0] ?? "";
    const options = parts.slice(1);
    if (attribute !== "" && !ATTRIBUTE_DESCRIPTION.test(attribute)) {
      this.fail(`Invalid attribute name '${attribute}'`, start);
    }
    this.substitute(start, attribute);
    const rules = options.filter((option) => option.toLowerCase() !== "dn");
    if (rules.length > 1 || rules.some((rule) => !MATCHING_RULE.test(rule))) {
      this.fail(`Invalid extensible match '${head}:='`, start);
    }
    if (attribute === "" && rules.length === 0)
      this.fail("An extensible match needs an attribute or a rule", start);
  }

  private skipSpaces(): void {
    while (/\s/.test(this.text[this.pos] ?? "")) {
      this.ignored.add(this.pos);
      this.pos += 1;
    }
  }

  private fail(reason: string, index = this.pos): never {
    throw new FilterSyntaxError(reason, index);
  }
}
