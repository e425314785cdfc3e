/**
 * "Test connection": walks the path an import takes (connect, StartTLS, bind, read the base DN,
 * count users and groups) and says exactly which step failed and why.
 */
import {
  type DirectoryLogger,
  type DirectorySession,
  type OpenFailure,
  type OpenTimings,
  openDirectory,
  type UrlAttempt,
} from "./client.ts";
import { dnEquals, resolveBase } from "./dn.ts";
import { type ClassifiedLdapError, classifyLdapError, DirectoryError } from "./errors.ts";
import type { DirectoryConnection, DirectoryMapping } from "./types.ts";

export type ConnectionTestStepName =
  | "connect"
  | "starttls"
  | "bind"
  | "base_dn"
  | "count_users"
  | "count_groups";

export interface ConnectionTestStep {
  step: ConnectionTestStepName;
  ok: boolean;
  ms: number;
  message: string;
  error?: ClassifiedLdapError;
}

export interface ConnectionTestResult {
  ok: boolean;
  /** The steps taken, in order, up to and including the first that failed. */
  steps: ConnectionTestStep[];
  usersCount?: number;
  groupsCount?: number;
  /** The URL that answered (the first live one of the list). */
  serverUrl?: string;
  /** What the form can offer once bound: the server's naming contexts, containers holding users. */
  choices?: ConnectionChoices;
}

export interface ConnectionChoices {
  /** The root DSE's defaultNamingContext and namingContexts: the trees a base DN can be. */
  baseDns: string[];
  /** Containers under the base DN that hold users of the filter, most users first. */
  userBases: string[];
}

const numberFormat = new Intl.NumberFormat("en");

export async function testConnection(
  conn: DirectoryConnection,
  mapping: DirectoryMapping,
  options: { logger?: DirectoryLogger } = {},
): Promise<ConnectionTestResult> {
  const started = performance.now();
  const opened = await openDirectory(conn, options);
  if (!opened.ok) {
    const steps = openSteps(conn, opened.url, opened.attempts, opened.timings);
    steps.push({
      step: opened.step,
      ok: false,
      ms: failedStepMs(opened, started),
      message: opened.error.message,
      error: opened.error,
    });
    // Only a bind failure means a server answered; otherwise no URL is "the" server.
    return { ok: false, steps, serverUrl: opened.step === "bind" ? opened.url : undefined };
  }
  const { session, url } = opened;
  try {
    return await checkDirectory(
      session,
      conn,
      mapping,
      openSteps(conn, url, opened.attempts, opened.timings),
      url,
    );
  } finally {
    await session.close();
  }
}

async function checkDirectory(
  session: DirectorySession,
  conn: DirectoryConnection,
  mapping: DirectoryMapping,
  steps: ConnectionTestStep[],
  serverUrl: string,
): Promise<ConnectionTestResult> {
  const choices: ConnectionChoices = { baseDns: await namingContexts(session), userBases: [] };
  const end = (result: Omit<ConnectionTestResult, "steps" | "serverUrl" | "choices">) => ({
    ...result,
    steps,
    serverUrl,
    choices,
  });
  const baseDn = await timed(
    "base_dn",
    async () => {
      if (conn.baseDn.trim() === "") throw baseDnMissing(null);
      if ((await session.readEntry(conn.baseDn, ["1.1"])) === null) throw baseDnMissing(conn.baseDn);
    },
    () => `The base DN ${conn.baseDn} exists.`,
  );
  if (!baseDn.step.ok && baseDn.step.error?.kind === "no_such_object") {
    baseDn.step.message += namingContextsHint(choices.baseDns);
  }
  steps.push(baseDn.step);
  if (!baseDn.step.ok) return end({ ok: false });

  const userBase = resolveBase(mapping.userBase, conn.baseDn);
  const users = await timed(
    "count_users",
    () => session.count(userBase, mapping.userFilter, mapping.userScope),
    (count) => countMessage(count, "user", userBase),
  );
  // No user there (the preset's ou=people missing, say): where the directory does keep users.
  if (users.value === 0 || users.step.error?.kind === "no_such_object") {
    const found = await userBasesOf(session, conn.baseDn, mapping, userBase);
    choices.userBases = found.map(({ dn }) => dn);
    users.step.message += userBasesHint(found, mapping);
  }
  steps.push(users.step);
  if (users.value === undefined) return end({ ok: false });

  const groupBase = resolveBase(mapping.groupBase, conn.baseDn);
  const groups = await timed(
    "count_groups",
    () => session.count(groupBase, mapping.groupFilter, mapping.groupScope),
    (count) => countMessage(count, "group", groupBase),
  );
  steps.push(groups.step);
  if (groups.value === undefined) return end({ ok: false, usersCount: users.value });
  return end({ ok: true, usersCount: users.value, groupsCount: groups.value });
}

async function timed<T>(
  step: ConnectionTestStepName,
  work: () => Promise<T>,
  describe: (value: T) => string,
): Promise<{ step: ConnectionTestStep; value?: T }> {
  const started = performance.now();
  try {
    const value = await work();
    return { step: { step, ok: true, ms: elapsed(started), message: describe(value) }, value };
  } catch (err) {
    const error = classifyLdapError(err);
    return { step: { step, ok: false, ms: elapsed(started), message: error.message, error } };
  }
}

/** The connect, StartTLS and bind steps that succeeded while opening the session. */
function openSteps(
  conn: DirectoryConnection,
  url: string | undefined,
  attempts: UrlAttempt[],
  timings: Partial<OpenTimings>,
): ConnectionTestStep[] {
  const steps: ConnectionTestStep[] = [];
  if (timings.connectMs === undefined || url === undefined) return steps;
  steps.push({ step: "connect", ok: true, ms: timings.connectMs, message: connectedMessage(url, attempts) });
  if (timings.startTlsMs !== undefined) {
    steps.push({
      step: "starttls",
      ok: true,
      ms: timings.startTlsMs,
      message: "The connection is encrypted (StartTLS).",
    });
  }
  if (timings.bindMs !== undefined) {
    const message = conn.bindDn ? `Signed in as ${conn.bindDn}.` : "Signed in anonymously.";
    steps.push({ step: "bind", ok: true, ms: timings.bindMs, message });
  }
  return steps;
}

function failedStepMs(failure: OpenFailure, started: number): number {
  const attempt = failure.attempts.find((candidate) => candidate.url === failure.url);
  if (failure.step !== "bind" && attempt) return attempt.ms;
  const spent = (failure.timings.connectMs ?? 0) + (failure.timings.startTlsMs ?? 0);
  return Math.max(0, elapsed(started) - spent);
}

function connectedMessage(url: string, attempts: UrlAttempt[]): string {
  const skipped = attempts.filter((attempt) => attempt.url !== url);
  const notes = skipped.map((attempt) => `${attempt.url} failed (${attempt.error.message})`);
  return [...notes, `Connected to ${url}.`].join(" ");
}

/** The trees the server holds: its root DSE's default naming context first, then the others. */
async function namingContexts(session: DirectorySession): Promise<string[]> {
  try {
    const root = await session.readEntry("", ["namingContexts", "defaultNamingContext"]);
    const values = (name: string) => {
      const raw = root?.[name] ?? [];
      return (Array.isArray(raw) ? raw : [raw]).map(String).filter((v) => v.trim() !== "");
    };
    return [...new Set([...values("defaultNamingContext"), ...values("namingContexts")])].slice(
      0,
      MAX_SUGGESTIONS,
    );
  } catch {
    return []; // an offer only: a server that hides its root DSE still works
  }
}

function namingContextsHint(contexts: string[]): string {
  if (contexts.length === 0) return "";
  return ` This server holds: ${contexts.join("; ")}. The Base DN field offers them.`;
}

/**
 * The containers right under the base DN that hold users of the user filter, with how many (up to
 * a bound each), most first; none when none does or they can't be read.
 */
async function userBasesOf(
  session: DirectorySession,
  baseDn: string,
  mapping: DirectoryMapping,
  userBase: string,
): Promise<{ dn: string; users: number }[]> {
  try {
    const children: string[] = [];
    for await (const page of session.searchPages(baseDn, "(objectClass=*)", "one", ["1.1"])) {
      children.push(...page.map((entry) => entry.dn));
      if (children.length >= MAX_CONTAINERS) break;
    }
    const found: { dn: string; users: number }[] = [];
    for (const child of children.slice(0, MAX_CONTAINERS)) {
      if (dnEquals(child, userBase)) continue;
      const users = await countUpTo(session, child, mapping, SUGGESTION_COUNT_LIMIT);
      if (users > 0) found.push({ dn: child, users });
    }
    found.sort((a, b) => b.users - a.users);
    return found.slice(0, MAX_SUGGESTIONS);
  } catch {
    return [];
  }
}

function userBasesHint(found: { dn: string; users: number }[], mapping: DirectoryMapping): string {
  if (found.length === 0) return "";
  const listed = found.map(({ dn, users }) => {
    const count =
      users >= SUGGESTION_COUNT_LIMIT ? `${numberFormat.format(users)}+` : numberFormat.format(users);
    return `${dn} (${count})`;
  });
  return ` Users of the filter ${mapping.userFilter} are under: ${listed.join("; ")}. Set the user search base to one of them (the field offers them).`;
}

async function countUpTo(session: DirectorySession, base: string, mapping: DirectoryMapping, limit: number) {
  let count = 0;
  for await (const page of session.searchPages(base, mapping.userFilter, "sub", ["1.1"])) {
    count += page.length;
    if (count >= limit) return limit;
  }
  return count;
}

const MAX_SUGGESTIONS = 5;
const MAX_CONTAINERS = 50;
const SUGGESTION_COUNT_LIMIT = 1000;

function countMessage(count: number, noun: string, base: string): string {
  return `Found ${numberFormat.format(count)} ${noun}${count === 1 ? "" : "s"} under ${base}.`;
}

function baseDnMissing(baseDn: string | null): DirectoryError {
  if (baseDn === null) {
    return new DirectoryError({
      kind: "no_such_object",
      message:
        "No base DN was given: the connection and the account work, and Roster needs the tree to read.",
      detail: "the Base DN field is empty",
    });
  }
  return new DirectoryError({
    kind: "no_such_object",
    message: `The base DN ${baseDn} does not exist on the server: check its spelling.`,
    ldapCode: 32,
    detail: `base-scope read of ${baseDn}: no such object`,
  });
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
