import { ResultCodeError } from "ldapts";

export type LdapErrorKind =
  | "unreachable"
  | "refused"
  | "dns"
  | "tls"
  | "certificate_untrusted"
  | "hostname_mismatch"
  | "invalid_credentials"
  | "strong_auth_required"
  | "no_such_object"
  | "invalid_dn"
  | "size_limit"
  | "timeout"
  | "insufficient_access"
  | "unwilling_to_perform"
  | "unavailable"
  | "protocol"
  | "unknown";

export interface ClassifiedLdapError {
  kind: LdapErrorKind;
  /** Plain words an administrator can act on. */
  message: string;
  /** The LDAP result code, when the server answered with one. */
  ldapCode?: number;
  /** Technical detail for logs and a "details" disclosure; never contains a password. */
  detail: string;
}

/**
 * Thrown by directory sessions for failures in the middle of an operation; carries the
 * classification so callers can show `classified.message` without re-classifying.
 */
export class DirectoryError extends Error {
  readonly classified: ClassifiedLdapError;

  constructor(classified: ClassifiedLdapError, options?: { cause?: unknown }) {
    super(classified.message, options);
    this.name = "DirectoryError";
    this.classified = classified;
  }
}

const STOPPED_ANSWERING = new Set<LdapErrorKind>(["unreachable", "refused", "dns", "timeout", "unavailable"]);

/** The directory stopped answering (as opposed to answering with an error): worth waiting for. */
export function stoppedAnswering(err: unknown): err is DirectoryError {
  return err instanceof DirectoryError && STOPPED_ANSWERING.has(err.classified.kind);
}

export interface ClassifyOptions {
  /** Strings to scrub from `detail` (the bind password, in case a library ever echoes it). */
  secrets?: (string | null | undefined)[];
}

type Verdict = Omit<ClassifiedLdapError, "detail">;

const NODE_CODE_VERDICTS: Record<string, Verdict> = {
  ECONNREFUSED: {
    kind: "refused",
    message:
      "The server refused the connection: check the host and port, and that the LDAP service is running.",
  },
  EHOSTUNREACH: {
    kind: "unreachable",
    message: "The server cannot be reached: check the host name, the network and any firewall in between.",
  },
  ENETUNREACH: {
    kind: "unreachable",
    message: "The server's network cannot be reached: check the address and the network route.",
  },
  ECONNRESET: {
    kind: "unreachable",
    message:
      "The server closed the connection unexpectedly. If the URL is ldap://, check whether the port expects ldaps:// (or the reverse).",
  },
  EPIPE: { kind: "unreachable", message: "The connection to the server was lost." },
  ENOTFOUND: {
    kind: "dns",
    message: "The host name could not be found (DNS): check the spelling of the URL.",
  },
  EAI_AGAIN: {
    kind: "dns",
    message:
      "The host name could not be resolved right now (DNS did not answer): try again or use an IP address.",
  },
  ETIMEDOUT: {
    kind: "timeout",
    message:
      "The server did not answer in time: check the host, port and firewall, or raise the connect timeout.",
  },
  ERR_TLS_CERT_ALTNAME_INVALID: {
    kind: "hostname_mismatch",
    message:
      "The server's certificate does not name the host in the URL. Use the host name the certificate was issued for.",
  },
  CERT_HAS_EXPIRED: {
    kind: "certificate_untrusted",
    message: "The server's certificate has expired: the directory administrator must renew it.",
  },
  CERT_NOT_YET_VALID: {
    kind: "certificate_untrusted",
    message: "The server's certificate is not valid yet: check the clocks of both machines.",
  },
  ERR_SSL_WRONG_VERSION_NUMBER: {
    kind: "tls",
    message:
      "The server did not answer with TLS. If the URL is ldaps://, the port may expect plain ldap:// (use StartTLS instead).",
  },
};

const UNTRUSTED_CERTIFICATE_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
  "CERT_CHAIN_TOO_LONG",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
]);

const UNTRUSTED: Verdict = {
  kind: "certificate_untrusted",
  message:
    "The server's certificate is not trusted. Add the CA certificate that signed it, or check the URL.",
};

/** Active Directory explains a failed bind (49) with a "data NNN" sub-code in the diagnostic. */
const AD_BIND_SUBCODES: Record<string, string> = {
  "525": "The bind DN does not match any account.",
  "52e": "The password is wrong, or the bind DN does not match the account.",
  "530": "The account may not sign in at this time of day.",
  "531": "The account may not sign in from this computer.",
  "532": "The account's password has expired.",
  "533": "The account is disabled.",
  "701": "The account has expired.",
  "773": "The account's password must be changed before it can be used.",
  "775": "The account is locked out.",
};

const RESULT_CODE_VERDICTS: Record<number, Verdict> = {
  2: { kind: "protocol", message: "The server rejected the request as a protocol error." },
  3: {
    kind: "timeout",
    message: "The server stopped the search at its time limit: narrow the search base or filter.",
  },
  4: {
    kind: "size_limit",
    message:
      "The server's size limit was exceeded. Roster pages its searches; the server may not support paging.",
  },
  7: { kind: "strong_auth_required", message: "The server does not accept this way of binding." },
  8: {
    kind: "strong_auth_required",
    message: "This server requires TLS for password binds: use ldaps:// or StartTLS.",
  },
  10: {
    kind: "no_such_object",
    message: "The server does not hold this DN and referred Roster elsewhere: check the base DN.",
  },
  11: { kind: "size_limit", message: "The server's administrative limit was exceeded: narrow the search." },
  13: {
    kind: "strong_auth_required",
    message: "This server requires an encrypted connection: use ldaps:// or StartTLS.",
  },
  32: {
    kind: "no_such_object",
    message: "The DN does not exist on the server: check the base DN and the search bases.",
  },
  34: {
    kind: "invalid_dn",
    message: "A DN is not valid (for example the bind DN or the base DN): check its spelling.",
  },
  48: {
    kind: "invalid_credentials",
    message: "The server does not allow this kind of bind for this account.",
  },
  49: { kind: "invalid_credentials", message: "The bind DN or password is wrong." },
  50: {
    kind: "insufficient_access",
    message: "The account is not allowed to read this part of the directory: ask for read access.",
  },
  51: { kind: "unavailable", message: "The server is busy: try again shortly." },
  52: { kind: "unavailable", message: "The server is unavailable (it may be starting or shutting down)." },
  53: {
    kind: "unwilling_to_perform",
    message:
      "The server refused the request. A bind DN with an empty password, or anonymous access, may be disallowed.",
  },
};

/** Turns anything thrown by ldapts or Node's socket/TLS layers into words an administrator can act on. */
export function classifyLdapError(err: unknown, options: ClassifyOptions = {}): ClassifiedLdapError {
  if (err instanceof DirectoryError) return err.classified;
  const detail = redact(describe(err), options.secrets ?? []);
  return { ...verdictFor(err), detail };
}

function verdictFor(err: unknown): Verdict {
  for (const candidate of causeChain(err)) {
    const verdict = resultCodeVerdict(candidate) ?? nodeCodeVerdict(candidate) ?? messageVerdict(candidate);
    if (verdict) return verdict;
  }
  return {
    kind: "unknown",
    message: "The directory operation failed for an unexpected reason; see the details.",
  };
}

function resultCodeVerdict(err: unknown): Verdict | undefined {
  const code = resultCode(err);
  if (code === undefined) return undefined;
  const known = RESULT_CODE_VERDICTS[code];
  const base: Verdict = known ?? { kind: "unknown", message: `The server answered with LDAP error ${code}.` };
  const diagnostic = err instanceof Error ? err.message : "";
  const message = code === 49 ? (activeDirectoryBindMessage(diagnostic) ?? base.message) : base.message;
  return { ...base, message, ldapCode: code };
}

/** ldapts result errors carry a numeric `code`; Node's carry a string one. */
function resultCode(err: unknown): number | undefined {
  if (err instanceof ResultCodeError) return err.code;
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  const { code } = err as { code: unknown };
  return typeof code === "number" && err instanceof Error && err.name.endsWith("Error") ? code : undefined;
}

function activeDirectoryBindMessage(diagnostic: string): string | undefined {
  const subcode = /\bdata ([0-9a-f]{3}),/i.exec(diagnostic)?.[1]?.toLowerCase();
  return subcode === undefined ? undefined : AD_BIND_SUBCODES[subcode];
}

function nodeCodeVerdict(err: unknown): Verdict | undefined {
  const code = errorCode(err);
  if (code === undefined) return undefined;
  if (UNTRUSTED_CERTIFICATE_CODES.has(code)) return UNTRUSTED;
  const known = NODE_CODE_VERDICTS[code];
  if (known) return known;
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_") || code === "EPROTO") {
    return { kind: "tls", message: "The TLS handshake with the server failed; see the details." };
  }
  return undefined;
}

/** ldapts reports some conditions only as message text. */
function messageVerdict(err: unknown): Verdict | undefined {
  if (!(err instanceof Error)) return undefined;
  const text = err.message;
  if (/connection timeout|operation timed out|timed out/i.test(text)) {
    return {
      kind: "timeout",
      message: "The server did not answer in time: check the host, port and firewall, or raise the timeout.",
    };
  }
  if (/connection closed|socket error|socket connection not established/i.test(text)) {
    return {
      kind: "unreachable",
      message:
        "The server closed the connection without answering. If its port expects ldaps:// (such as 636), use ldaps:// in the URL.",
    };
  }
  // Its own words say how large, and what Roster did about it.
  if (err.name === "MessageTooLargeError") return { kind: "protocol", message: text };
  if (err.name === "MessageParserError" || /invalid asn1|ber/i.test(text)) {
    return {
      kind: "protocol",
      message: "The server's answer could not be understood: check that the URL points at an LDAP server.",
    };
  }
  return undefined;
}

function* causeChain(err: unknown): Generator<unknown> {
  const seen = new Set<unknown>();
  let current: unknown = err;
  while (current !== undefined && current !== null && !seen.has(current)) {
    seen.add(current);
    yield current;
    current = current instanceof Error ? current.cause : undefined;
  }
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  const { code } = err as { code: unknown };
  return typeof code === "string" ? code : undefined;
}

function describe(err: unknown): string {
  const parts: string[] = [];
  for (const candidate of causeChain(err)) {
    if (candidate instanceof Error) {
      const code = errorCode(candidate);
      parts.push(`${candidate.name}${code ? ` [${code}]` : ""}: ${candidate.message}`);
    } else {
      parts.push(String(candidate));
    }
  }
  return parts.join(" <- caused by: ");
}

function redact(text: string, secrets: (string | null | undefined)[]): string {
  let result = text;
  for (const secret of secrets) {
    if (secret) result = result.split(secret).join("[redacted]");
  }
  return result;
}
