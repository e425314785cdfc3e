import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { generateUsers } from "../../src/dev/fixtures.ts";
import { generateTestCa, type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { type OpenResult, openDirectory } from "../../src/ldap/client.ts";
import type { DirectoryConnection } from "../../src/ldap/types.ts";
import { connectionTo, skipWithoutSlapd } from "./support.ts";

const PEOPLE = "(objectClass=inetOrgPerson)";

/** Opens a session, checks it can search, closes it; returns the failure when it cannot open. */
async function openAndCount(conn: DirectoryConnection): Promise<OpenResult> {
  const opened = await openDirectory(conn);
  if (opened.ok) {
    assert.equal(await opened.session.count(conn.baseDn, PEOPLE, "sub"), 3);
    await opened.session.close();
  }
  return opened;
}

function failure(opened: OpenResult) {
  assert.equal(opened.ok, false, "expected the connection to fail");
  return opened as Extract<OpenResult, { ok: false }>;
}

describe("TLS against slapd", { skip: skipWithoutSlapd }, () => {
  let server: SlapdServer;
  let otherCaPem: string;

  before(async () => {
    [server, otherCaPem] = await Promise.all([
      startSlapd({ tls: true, ldif: generateUsers(3, { password: "user-password" }) }),
      generateTestCa().then((ca) => ca.certPem),
    ]);
  });

  after(async () => {
    await server?.stop();
  });

  function tlsConnection(overrides: Partial<DirectoryConnection>): DirectoryConnection {
    return connectionTo(server, { caCertPem: server.caCertPem ?? null, ...overrides });
  }

  test("StartTLS with the server's CA succeeds", async () => {
    const opened = await openAndCount(tlsConnection({ startTls: true }));
    assert.ok(opened.ok);
    assert.equal(typeof opened.timings.startTlsMs, "number");
  });

  test("ldaps:// with the server's CA succeeds", async () => {
    const opened = await openAndCount(tlsConnection({ urls: [server.ldapsUrl ?? ""] }));
    assert.ok(opened.ok);
    assert.equal(opened.timings.startTlsMs, undefined);
  });

  test("ldaps:// with a different CA fails as certificate_untrusted at connect", async () => {
    const failed = failure(
      await openAndCount(tlsConnection({ urls: [server.ldapsUrl ?? ""], caCertPem: otherCaPem })),
    );
    assert.equal(failed.step, "connect");
    assert.equal(failed.error.kind, "certificate_untrusted");
    assert.equal(
      failed.error.message,
      "The server's certificate is not trusted. Add the CA certificate that signed it, or check the URL.",
    );
  });

  test("StartTLS with a different CA fails as certificate_untrusted at the StartTLS step", async () => {
    const failed = failure(await openAndCount(tlsConnection({ startTls: true, caCertPem: otherCaPem })));
    assert.equal(failed.step, "starttls");
    assert.equal(failed.error.kind, "certificate_untrusted");
  });

  test("without any CA the test CA is not trusted (system roots only)", async () => {
    const failed = failure(
      await openAndCount(tlsConnection({ urls: [server.ldapsUrl ?? ""], caCertPem: null })),
    );
    assert.equal(failed.error.kind, "certificate_untrusted");
  });

  test("with verification off, a wrong CA is accepted on ldaps:// and StartTLS", async () => {
    const conn = { caCertPem: otherCaPem, verifyCertificate: false };
    assert.ok((await openAndCount(tlsConnection({ ...conn, urls: [server.ldapsUrl ?? ""] }))).ok);
    assert.ok((await openAndCount(tlsConnection({ ...conn, startTls: true }))).ok);
  });

  test("bindAs uses the same TLS settings", async () => {
    const opened = await openDirectory(tlsConnection({ urls: [server.ldapsUrl ?? ""] }));
    assert.ok(opened.ok);
    try {
      const dn = `uid=ada.abbott0,ou=people,${server.baseDn}`;
      assert.deepEqual(await opened.session.bindAs(dn, "user-password"), { ok: true });
      const wrong = await opened.session.bindAs(dn, "nope");
      assert.equal(wrong.ok ? "" : wrong.error.kind, "invalid_credentials");
    } finally {
      await opened.session.close();
    }
  });

  test("ldap:// pointed at the ldaps:// port fails with a hint about the scheme", async () => {
    const plainToTls = (server.ldapsUrl ?? "").replace("ldaps://", "ldap://");
    const failed = failure(
      await openAndCount(tlsConnection({ urls: [plainToTls], operationTimeoutMs: 2000 })),
    );
    assert.equal(failed.step, "bind");
    assert.match(failed.error.message, /ldaps:\/\//);
  });

  test("ldaps:// pointed at the plain port fails as a TLS problem", async () => {
    const tlsToPlain = server.url.replace("ldap://", "ldaps://");
    const failed = failure(await openAndCount(tlsConnection({ urls: [tlsToPlain] })));
    assert.equal(failed.step, "connect");
    assert.ok(["tls", "unreachable"].includes(failed.error.kind), failed.error.detail);
  });

  describe("a certificate issued for another host name", () => {
    let mismatched: SlapdServer;

    before(async () => {
      mismatched = await startSlapd({
        tls: true,
        certificateNames: { dnsNames: ["ldap.example.test"] },
        ldif: generateUsers(3),
      });
    });

    after(async () => {
      await mismatched?.stop();
    });

    test("fails as hostname_mismatch even with the right CA", async () => {
      const conn = connectionTo(mismatched, {
        urls: [mismatched.ldapsUrl ?? ""],
        caCertPem: mismatched.caCertPem ?? null,
      });
      const failed = failure(await openAndCount(conn));
      assert.equal(failed.error.kind, "hostname_mismatch");
      assert.match(failed.error.message, /does not name the host/);
    });

    test("is accepted when verification is off", async () => {
      const conn = connectionTo(mismatched, {
        urls: [mismatched.ldapsUrl ?? ""],
        caCertPem: mismatched.caCertPem ?? null,
        verifyCertificate: false,
      });
      assert.ok((await openAndCount(conn)).ok);
    });
  });

  describe("a server without TLS", () => {
    let plain: SlapdServer;

    before(async () => {
      plain = await startSlapd({ ldif: generateUsers(3) });
    });

    after(async () => {
      await plain?.stop();
    });

    test("StartTLS is refused with a message naming the cause", async () => {
      const failed = failure(await openAndCount(connectionTo(plain, { startTls: true })));
      assert.equal(failed.step, "starttls");
      assert.equal(failed.error.kind, "tls");
      assert.match(failed.error.message, /refused StartTLS/);
    });
  });
});
