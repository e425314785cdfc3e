import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { nameKey, searchTextOf, usernameProblem } from "../../src/services/names.ts";
import { createSecretBox } from "../../src/services/secrets.ts";

test("a stored secret decrypts to the original and does not contain it", () => {
  const box = createSecretBox(randomBytes(32));
  const stored = box.encrypt("s3rvice-pässword");
  assert.doesNotMatch(stored, /s3rvice/);
  assert.notEqual(box.encrypt("s3rvice-pässword"), stored, "a fresh IV every time");
  assert.equal(box.decrypt(stored), "s3rvice-pässword");
});

test("a tampered secret or the wrong key is refused, not decrypted to garbage", () => {
  const box = createSecretBox(randomBytes(32));
  const stored = box.encrypt("secret");
  const parts = stored.split(":");
  const data = Buffer.from(parts[3] ?? "", "base64");
  data[0] = (data[0] ?? 0) ^ 1;
  parts[3] = data.toString("base64");
  assert.throws(() => box.decrypt(parts.join(":")));
  assert.throws(() => createSecretBox(randomBytes(32)).decrypt(stored));
});

test("names are the same when they differ only by case or normalization form", () => {
  assert.equal(nameKey("ZOE\u0308"), nameKey("zoë"));
  assert.equal(nameKey("Đorđe"), nameKey("đORĐE"));
  assert.notEqual(nameKey("zoe"), nameKey("zoë"));
});

test("usernames allow Unicode letters and refuse what breaks filters, DNs and markup", () => {
  for (const ok of ["alice", "Zoë", "李小龙", "j.doe-2", "o_brien", "a@b.test"])
    assert.equal(usernameProblem(ok), null, ok);
  for (const bad of [
    "a,b",
    "a*",
    "(x)",
    "a\\b",
    "<b>",
    "a\u0000b",
    "a\u200Bb",
    "a b",
    "x=y",
    "50%",
    "it's",
  ]) {
    assert.ok(usernameProblem(bad), bad);
  }
  assert.equal(usernameProblem(""), "Enter a username.");
  assert.match(usernameProblem("a,b") ?? "", /“,”/);
});

test("search text: folded parts (lower-case, NFC, no Latin accents), without a part another one contains", () => {
  assert.equal(
    searchTextOf("alice", "Alice Liddell", "alice@example.test"),
    "alice liddell\nalice@example.test",
  );
  assert.equal(searchTextOf("Zoe\u0308", "ZOË", null, ""), "zoe");
  assert.equal(
    searchTextOf("bob", "Bob Builder", "builder@example.test"),
    "bob builder\nbuilder@example.test",
  );
  assert.equal(searchTextOf("carol", "Danvers", "cd@example.test"), "carol\ndanvers\ncd@example.test");
});
