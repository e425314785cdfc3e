import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { bigGroupDirectory, groupEntry, userDn } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { testConnection } from "../../src/ldap/test-connection.ts";
import { closedPort, connectionTo, openldapMapping, skipWithoutSlapd } from "./support.ts";

const USERS = 1200;
const mapping = openldapMapping();

describe("testConnection against slapd", { skip: skipWithoutSlapd }, () => {
  let server: SlapdServer;
  let tlsServer: SlapdServer;

  before(async () => {
    const directory = bigGroupDirectory(USERS, { cn: "staff" });
    const extraGroups = ["admins", "auditors"].map((cn) => groupEntry({ cn, members: [userDn(0)] }));
    [server, tlsServer] = await Promise.all([
      startSlapd({ ldif: directory.ldif + extraGroups.join("") }),
      startSlapd({ tls: true, ldif: bigGroupDirectory(5).ldif }),
    ]);
  });

  after(async () => {
    await Promise.all([server?.stop(), tlsServer?.stop()]);
  });

  test("walks every step and counts users and groups exactly past the size limit", async () => {
    const result = await testConnection(connectionTo(server), mapping);
    assert.equal(result.ok, true);
    assert.deepEqual(
      result.steps.map((step) => [step.step, step.ok]),
      [
        ["connect", true],
        ["bind", true],
        ["base_dn", true],
        ["count_users", true],
        ["count_groups", true],
      ],
    );
    assert.equal(result.usersCount, USERS);
    assert.equal(result.groupsCount, 3);
    assert.equal(result.serverUrl, server.url);
    assert.equal(result.steps[3]?.message, `Found 1,200 users under ou=people,${server.baseDn}.`);
    assert.equal(result.steps[1]?.message, `Signed in as ${server.serviceDn}.`);
    assert.ok(result.steps.every((step) => Number.isInteger(step.ms) && step.ms >= 0));
  });

  test("includes the StartTLS step when it is used", async () => {
    const conn = connectionTo(tlsServer, { startTls: true, caCertPem: tlsServer.caCertPem ?? null });
    const result = await testConnection(conn, mapping);
    assert.equal(result.ok, true);
    assert.deepEqual(
      result.steps.map((step) => step.step),
      ["connect", "starttls", "bind", "base_dn", "count_users", "count_groups"],
    );
    assert.equal(result.usersCount, 5);
  });

  test("stops at the bind step with invalid_credentials (49) for a wrong password", async () => {
    const result = await testConnection(connectionTo(server, { bindPassword: "wrong" }), mapping);
    assert.equal(result.ok, false);
    assert.deepEqual(
      result.steps.map((step) => [step.step, step.ok]),
      [
        ["connect", true],
        ["bind", false],
      ],
    );
    const bind = result.steps[1];
    assert.equal(bind?.error?.kind, "invalid_credentials");
    assert.equal(bind?.error?.ldapCode, 49);
    assert.equal(bind?.message, "The bind DN or password is wrong.");
    assert.equal(result.usersCount, undefined);
  });

  test("stops at the base DN step with no_such_object (32) when the base DN does not exist", async () => {
    const result = await testConnection(connectionTo(server, { baseDn: "dc=wrong,dc=test" }), mapping);
    assert.equal(result.ok, false);
    const last = result.steps.at(-1);
    assert.equal(last?.step, "base_dn");
    assert.equal(last?.error?.kind, "no_such_object");
    assert.equal(last?.error?.ldapCode, 32);
    assert.match(last?.message ?? "", /dc=wrong,dc=test does not exist/);
  });

  test("stops at counting users when the user base does not exist", async () => {
    const result = await testConnection(connectionTo(server), { ...mapping, userBase: "ou=staff" });
    assert.equal(result.ok, false);
    const last = result.steps.at(-1);
    assert.equal(last?.step, "count_users");
    assert.equal(last?.error?.kind, "no_such_object");
    assert.match(last?.message ?? "", /ou=staff,dc=example,dc=test/);
  });

  test("stops at counting users when the user filter is malformed", async () => {
    const result = await testConnection(connectionTo(server), {
      ...mapping,
      userFilter: "(objectClass=person",
    });
    assert.equal(result.steps.at(-1)?.step, "count_users");
    assert.match(result.steps.at(-1)?.message ?? "", /filter is invalid: Unbalanced parenthesis/);
  });

  test("stops at the connect step when the port is closed", async () => {
    const result = await testConnection(
      connectionTo(server, { urls: [`ldap://127.0.0.1:${await closedPort()}`] }),
      mapping,
    );
    assert.equal(result.ok, false);
    assert.equal(result.steps.length, 1);
    assert.equal(result.steps[0]?.step, "connect");
    assert.equal(result.steps[0]?.error?.kind, "refused");
    assert.equal(result.serverUrl, undefined);
  });

  test("says which URL answered after failing over", async () => {
    const dead = `ldap://127.0.0.1:${await closedPort()}`;
    const result = await testConnection(connectionTo(server, { urls: [dead, server.url] }), mapping);
    assert.equal(result.ok, true);
    assert.equal(result.serverUrl, server.url);
    assert.match(
      result.steps[0]?.message ?? "",
      new RegExp(`^${dead} failed \\(The server refused.*Connected to ${server.url}\\.$`),
    );
  });

  test("stops at the StartTLS step when the CA is wrong", async () => {
    const conn = connectionTo(tlsServer, { startTls: true, caCertPem: null });
    const result = await testConnection(conn, mapping);
    assert.deepEqual(
      result.steps.map((step) => [step.step, step.ok, step.error?.kind]),
      [
        ["connect", true, undefined],
        ["starttls", false, "certificate_untrusted"],
      ],
    );
  });
});
