/**
 * Shared set-up for the HTTP tests against a real Active Directory (Samba AD DC): one domain per
 * test file, the AD test fixture loaded once, Roster's directory configured the way an
 * administrator does it, and small readers for the pages.
 */
import assert from "node:assert/strict";
import { eq } from "drizzle-orm";
import supertest from "supertest";
import type { Db } from "../../src/db/client.ts";
import { directories, roleAssignments, users } from "../../src/db/schema.ts";
import {
  type AdLoadReport,
  type AdTestDirectory,
  adTestDirectory,
  loadAdFixture,
} from "../../src/dev/ad-fixtures.ts";
import { type SambaServer, sambaUnavailableReason, startSamba } from "../../src/dev/samba.ts";
import { withDirectory } from "../../src/ldap/client.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import type { DirectoryMapping } from "../../src/ldap/types.ts";
import { createDirectory, type Directory, toLoaded } from "../../src/services/directories.ts";
import { nameKey } from "../../src/services/names.ts";
import type { SecretBox } from "../../src/services/secrets.ts";
import { syncUserEntry, type UserEntryOutcome } from "../../src/services/sync/entries.ts";
import { findUserEntry } from "../../src/services/sync/find.ts";
import { csrfTokenOf } from "../helpers/app.ts";

type Agent = ReturnType<typeof supertest.agent>;

/** Why these tests can't run here (no Samba, not root), or false. */
export const adSkip: string | false = sambaUnavailableReason() ?? false;

export interface AdDomain {
  server: SambaServer;
  ad: AdTestDirectory;
  loaded: AdLoadReport;
  stop(): Promise<void>;
}

/** Provisions a Samba domain and loads the AD fixture (2,500 bulk users unless told fewer). */
export async function startAdDomain(options: { bulkUsers: number }): Promise<AdDomain> {
  const server = await startSamba();
  try {
    const ad = adTestDirectory({ bulkUsers: options.bulkUsers });
    const loaded = await loadAdFixture(server, ad);
    return { server, ad, loaded, stop: () => server.stop() };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

export function timingsOf(domain: AdDomain): string {
  const { server, loaded } = domain;
  return (
    `Samba provisioned in ${server.timings.provisionMs} ms, started in ${server.timings.startMs} ms; ` +
    `${loaded.users} users and ${loaded.groups} groups loaded in ${loaded.ms} ms`
  );
}

/** The only settings an administrator types for AD: everything else is the preset's. */
export function adConnectionFields(domain: AdDomain, name = "Example AD"): Record<string, string> {
  const { server, ad } = domain;
  return {
    name,
    urls: server.ldapsUrl,
    caCertPem: server.caCertPem,
    bindDn: ad.named.service.dn,
    bindPassword: ad.named.service.password ?? "",
    baseDn: server.baseDn,
  };
}

/** Adds the directory with the directories service: the AD preset, LDAPS, the service account. */
export async function addAdDirectory(
  db: Db,
  secretBox: SecretBox,
  domain: AdDomain,
  actor: { id: number | null; name: string },
  options: { name?: string; baseDn?: string; mapping?: Partial<DirectoryMapping> } = {},
): Promise<Directory> {
  const fields = adConnectionFields(domain);
  const created = await createDirectory(db, secretBox, actor, {
    name: options.name ?? fields.name ?? "",
    preset: "active_directory",
    urls: [domain.server.ldapsUrl],
    startTls: false,
    caCertPem: domain.server.caCertPem,
    verifyCertificate: true,
    connectTimeoutMs: 5000,
    operationTimeoutMs: 30_000,
    bindMode: "service",
    bindDn: fields.bindDn ?? null,
    bindPassword: fields.bindPassword ?? null,
    baseDn: options.baseDn ?? domain.server.baseDn,
    mapping: { ...presetMapping("active_directory"), ...options.mapping },
    defaultRoles: [],
  });
  if (!created.ok) assert.fail(`the directory was refused: ${created.message}`);
  return created.value;
}

/**
 * Adds the directory through Settings › Directories as a person does: the Active Directory preset's
 * form, with only the name, URL, CA certificate, bind account and base DN typed in.
 */
export async function addAdDirectoryThroughSettings(
  agent: Agent,
  db: Db,
  domain: AdDomain,
  changes: Record<string, string> = {},
): Promise<Directory> {
  const page = await agent.get("/settings/directories/new?preset=active_directory").expect(200);
  const fields = formFields(page.text, "directory-form");
  const typed = { ...adConnectionFields(domain), ...changes };
  const res = await agent
    .post("/settings/directories")
    .type("form")
    .send(withValues(fields, typed).toString());
  assert.equal(res.status, 303, `the directory form was refused: ${errorSummaryOf(res.text)}`);
  const [directory] = await db
    .select()
    .from(directories)
    .where(eq(directories.name, typed.name ?? ""));
  assert.ok(directory, "the directory was saved");
  return directory;
}

/** The fields a form submits as it is shown: text, hidden, checked boxes and radios, selects, text areas. */
export function formFields(html: string, formId: string): [string, string][] {
  const start = html.indexOf(`<form id="${formId}"`);
  assert.ok(start >= 0, `the page has the form #${formId}`);
  const form = html.slice(start, html.indexOf("</form>", start));
  const fields: [string, string][] = [];
  const tags =
    /<input\b([^>]*)>|<textarea\b([^>]*)>([\s\S]*?)<\/textarea>|<select\b([^>]*)>([\s\S]*?)<\/select>/g;
  for (const match of form.matchAll(tags)) {
    if (match[1] !== undefined) {
      const attrs = match[1];
      const name = attribute(attrs, "name");
      const type = attribute(attrs, "type") ?? "text";
      if (!name || type === "password" || type === "file" || type === "submit") continue;
      if ((type === "checkbox" || type === "radio") && !/\schecked\b/.test(attrs)) continue;
      fields.push([name, attribute(attrs, "value") ?? (type === "checkbox" ? "on" : "")]);
    } else if (match[2] !== undefined) {
      const name = attribute(match[2], "name");
      if (name) fields.push([name, decodeEntities(match[3] ?? "")]);
    } else if (match[4] !== undefined) {
      const name = attribute(match[4], "name");
      const selected = /<option\b([^>]*)\sselected\b[^>]*>/.exec(match[5] ?? "")?.[1];
      const first = /<option\b([^>]*)>/.exec(match[5] ?? "")?.[1];
      if (name) fields.push([name, attribute(selected ?? first ?? "", "value") ?? ""]);
    }
  }
  return fields;
}

/** The form's fields with some values typed over (added when the form shows no such field). */
export function withValues(fields: [string, string][], typed: Record<string, string>): URLSearchParams {
  const params = new URLSearchParams();
  for (const [name, value] of fields)
    params.append(name, Object.hasOwn(typed, name) ? (typed[name] ?? "") : value);
  for (const [name, value] of Object.entries(typed)) if (!params.has(name)) params.append(name, value);
  return params;
}

function attribute(attrs: string, name: string): string | undefined {
  const match = new RegExp(`\\s${name}="([^"]*)"`).exec(` ${attrs}`);
  return match ? decodeEntities(match[1] ?? "") : undefined;
}

export function decodeEntities(text: string): string {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");
}

/** The page's text: tags removed, entities decoded, whitespace collapsed. */
export function pageText(html: string): string {
  return decodeEntities(html.replace(/<[^>]+>/g, " "))
    .replace(/\s+/g, " ")
    .trim();
}

function errorSummaryOf(html: string): string {
  const summary = /<div[^>]*class="[^"]*error-summary[^"]*"[^>]*>([\s\S]*?)<\/div>/.exec(html)?.[1];
  return pageText(summary ?? html.slice(0, 2000));
}

/**
 * Brings AD users into Roster as a sign-in or an import would: each entry found by its
 * sAMAccountName with the directory's service account, then written by the sync core.
 */
export async function importAdUsers(
  db: Db,
  secretBox: SecretBox,
  directory: Directory,
  usernames: string[],
): Promise<Map<string, typeof users.$inferSelect>> {
  const loaded = toLoaded(directory, secretBox);
  const result = await withDirectory(loaded.connection, async (session) => {
    const entries = [];
    for (const username of usernames) {
      const found = await findUserEntry(session, loaded.mapping, { username });
      if (!found.ok) throw new Error(`no entry for ${username}: ${found.reason}`);
      entries.push(found.entry);
    }
    const outcomes: UserEntryOutcome[] = [];
    for (const entry of entries) outcomes.push(await syncUserEntry(db, directory.id, entry));
    return outcomes;
  });
  if (!result.ok) throw new Error(result.error.message);
  const imported = new Map<string, typeof users.$inferSelect>();
  for (const outcome of result.value) {
    if (outcome.outcome === "conflict") throw new Error(outcome.reason);
    imported.set(outcome.user.username, outcome.user);
  }
  return imported;
}

/** Signs in through the login form; the agent keeps the session. */
export async function signInAs(
  app: Parameters<typeof supertest.agent>[0],
  username: string,
  password: string,
) {
  const agent = supertest.agent(app);
  const page = await agent.get("/login").expect(200);
  const res = await agent
    .post("/login")
    .type("form")
    .send({ username, password, _csrf: csrfTokenOf(page.text) });
  return { agent, res };
}

export async function userByName(db: Db, username: string) {
  const [user] = await db
    .select()
    .from(users)
    .where(eq(users.usernameKey, nameKey(username)));
  return user;
}

export async function userById(db: Db, id: number) {
  const [user] = await db.select().from(users).where(eq(users.id, id));
  return user;
}

/** The role assignments given to the user directly, in a stable order. */
export async function assignmentsOf(db: Db, userId: number): Promise<{ roleId: number; scope: string }[]> {
  const rows = await db
    .select({ roleId: roleAssignments.roleId, scope: roleAssignments.scope })
    .from(roleAssignments)
    .where(eq(roleAssignments.userId, userId));
  return rows.sort((a, b) => a.roleId - b.roleId || a.scope.localeCompare(b.scope));
}
