import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Entry } from "ldapts";
import {
  cleanText,
  guidToBytes,
  guidToFilterValue,
  guidToString,
  mapGroup,
  mapUser,
  sidToString,
  userAttributes,
} from "../../src/ldap/mapping.ts";
import { presetMapping } from "../../src/ldap/presets.ts";

const openldap = presetMapping("openldap");
const ad = presetMapping("active_directory");

// The GUID Active Directory shows as 3d2c1b0a-5f4e-7160-8293-a4b5c6d7e8f9 is stored with its first
// three fields little-endian.
const GUID_BYTES = Buffer.from("0a1b2c3d4e5f60718293a4b5c6d7e8f9", "hex");
const GUID = "3d2c1b0a-5f4e-7160-8293-a4b5c6d7e8f9";

function user(entry: Entry, mapping = openldap) {
  const result = mapUser(entry, mapping);
  assert.ok(result.ok, result.ok ? "" : result.reason);
  return result.value;
}

describe("mapUser", () => {
  test("maps an OpenLDAP inetOrgPerson", () => {
    const mapped = user({
      dn: "uid=zoe,ou=people,dc=example,dc=test",
      uid: "zoë.schmidt",
      cn: "Zoë Schmidt",
      mail: "zoe.schmidt@example.test",
      departmentNumber: "Engineering",
      telephoneNumber: "+49 30 5550 1101",
      entryUUID: "AD7466B4-7C2D-1041-9A1C-43D2CC74DF06",
    });
    assert.deepEqual(mapped, {
      dn: "uid=zoe,ou=people,dc=example,dc=test",
      externalId: "ad7466b4-7c2d-1041-9a1c-43d2cc74df06",
      username: "zoë.schmidt",
      fullName: "Zoë Schmidt",
      email: "zoe.schmidt@example.test",
      department: "Engineering",
      phone: "+49 30 5550 1101",
      disabled: false,
    });
  });

  test("stores usernames and names NFC-normalized", () => {
    const mapped = user({ dn: "uid=x", uid: "zoe\u0308", cn: "Zoe\u0308 D", entryUUID: "1" });
    assert.equal(mapped.username, "zo\u00eb");
    assert.equal(mapped.fullName, "Zo\u00eb D");
  });

  test("takes the first non-empty value of multi-valued attributes and finds names in any case", () => {
    const mapped = user({
      dn: "uid=x",
      UID: ["", "alice", "alice2"],
      CN: ["Alice A", "Alice B"],
      ENTRYUUID: "1",
    });
    assert.equal(mapped.username, "alice");
    assert.equal(mapped.fullName, "Alice A");
  });

  test("strips control characters and caps absurd lengths", () => {
    const mapped = user({
      dn: "uid=x",
      uid: "bob\u0000\u0007",
      cn: `B${"o".repeat(400)}b\n`,
      entryUUID: "1",
    });
    assert.equal(mapped.username, "bob");
    assert.equal(Array.from(mapped.fullName).length, 255);
    assert.equal(cleanText("\u0001\u009f  ", 10), null);
    assert.equal(cleanText("😀😀😀", 2), "😀😀");
  });

  test("falls back to the username when there is no full name, and to null for missing fields", () => {
    const mapped = user({ dn: "uid=x", uid: "carol", entryUUID: "1" });
    assert.equal(mapped.fullName, "carol");
    assert.equal(mapped.email, null);
    assert.equal(mapped.department, null);
    assert.equal(mapped.phone, null);
  });

  test("converts Active Directory's objectGUID and reads userAccountControl's disabled bit", () => {
    const base = { dn: "CN=Ann,DC=corp", sAMAccountName: "ann", displayName: "Ann", objectGUID: GUID_BYTES };
    assert.equal(user({ ...base, userAccountControl: "512" }, ad).disabled, false);
    assert.equal(user({ ...base, userAccountControl: "514" }, ad).disabled, true);
    assert.equal(user({ ...base, userAccountControl: "66050" }, ad).disabled, true);
    assert.equal(user(base, ad).externalId, GUID);
  });

  test("recovers a GUID that arrived as a UTF-8 string rather than a Buffer", () => {
    const ascii = Buffer.from("ABCDEFGHIJKLMNOP");
    const mapped = user({ dn: "CN=x", sAMAccountName: "x", objectGUID: ascii.toString("utf8") }, ad);
    assert.equal(mapped.externalId, guidToString(ascii));
  });

  test("treats nsAccountLock=TRUE (389 DS, FreeIPA) as disabled", () => {
    const mapped = user(
      { dn: "uid=x", uid: "x", nsUniqueId: "a-b", nsAccountLock: "TRUE" },
      presetMapping("389ds"),
    );
    assert.equal(mapped.disabled, true);
    assert.equal(mapped.externalId, "a-b");
  });

  test("reads only the entry's own attributes: never the DN or an inherited property as a value", () => {
    const mapping = { ...openldap, attrFullName: "constructor", attrEmail: "dn", attrDepartment: "toString" };
    const mapped = user({ dn: "uid=x,dc=example", uid: "x", entryUUID: "1" }, mapping);
    assert.equal(mapped.fullName, "x");
    assert.equal(mapped.email, null);
    assert.equal(mapped.department, null);
  });

  test("refuses entries without a username or a unique id, saying which (and naming the id it has)", () => {
    assert.deepEqual(mapUser({ dn: "uid=x", entryUUID: "1" }, openldap), {
      ok: false,
      dn: "uid=x",
      reason: "The entry has no uid (username).",
      externalId: "1",
    });
    assert.deepEqual(mapUser({ dn: "uid=x", uid: "x" }, openldap), {
      ok: false,
      dn: "uid=x",
      reason: "The entry has no entryUUID (unique id).",
    });
    const badGuid = mapUser({ dn: "CN=x", sAMAccountName: "x", objectGUID: Buffer.alloc(3) }, ad);
    assert.equal(badGuid.ok, false);
  });

  test("requests every mapped attribute plus the account-state ones", () => {
    assert.deepEqual(userAttributes(ad), [
      "sAMAccountName",
      "displayName",
      "mail",
      "department",
      "telephoneNumber",
      "objectGUID",
      "userAccountControl",
      "nsAccountLock",
    ]);
  });
});

describe("mapGroup", () => {
  test("counts members and marks an Active Directory range window as a partial count", () => {
    const plain = mapGroup(
      { dn: "cn=g", cn: "g", entryUUID: "1", member: ["a", "b"], description: "D" },
      openldap,
    );
    assert.ok(plain.ok);
    assert.deepEqual(plain.value, {
      dn: "cn=g",
      externalId: "1",
      name: "g",
      description: "D",
      memberCount: 2,
      memberCountExact: true,
    });
    const windowed = { dn: "CN=g", cn: "g", objectGUID: GUID_BYTES, "member;range=0-1499": ["a", "b", "c"] };
    const partial = mapGroup(windowed, ad);
    assert.ok(partial.ok);
    assert.equal(partial.value.memberCount, 3);
    assert.equal(partial.value.memberCountExact, false);
    const last = mapGroup({ ...windowed, "member;range=0-1499": [], "member;range=0-*": ["a"] }, ad);
    assert.ok(last.ok && last.value.memberCountExact);
  });

  test("NFC-normalizes the group name", () => {
    const group = mapGroup({ dn: "cn=x", cn: "E\u0301quipe", entryUUID: "1" }, openldap);
    assert.ok(group.ok);
    assert.equal(group.value.name, "\u00c9quipe");
    assert.equal(group.value.memberCount, 0);
  });
});

describe("identifiers", () => {
  test("guidToString and guidToBytes are inverses", () => {
    assert.equal(guidToString(GUID_BYTES), GUID);
    assert.deepEqual(guidToBytes(GUID), GUID_BYTES);
    assert.deepEqual(guidToBytes(`{${GUID.toUpperCase()}}`), GUID_BYTES);
    assert.throws(() => guidToBytes("not-a-guid"), RangeError);
  });

  test("guidToFilterValue escapes the stored byte order", () => {
    assert.equal(guidToFilterValue(GUID), "\\0a\\1b\\2c\\3d\\4e\\5f\\60\\71\\82\\93\\a4\\b5\\c6\\d7\\e8\\f9");
    assert.equal(guidToFilterValue(GUID_BYTES), guidToFilterValue(GUID));
  });

  test("sidToString renders a binary objectSid", () => {
    const sid = Buffer.from("010500000000000515000000a065cf7e784b9b5fe77c8770f4010000", "hex");
    assert.equal(sidToString(sid), "S-1-5-21-2127521184-1604012920-1887927527-500");
  });
});
