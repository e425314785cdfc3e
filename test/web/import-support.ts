/** Shared set-up for the import tests: a slapd with the edge fixtures, a directory row, a worker. */
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { eq } from "drizzle-orm";
import { pino } from "pino";
import type supertest from "supertest";
import type { Db } from "../../src/db/client.ts";
import { directories } from "../../src/db/schema.ts";
import { bigGroupDirectory, ldifEntry, posixGroupEntry, readFixture } from "../../src/dev/fixtures.ts";
import { type SlapdOptions, type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import type { DirectoryMapping } from "../../src/ldap/types.ts";
import {
  createImportWorker,
  type ImportWorker,
  type ImportWorkerOptions,
} from "../../src/services/import/worker.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";

export const BASE_DN = "dc=example,dc=test";
export const groupDnOf = (cn: string) => `cn=${cn},ou=groups,${BASE_DN}`;

type Agent = ReturnType<typeof supertest.agent>;

/** Unicode names beside the edge fixtures (which bring zoë in NFD, markup and escaped DNs). */
function unicodePeople(): string {
  const person = (uid: string, cn: string, mail: string) =>
    ldifEntry(`uid=${uid},ou=people,${BASE_DN}`, {
      objectClass: "inetOrgPerson",
      uid,
      cn,
      sn: cn.split(" ").pop() ?? cn,
      mail,
      departmentNumber: "Music",
    });
  return [
    person("đorđe", "Đorđe Balašević", "djordje@example.test"),
    person("李小龙", "李小龙", "bruce@example.test"),
    person("Zoë.Upper", "Zoë Upper", "zoe.upper@example.test"),
    // Members given as usernames, one in another case, one unknown.
    posixGroupEntry({
      cn: "unicode-team",
      gidNumber: 5001,
      memberUids: ["đorđe", "李小龙", "ZOË.UPPER", "ghost"],
    }),
  ].join("");
}

/**
 * entryUUIDs given in the LDIF (slapadd keeps them), derived from each DN: a directory restarted
 * from the same LDIF has the same stable ids, as a real server coming back would.
 */
export function withStableIds(ldif: string): string {
  return ldif
    .split(/\n\n+/)
    .map((record) => {
      const dnLine = /^dn::? .*$/m.exec(record)?.[0];
      if (!dnLine || /^entryUUID:/m.test(record)) return record;
      return `${record}\nentryUUID: ${uuidOf(dnLine)}`;
    })
    .join("\n\n");
}

function uuidOf(dnLine: string): string {
  const hex = createHash("sha256").update(dnLine).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** The entryUUID `withStableIds` gives the entry written as `dn: <dn>` in the LDIF. */
export function stableIdOf(dnAsWritten: string): string {
  return uuidOf(`dn: ${dnAsWritten}`);
}

export interface ImportFixture {
  ldif: string;
  /** The 2,500 generated users, all members of cn=everyone. */
  everyone: { groupDn: string; usernames: string[] };
}

export async function importFixture(bigGroupSize = 2500): Promise<ImportFixture> {
  const big = bigGroupDirectory(bigGroupSize, { cn: "everyone" });
  const ldif = withStableIds(`${await readFixture("edge.ldif")}\n${unicodePeople()}${big.ldif}`);
  return { ldif, everyone: { groupDn: big.groupDn, usernames: big.usernames } };
}

export function startFixtureSlapd(fixture: ImportFixture, options: SlapdOptions = {}): Promise<SlapdServer> {
  return startSlapd({ ldif: fixture.ldif, ...options });
}

/** Where every import test file starts: the fixture in a throwaway slapd, an app, an administrator and a directory. */
export interface ImportTestBed {
  t: TestApp;
  server: SlapdServer;
  fixture: ImportFixture;
  adminId: number;
  directoryId: number;
}

export async function openImportTestBed(
  options: { mapping?: Partial<DirectoryMapping> } = {},
): Promise<ImportTestBed> {
  const fixture = await importFixture();
  const server = await startFixtureSlapd(fixture);
  let t: TestApp | undefined;
  try {
    t = await createTestApp();
    const adminId = (await createUser(t.db, { username: "admin", role: "server_admin" })).id;
    const directoryId = (await addDirectory(t.db, t.config.encryptionKey, server, options)).id;
    return { t, server, fixture, adminId, directoryId };
  } catch (err) {
    await t?.close();
    await server.stop();
    throw err;
  }
}

export async function closeImportTestBed(
  bed: ImportTestBed | undefined,
  worker?: ImportWorker,
): Promise<void> {
  await worker?.stop();
  await bed?.t.close();
  await bed?.server.stop();
}

/** A directory row pointing at the server, its service password encrypted with the app's key. */
export async function addDirectory(
  db: Db,
  encryptionKey: Buffer,
  server: SlapdServer,
  overrides: { name?: string; mapping?: Partial<DirectoryMapping>; position?: number } = {},
) {
  const box = createSecretBox(encryptionKey);
  const [row] = await db
    .insert(directories)
    .values({
      name: overrides.name ?? "Example LDAP",
      position: overrides.position ?? 1,
      preset: "openldap",
      ...presetMapping("openldap"),
      ...(overrides.mapping ?? {}),
      urls: [server.url],
      baseDn: server.baseDn,
      bindDn: server.serviceDn,
      bindPasswordEncrypted: box.encrypt(server.servicePassword),
      connectTimeoutMs: 2000,
      operationTimeoutMs: 10_000,
    })
    .returning();
  if (!row) throw new Error("no directory row");
  return row;
}

/** Points an existing directory at a (restarted) server. */
export async function repointDirectory(db: Db, encryptionKey: Buffer, id: number, server: SlapdServer) {
  const box = createSecretBox(encryptionKey);
  await db
    .update(directories)
    .set({ urls: [server.url], bindPasswordEncrypted: box.encrypt(server.servicePassword) })
    .where(eq(directories.id, id));
}

export function testWorker(
  db: Db,
  encryptionKey: Buffer,
  options: Partial<ImportWorkerOptions> = {},
): ImportWorker {
  const sink = new Writable({ write: (_chunk, _enc, done) => done() });
  return createImportWorker({
    db,
    secretBox: createSecretBox(encryptionKey),
    logger: pino({ level: "silent" }, sink),
    pollMs: 60_000,
    heartbeatMs: 200,
    ...options,
  });
}

/** Executes queued runs until none is left. */
export async function runQueued(worker: ImportWorker): Promise<number> {
  let runs = 0;
  while (await worker.runOnce()) runs += 1;
  return runs;
}

/** The headers htmx 4 sends when it swaps one region. */
export function asFragment<T extends { set(name: string, value: string): T }>(request: T, target: string): T {
  return request.set("HX-Request", "true").set("HX-Request-Type", "partial").set("HX-Target", target);
}

/** A form post with repeated fields (`pick=a&pick=b`), as a browser sends it. */
export function postForm(
  agent: Agent,
  url: string,
  csrf: string,
  body: Record<string, string | string[]> = {},
) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries({ _csrf: csrf, ...body })) {
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  }
  return agent.post(url).type("form").send(params.toString());
}

/** Decodes the few entities Eta writes, to compare with what a user reads. */
export function text(html: string): string {
  return html
    .replace(/<\/?(strong|em|span|a|time|code|b|i|abbr|label)\b[^>]*>/g, "")
    .replace(/<[^>]+>/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ");
}

/** The `shown` and `pick` values of the rows on a results page whose name matches. */
export function rowsOf(html: string): { key: string; info: string; name: string; status: string }[] {
  const rows: { key: string; info: string; name: string; status: string }[] = [];
  for (const match of html.matchAll(/<tr class="status-row-[^"]*">([\s\S]*?)<\/tr>/g)) {
    const body = match[1] ?? "";
    const info = /name="shown" value="([^"]*)"/.exec(body)?.[1] ?? "";
    const key = /name="pick" value="([^"]*)"/.exec(body)?.[1] ?? "";
    const name = /<td class="entry-name">([\s\S]*?)<\/td>/.exec(body)?.[1] ?? "";
    const status = /<span class="status [^"]*">([^<]*)<\/span>/.exec(body)?.[1] ?? "";
    rows.push({
      key: decodeAttr(key),
      info: decodeAttr(info),
      name: decodeAttr(name),
      status: decodeAttr(status),
    });
  }
  return rows;
}

function decodeAttr(value: string): string {
  return value
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}
