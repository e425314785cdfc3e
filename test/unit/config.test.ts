import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config.ts";

test("production refuses to start without its secrets, naming each missing setting", () => {
  assert.throws(
    () => loadConfig({ NODE_ENV: "production" }),
    (err: unknown) =>
      err instanceof ConfigError &&
      /SESSION_SECRET: required/.test(err.message) &&
      /ROSTER_ENCRYPTION_KEY/.test(err.message),
  );
});

test("an invalid setting is named with what is wrong", () => {
  assert.throws(() => loadConfig({ PORT: "99999" }), /PORT:/);
  assert.throws(() => loadConfig({ DATABASE_URL: "mysql://x" }), /DATABASE_URL: must start with postgres/);
  assert.throws(
    () => loadConfig({ ROSTER_ENCRYPTION_KEY: "short" }),
    /ROSTER_ENCRYPTION_KEY: must be 32 bytes/,
  );
  assert.throws(() => loadConfig({ ROSTER_ADMIN_USERNAME: "admin" }), /must be given together/);
  assert.throws(
    () => loadConfig({ ROSTER_ADMIN_USERNAME: "admin", ROSTER_ADMIN_PASSWORD: "short" }),
    /ROSTER_ADMIN_PASSWORD: must be at least 12/,
  );
});

test("development generates secrets once and keeps them, readable only by the owner", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "roster-config-"));
  try {
    const first = loadConfig({ ROSTER_DATA_DIR: dir });
    const second = loadConfig({ ROSTER_DATA_DIR: dir });
    assert.equal(first.sessionSecret, second.sessionSecret);
    assert.ok(first.encryptionKey.equals(second.encryptionKey));
    assert.equal(first.encryptionKey.length, 32);
    assert.ok(first.sessionSecret.length >= 32);
    const file = path.join(dir, "secrets.json");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.match(await readFile(file, "utf8"), /sessionSecret/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("given secrets win, and production defaults to secure cookies", () => {
  const key = Buffer.alloc(32, 7);
  const config = loadConfig({
    NODE_ENV: "production",
    SESSION_SECRET: "s".repeat(40),
    ROSTER_ENCRYPTION_KEY: key.toString("hex"),
    DATABASE_URL: "postgres://db/roster",
    TRUST_PROXY: "2",
  });
  assert.ok(config.encryptionKey.equals(key));
  assert.equal(config.secureCookies, true);
  assert.equal(config.trustProxy, 2);
  assert.equal(config.databaseUrl, "postgres://db/roster");
});
