import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  DnCache,
  DnSyntaxError,
  dnEquals,
  escapeDnValue,
  formatDn,
  isDescendantOf,
  isValidDn,
  normalizeDn,
  parentDn,
  parseDn,
  resolveBase,
} from "../../src/ldap/dn.ts";

describe("parseDn", () => {
  test("splits RDNs on unescaped commas only", () => {
    const dn = parseDn("cn=O'Brien\\, Seán,ou=people,dc=example,dc=test");
    assert.equal(dn.length, 4);
    assert.deepEqual(dn[0], [{ type: "cn", value: "O'Brien, Seán", hex: false }]);
  });

  test("decodes hex escapes, including multi-byte UTF-8", () => {
    const dn = parseDn("cn=Garc\\C3\\ADa\\2C Ana\\2BCo,dc=test");
    assert.equal(dn[0]?.[0]?.value, "García, Ana+Co");
  });

  test("reads multi-valued RDNs and escaped plus signs", () => {
    const dn = parseDn("cn=Pat Kim+uid=pkim,cn=Lee\\+Park,dc=test");
    assert.deepEqual(dn[0], [
      { type: "cn", value: "Pat Kim", hex: false },
      { type: "uid", value: "pkim", hex: false },
    ]);
    assert.equal(dn[1]?.[0]?.value, "Lee+Park");
  });

  test("reads quoted values, #hex values and the legacy ';' separator", () => {
    const dn = parseDn('cn="Smith, John ";dc=test+x=#04024869');
    assert.equal(dn[0]?.[0]?.value, "Smith, John ");
    assert.deepEqual(dn[1]?.[1], { type: "x", value: "#04024869", hex: true });
  });

  test("drops unescaped spaces around values but keeps escaped ones", () => {
    assert.equal(parseDn("cn = Alice ,dc=test")[0]?.[0]?.value, "Alice");
    assert.equal(parseDn("cn=\\ Alice\\ ,dc=test")[0]?.[0]?.value, " Alice ");
  });

  test("treats the empty string as the root DSE", () => {
    assert.deepEqual(parseDn(""), []);
  });

  test("rejects malformed DNs with the position of the problem", () => {
    const cases: [string, number][] = [
      ["cn", 3],
      ["cn=a,", 6],
      ["cn=a\\zz", 5],
      ['cn="open', 4],
      ["cn=\\ff", 4],
      ["c n=a", 1],
    ];
    for (const [text, position] of cases) {
      assert.throws(
        () => parseDn(text),
        (err: unknown) => err instanceof DnSyntaxError && err.position === position,
        text,
      );
      assert.equal(isValidDn(text), false, text);
    }
  });
});

describe("escapeDnValue", () => {
  test("escapes the RFC 4514 specials, edge spaces, a leading # and NUL", () => {
    assert.equal(escapeDnValue('O\'Brien, "Seán" <x>+y;z\\'), 'O\'Brien\\, \\"Seán\\" \\<x\\>\\+y\\;z\\\\');
    assert.equal(escapeDnValue(" #lead trail "), "\\ #lead trail\\ ");
    assert.equal(escapeDnValue("#tag"), "\\#tag");
    assert.equal(escapeDnValue("a\0b"), "a\\00b");
  });

  test("round-trips awkward values through parseDn", () => {
    for (const value of ["O'Brien, Seán", "Lee+Park", " spaced ", "#1", "back\\slash", "李小龙", "a=b"]) {
      assert.equal(parseDn(`cn=${escapeDnValue(value)},dc=test`)[0]?.[0]?.value, value);
    }
  });
});

describe("normalizeDn and dnEquals", () => {
  test("equates the spellings servers use for the same DN", () => {
    const written = "cn=O'Brien\\, Seán,ou=people,dc=example,dc=test";
    const fromSlapd = "cn=O'Brien\\2C Se\\C3\\A1n,ou=people,dc=example,dc=test";
    const fromAd = "CN=o'brien\\, SEÁN, OU=People, DC=Example, DC=Test";
    assert.equal(normalizeDn(written), "cn=o'brien\\, seán,ou=people,dc=example,dc=test");
    assert.equal(normalizeDn(fromSlapd), normalizeDn(written));
    assert.ok(dnEquals(fromAd, written));
  });

  test("ignores the order of multi-valued RDN parts and NFC differences", () => {
    assert.ok(dnEquals("cn=Pat Kim+uid=pkim,dc=test", "UID=PKIM+CN=pat kim,dc=test"));
    assert.ok(dnEquals("uid=zoe\u0308,dc=test", "uid=zoë,dc=test"));
  });

  test("tells different DNs apart, and never equates a malformed one", () => {
    assert.equal(dnEquals("cn=a\\,b,dc=test", "cn=a,cn=b,dc=test"), false);
    assert.equal(dnEquals("cn=a+cn=b,dc=test", "cn=a,cn=b,dc=test"), false);
    assert.equal(dnEquals("cn=a\\zz", "cn=a\\zz"), false);
  });

  test("formatDn keeps the case as written while canonicalizing escapes", () => {
    assert.equal(formatDn(parseDn("CN=O'Brien\\2C Seán,DC=Test")), "CN=O'Brien\\, Seán,DC=Test");
  });
});

describe("hierarchy", () => {
  test("isDescendantOf compares parsed DNs, not strings", () => {
    assert.ok(isDescendantOf("uid=a,ou=People,DC=Example,DC=Test", "dc=example,dc=test"));
    assert.equal(isDescendantOf("dc=example,dc=test", "dc=example,dc=test"), false);
    assert.ok(isDescendantOf("dc=example,dc=test", "dc=example,dc=test", { includeSelf: true }));
    assert.equal(isDescendantOf("uid=a,dc=fooexample,dc=test", "dc=example,dc=test"), false);
    assert.equal(isDescendantOf("cn=x\\,dc=example,dc=test", "dc=example,dc=test"), false);
  });

  test("parentDn drops the first RDN", () => {
    assert.equal(parentDn("cn=O'Brien\\, Seán,ou=people,dc=test"), "ou=people,dc=test");
    assert.equal(parentDn("dc=test"), null);
  });

  test("resolveBase accepts relative and absolute search bases", () => {
    assert.equal(resolveBase(null, "dc=example,dc=test"), "dc=example,dc=test");
    assert.equal(resolveBase("  ", "dc=example,dc=test"), "dc=example,dc=test");
    assert.equal(resolveBase("ou=people", "dc=example,dc=test"), "ou=people,dc=example,dc=test");
    assert.equal(
      resolveBase("OU=People,DC=Example,DC=Test", "dc=example,dc=test"),
      "OU=People,DC=Example,DC=Test",
    );
  });
});

describe("DnCache", () => {
  // Valid and malformed DNs, several sharing parents, in the spellings servers and groups use.
  const dns = [
    "",
    "   ",
    "dc=test",
    "uid=a,ou=people,dc=example,dc=test",
    "UID=A,OU=People,DC=Example,DC=Test",
    "uid=b , ou=people ,dc=example,dc=test",
    "uid=c;ou=people;dc=example;dc=test",
    "cn=O'Brien\\, Seán,ou=people,dc=example,dc=test",
    "cn=O'Brien\\2C Seán,ou=people,dc=example,dc=test",
    "cn=Pat Kim+uid=pkim,cn=Lee\\+Park,dc=test",
    'cn="Smith, J",ou=people,dc=example,dc=test',
    "cn=#04024869,ou=people,dc=example,dc=test",
    "cn=Zoe\u0308,ou=Pe\u0301ople,dc=test",
    "uid=a,",
    "uid=a,  ",
    "uid=a,,dc=test",
    ",dc=test",
    "uid=a,ou",
    "uid=a,ou=people,dc=example,dc=test,",
    "uid=a dc=test",
    "=a,dc=test",
    "uid=a\\,dc=test",
    "uid=a\\",
    "uid=\\zz,dc=test",
  ];

  test("gives exactly what parseDn, normalizeDn and formatDn give, cached or not", () => {
    const cache = new DnCache();
    for (const round of ["first", "cached"]) {
      for (const text of dns) {
        const cached = cache.parse(text);
        const valid = isValidDn(text);
        assert.equal(cached !== null, valid, `${round}: ${JSON.stringify(text)} valid`);
        if (!cached) continue;
        const parsed = parseDn(text);
        assert.deepEqual(cached.rdns, parsed, `${round}: ${JSON.stringify(text)}`);
        assert.equal(cached.key, normalizeDn(text), `${round}: ${JSON.stringify(text)}`);
        assert.deepEqual(
          cached.parent,
          parsed.length > 1
            ? { key: normalizeDn(formatDn(parsed.slice(1))), text: formatDn(parsed.slice(1)) }
            : null,
          `${round}: ${JSON.stringify(text)} parent`,
        );
      }
    }
  });

  test("parses a shared parent once, and stops remembering parents at its capacity", () => {
    const cache = new DnCache(2);
    const first = cache.parse("uid=a,ou=people,dc=test");
    const second = cache.parse("uid=b,ou=people,dc=test");
    assert.ok(first && second);
    assert.equal(first.rdns[1], second.rdns[1], "the parent's RDNs are shared, not parsed again");
    for (let i = 0; i < 5; i += 1) assert.ok(cache.parse(`uid=a,ou=unit${i},dc=test`));
    const third = cache.parse("uid=c,ou=unit4,dc=test");
    const fourth = cache.parse("uid=d,ou=unit4,dc=test");
    assert.notEqual(third?.rdns[1], fourth?.rdns[1], "past its capacity, parents are parsed each time");
    assert.equal(third?.parent?.key, fourth?.parent?.key);
  });
});
