import type { LdapErrorKind } from "../ldap/errors.ts";
import type { ConnectionTestResult, ConnectionTestStepName } from "../ldap/test-connection.ts";

/** A connection test as the result region shows it: a verdict, then each step with its time. */
export interface TestView {
  ok: boolean;
  heading: string;
  summary: string;
  steps: { label: string; ok: boolean; ms: number; message: string; details: string | null }[];
  /** The values in the form were tested, not a saved directory. */
  notSaved: boolean;
  /** What the server offers for the form's Base DN and User search base fields. */
  choices?: { baseDns: string[]; userBases: string[] };
}

const STEP_LABELS: Record<ConnectionTestStepName, string> = {
  connect: "Connect",
  starttls: "StartTLS",
  bind: "Bind",
  base_dn: "Read the base DN",
  count_users: "Count users",
  count_groups: "Count groups",
};

/** What went wrong, in the words the heading uses. */
const FAILURE_TITLES: Record<LdapErrorKind, string> = {
  unreachable: "host unreachable",
  refused: "connection refused",
  dns: "host name not found",
  tls: "TLS handshake failed",
  certificate_untrusted: "certificate not trusted",
  hostname_mismatch: "certificate hostname mismatch",
  invalid_credentials: "invalid credentials",
  strong_auth_required: "encryption required",
  no_such_object: "base DN or search base not found",
  invalid_dn: "invalid DN",
  size_limit: "size limit exceeded",
  timeout: "timed out",
  insufficient_access: "access denied",
  unwilling_to_perform: "the server refused",
  unavailable: "server unavailable",
  protocol: "protocol error",
  unknown: "unexpected error",
};

/** RFC 4511 names of the result codes an administrator is likely to look up. */
const RESULT_CODE_NAMES: Record<number, string> = {
  1: "operationsError",
  2: "protocolError",
  3: "timeLimitExceeded",
  4: "sizeLimitExceeded",
  7: "authMethodNotSupported",
  8: "strongerAuthRequired",
  10: "referral",
  11: "adminLimitExceeded",
  13: "confidentialityRequired",
  32: "noSuchObject",
  34: "invalidDNSyntax",
  48: "inappropriateAuthentication",
  49: "invalidCredentials",
  50: "insufficientAccessRights",
  51: "busy",
  52: "unavailable",
  53: "unwillingToPerform",
  80: "other",
};

const numberFormat = new Intl.NumberFormat("en");

export function testView(
  result: ConnectionTestResult,
  options: { saved: boolean; directoryName?: string; secret?: string | null },
): TestView {
  const of = options.directoryName ? ` to “${options.directoryName}”` : "";
  const steps = result.steps.map((step) => ({
    label: STEP_LABELS[step.step],
    ok: step.ok,
    ms: step.ms,
    message: step.message,
    details: step.error ? scrub(detailsOf(step.error.ldapCode, step.error.detail), options.secret) : null,
  }));
  const failed = result.steps.find((step) => !step.ok);
  if (result.ok || !failed) {
    const users = result.usersCount ?? 0;
    const groups = result.groupsCount ?? 0;
    return {
      ok: true,
      heading: `The connection${of} works`,
      summary: `Found ${numberFormat.format(users)} user${users === 1 ? "" : "s"} and ${numberFormat.format(groups)} group${groups === 1 ? "" : "s"} on ${result.serverUrl ?? "the server"}.`,
      steps,
      notSaved: !options.saved,
      choices: result.choices,
    };
  }
  const title = FAILURE_TITLES[failed.error?.kind ?? "unknown"];
  return {
    ok: false,
    heading: `The connection${of} failed: ${title}`,
    summary: `Stopped at “${STEP_LABELS[failed.step]}”: ${failed.message}`,
    steps,
    notSaved: !options.saved,
    choices: result.choices,
  };
}

function detailsOf(ldapCode: number | undefined, detail: string): string {
  if (ldapCode === undefined) return detail;
  const name = RESULT_CODE_NAMES[ldapCode];
  return `LDAP result code ${ldapCode}${name ? ` (${name})` : ""}. ${detail}`;
}

/**
 * Details carry the server's own words; the LDAP layer already redacts the password from them, and
 * this is the belt to its braces. (Messages are Roster's own sentences and are left alone.)
 */
function scrub(text: string, secret: string | null | undefined): string {
  return secret ? text.split(secret).join("[redacted]") : text;
}
