import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  InsufficientAccessError,
  InvalidCredentialsError,
  NoSuchObjectError,
  SizeLimitExceededError,
  StrongAuthRequiredError,
} from "ldapts";
import { classifyLdapError, DirectoryError } from "../../src/ldap/errors.ts";

function nodeError(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

describe("classifyLdapError", () => {
  test("maps LDAP result codes to kinds, keeping the code", () => {
    const cases: [Error, string, number][] = [
      [new InvalidCredentialsError(), "invalid_credentials", 49],
      [new NoSuchObjectError(), "no_such_object", 32],
      [new StrongAuthRequiredError(), "strong_auth_required", 8],
      [new SizeLimitExceededError(), "size_limit", 4],
      [new InsufficientAccessError(), "insufficient_access", 50],
    ];
    for (const [error, kind, code] of cases) {
      const classified = classifyLdapError(error);
      assert.equal(classified.kind, kind);
      assert.equal(classified.ldapCode, code);
    }
  });

  test("tells the administrator what to do about strong authentication", () => {
    assert.equal(
      classifyLdapError(new StrongAuthRequiredError()).message,
      "This server requires TLS for password binds: use ldaps:// or StartTLS.",
    );
  });

  test("explains Active Directory's bind sub-codes", () => {
    const locked = new InvalidCredentialsError(
      "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563",
    );
    assert.equal(classifyLdapError(locked).message, "The account is locked out.");
    const wrong = new InvalidCredentialsError("80090308: LdapErr: DSID-0C09044E, data 52e, v4563");
    assert.equal(
      classifyLdapError(wrong).message,
      "The password is wrong, or the bind DN does not match the account.",
    );
  });

  test("maps socket errors", () => {
    assert.equal(classifyLdapError(nodeError("ECONNREFUSED")).kind, "refused");
    assert.equal(classifyLdapError(nodeError("EHOSTUNREACH")).kind, "unreachable");
    assert.equal(classifyLdapError(nodeError("ENOTFOUND")).kind, "dns");
    assert.equal(classifyLdapError(nodeError("ETIMEDOUT")).kind, "timeout");
    assert.equal(classifyLdapError(new Error("Connection timeout")).kind, "timeout");
    assert.equal(classifyLdapError(new Error("SearchRequest: Operation timed out")).kind, "timeout");
  });

  test("maps certificate errors to untrusted, hostname mismatch or TLS", () => {
    for (const code of [
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      "SELF_SIGNED_CERT_IN_CHAIN",
      "DEPTH_ZERO_SELF_SIGNED_CERT",
    ]) {
      const classified = classifyLdapError(nodeError(code));
      assert.equal(classified.kind, "certificate_untrusted");
      assert.equal(
        classified.message,
        "The server's certificate is not trusted. Add the CA certificate that signed it, or check the URL.",
      );
    }
    assert.equal(classifyLdapError(nodeError("ERR_TLS_CERT_ALTNAME_INVALID")).kind, "hostname_mismatch");
    assert.equal(classifyLdapError(nodeError("ERR_SSL_WRONG_VERSION_NUMBER")).kind, "tls");
  });

  test("looks through wrapped causes", () => {
    const wrapped = new Error("bind failed", { cause: nodeError("ECONNREFUSED") });
    assert.equal(classifyLdapError(wrapped).kind, "refused");
    assert.match(classifyLdapError(wrapped).detail, /bind failed <- caused by: Error \[ECONNREFUSED\]/);
  });

  test("never lets the password into the detail", () => {
    const leaky = new Error("bind as cn=svc with s3cret-Pa55 failed");
    const classified = classifyLdapError(leaky, { secrets: ["s3cret-Pa55", null] });
    assert.equal(classified.detail.includes("s3cret-Pa55"), false);
    assert.match(classified.detail, /\[redacted\]/);
  });

  test("passes a DirectoryError's classification through unchanged", () => {
    const classified = { kind: "timeout", message: "m", detail: "d" } as const;
    assert.equal(classifyLdapError(new DirectoryError(classified)), classified);
  });

  test("falls back to unknown for anything else", () => {
    assert.equal(classifyLdapError("weird").kind, "unknown");
    assert.equal(classifyLdapError(new Error("something else")).kind, "unknown");
  });
});
