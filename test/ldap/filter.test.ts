import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { EqualityFilter, SubstringFilter } from "ldapts";
import { buildSearchFilter, escapeFilterValue, parseFilter } from "../../src/ldap/filter.ts";
import { guidToFilterValue } from "../../src/ldap/mapping.ts";

const PEOPLE = "(objectClass=inetOrgPerson)";

function filterText(text: string): string {
  const result = parseFilter(text);
  assert.ok(result.ok, `expected ${text} to parse: ${result.ok ? "" : result.message}`);
  return result.filter.toString();
}

function parseError(text: string): { message: string; position?: number } {
  const result = parseFilter(text);
  assert.equal(result.ok, false, `expected ${text} to be rejected`);
  return result as { message: string; position?: number };
}

describe("escapeFilterValue", () => {
  test("escapes the RFC 4515 specials backslash, star, parentheses and NUL", () => {
    assert.equal(escapeFilterValue("a\\b*c(d)e\0f"), "a\\5cb\\2ac\\28d\\29e\\00f");
  });

  test("leaves non-ASCII text as UTF-8 characters", () => {
    assert.equal(escapeFilterValue("Zoë 李小龙 Đorđe"), "Zoë 李小龙 Đorđe");
  });

  test("escapes every byte of a binary value", () => {
    assert.equal(escapeFilterValue(Buffer.from([0x00, 0x2a, 0xff])), "\\00\\2a\\ff");
  });
});

describe("parseFilter", () => {
  test("accepts a well-formed filter and keeps its meaning", () => {
    assert.equal(
      filterText("(&(objectClass=person)(|(uid=jo*)(mail=*@example.test)))"),
      "(&(objectClass=person)(|(uid=jo*)(mail=*@example.test)))",
    );
  });

  test("accepts a single item without parentheses, as ldapsearch does", () => {
    assert.equal(filterText("uid=alice"), "(uid=alice)");
  });

  test("ignores whitespace between the parts of a filter", () => {
    assert.equal(filterText("  (& (uid=a)\n  (cn=b) )  "), "(&(uid=a)(cn=b))");
  });

  test("decodes hex escapes of UTF-8 into the characters they spell", () => {
    const result = parseFilter("(cn=Jos\\c3\\a9)");
    assert.ok(result.ok);
    assert.ok(result.filter instanceof EqualityFilter);
    assert.equal(result.filter.value, "José");
  });

  test("keeps literal non-ASCII characters intact", () => {
    const result = parseFilter("(cn=李*)");
    assert.ok(result.ok && result.filter instanceof SubstringFilter);
    assert.equal(result.filter.initial, "李");
  });

  test("keeps a binary equality value (an objectGUID) as its exact bytes", () => {
    const guid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
    const result = parseFilter(`(objectGUID=${guidToFilterValue(guid)})`);
    assert.ok(result.ok && result.filter instanceof EqualityFilter);
    assert.ok(Buffer.isBuffer(result.filter.value));
    assert.equal(result.filter.value.toString("hex"), "3d2c1b0a5f4e71608293a4b5c6d7e8f9");
  });

  test("reads attribute options, numeric OIDs and extensible matches", () => {
    assert.equal(filterText("(cn;lang-en=x)"), "(cn;lang-en=x)");
    assert.equal(filterText("(2.5.4.3=x)"), "(2.5.4.3=x)");
    assert.equal(
      filterText("(memberOf:1.2.840.113556.1.4.1941:=cn=admins,dc=example,dc=test)"),
      "(memberOf:1.2.840.113556.1.4.1941:=cn=admins,dc=example,dc=test)",
    );
  });

  test("points at an unclosed parenthesis", () => {
    assert.deepEqual(parseError("(&(uid=a)(cn=b)"), {
      ok: false,
      message: "Unbalanced parenthesis: this '(' is never closed at position 1.",
      position: 1,
    });
  });

  test("points at a closing parenthesis with no opening one", () => {
    const error = parseError("(uid=alice))");
    assert.equal(error.position, 12);
    assert.match(error.message, /Unbalanced parenthesis.*at position 12/);
  });

  test("points at an unescaped parenthesis inside a value", () => {
    const error = parseError("(cn=Smith (Sales))");
    assert.equal(error.position, 11);
    assert.match(error.message, /Unescaped '\(' .*\\28/);
  });

  test("points at a backslash not followed by two hex digits", () => {
    const error = parseError("(cn=C:\\Users)");
    assert.equal(error.position, 7);
    assert.match(error.message, /\\5c/);
  });

  test("points at an item without an operator", () => {
    assert.equal(parseError("(&(uid=a)(alice))").message, "Missing '=' in 'alice' at position 11.");
  });

  test("counts positions in the text as typed, including leading spaces and missing outer parentheses", () => {
    assert.equal(parseError("  (uid=a))").position, 10);
    assert.equal(parseError("cn=a(b").position, 5);
  });

  test("rejects empty filters, empty sets and stray text", () => {
    assert.equal(parseError("").message, "The filter is empty.");
    assert.match(parseError("()").message, /Empty filter/);
    assert.match(parseError("(&)").message, /'&' needs at least one filter/);
    assert.match(
      parseError("(uid=a) and more").message,
      /Unexpected text after the end of the filter at position 9/,
    );
    assert.match(parseError("(!(a=b)(c=d))").message, /'!' takes exactly one filter/);
    assert.match(parseError("(cn=a**b)").message, /Two '\*' in a row/);
    assert.match(parseError("(cn>=a*)").message, /'\*' is not allowed with '>='/);
    assert.match(parseError("(c n=a)").message, /Invalid attribute name 'c n'/);
  });
});

describe("buildSearchFilter", () => {
  const attributes = ["uid", "cn", "mail"];

  test("matches plain text anywhere in any of the attributes, ANDed with the object filter", () => {
    const result = buildSearchFilter({ text: "alice", attributes, objectFilter: PEOPLE });
    assert.ok(result.ok);
    assert.equal(result.text, "(&(objectClass=inetOrgPerson)(|(uid=*alice*)(cn=*alice*)(mail=*alice*)))");
  });

  test("keeps * as a wildcard and escapes every other special character", () => {
    const result = buildSearchFilter({
      text: "O'Brien, S*n (x)\\",
      attributes: ["cn"],
      objectFilter: PEOPLE,
    });
    assert.ok(result.ok);
    assert.equal(result.text, "(&(objectClass=inetOrgPerson)(cn=O'Brien, S*n \\28x\\29\\5c))");
  });

  test("cannot be turned into a different filter by typed parentheses", () => {
    const result = buildSearchFilter({
      text: "*)(uid=*))(|(uid=*",
      attributes: ["uid"],
      objectFilter: PEOPLE,
    });
    assert.ok(result.ok);
    assert.equal(result.text, "(&(objectClass=inetOrgPerson)(uid=*\\29\\28uid=*\\29\\29\\28|\\28uid=*))");
  });

  test("turns a lone * into a presence match", () => {
    const result = buildSearchFilter({ text: "*", attributes: ["uid"], objectFilter: PEOPLE });
    assert.ok(result.ok);
    assert.equal(result.text, "(&(objectClass=inetOrgPerson)(uid=*))");
  });

  test("normalizes typed text to NFC and keeps it readable", () => {
    const result = buildSearchFilter({ text: "Zoe\u0308", attributes: ["cn"], objectFilter: PEOPLE });
    assert.ok(result.ok);
    assert.equal(result.text, "(&(objectClass=inetOrgPerson)(cn=*Zoë*))");
  });

  test("uses the object filter alone for empty text", () => {
    const result = buildSearchFilter({ text: "   ", attributes, objectFilter: PEOPLE });
    assert.ok(result.ok);
    assert.equal(result.text, PEOPLE);
  });

  test("combines a raw filter with the object filter", () => {
    const result = buildSearchFilter({ text: "(departmentNumber=Sales)", attributes, objectFilter: PEOPLE });
    assert.ok(result.ok);
    assert.equal(result.text, "(&(objectClass=inetOrgPerson)(departmentNumber=Sales))");
  });

  test("rejects a malformed raw filter with a positioned message", () => {
    const result = buildSearchFilter({ text: "(|(uid=a)(cn=b)", attributes, objectFilter: PEOPLE });
    assert.deepEqual(result, {
      ok: false,
      message: "Unbalanced parenthesis: this '(' is never closed at position 1.",
      position: 1,
    });
  });

  test("reports a broken object filter as the directory's configuration problem", () => {
    const result = buildSearchFilter({ text: "a", attributes, objectFilter: "(objectClass=person" });
    assert.equal(result.ok, false);
    assert.match(result.ok ? "" : result.message, /^The directory's filter is invalid: Unbalanced/);
  });
});
