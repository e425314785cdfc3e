/** Shared set-up for the import tests: a slapd with the edge fixtures, a directory row, a worker. */
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { eq, sql } from "drizzle-orm";
import { pino } from "pino";
import { type Db, queryRows } from "../../src/db/client.ts";
import { directories, importRuns } from "../../src/db/schema.ts";
import { bigGroupDirectory, ldifEntry, posixGroupEntry, readFixture } from "../../src/dev/fixtures.ts";
import { type SlapdOptions, type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import type { DirectoryMapping } from "../../src/ldap/types.ts";
import { createRun, type ImportRun } from "../../src/services/import/run-queue.ts";
import type { Selection } from "../../src/services/import/types.ts";
import {
  createImportWorker,
  type ImportWorker,
  type ImportWorkerOptions,
} from "../../src/services/import/worker.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { requestSynchronization } from "../../src/services/sync/schedule.ts";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import { decodeEntities } from "../helpers/http.ts";

export const BASE_DN = "dc=example,dc=test";
export const groupDnOf = (cn: string) => `cn=${cn},ou=groups,${BASE_DN}`;

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

/**
 * Where every import test file starts: the fixture in a throwaway slapd, an app, an administrator,
 * a directory and a worker. The worker runs only what a test hands it (`runQueued`) unless `start`
 * is asked for: then the app wakes it when a run is queued and it polls, as in production.
 */
export interface ImportTestBed {
  t: TestApp;
  server: SlapdServer;
  fixture: ImportFixture;
  adminId: number;
  directoryId: number;
  worker: ImportWorker;
}

export interface ImportTestBedOptions {
  mapping?: Partial<DirectoryMapping>;
  /** Members of cn=everyone (2,500 unless told). */
  bigGroupSize?: number;
  /** The administrator's password (createUser's default unless told). */
  adminPassword?: string;
  worker?: Partial<ImportWorkerOptions> & { start?: boolean };
}

export async function openImportTestBed(options: ImportTestBedOptions = {}): Promise<ImportTestBed> {
  const fixture = await importFixture(options.bigGroupSize);
  const server = await startFixtureSlapd(fixture);
  const { start = false, ...workerOptions } = options.worker ?? {};
  let t: TestApp | undefined;
  let worker: ImportWorker | undefined;
  try {
    t = await createTestApp(start ? { deps: { importWorker: { wake: () => worker?.wake() } } } : {});
    const adminId = (
      await createUser(t.db, { username: "admin", password: options.adminPassword, role: "server_admin" })
    ).id;
    const directoryId = (
      await addDirectory(t.db, t.config.encryptionKey, server, { mapping: options.mapping })
    ).id;
    worker = testWorker(t.db, t.config.encryptionKey, workerOptions);
    if (start) worker.start();
    return { t, server, fixture, adminId, directoryId, worker };
  } catch (err) {
    await worker?.stop();
    await t?.close();
    await server.stop();
    throw err;
  }
}

/** Stops the bed's worker (and another the test made), then the app and the slapd. */
export async function closeImportTestBed(
  bed: ImportTestBed | undefined,
  worker?: ImportWorker,
): Promise<void> {
  await worker?.stop();
  await bed?.worker.stop();
  await bed?.t.close();
  await bed?.server.stop();
}

/** What a run did, for comparing with `assert.deepEqual`. */
export function runCounts(run: {
  created: number;
  updated: number;
  unchanged: number;
  skipped: number;
  failed: number;
}) {
  return {
    created: run.created,
    updated: run.updated,
    unchanged: run.unchanged,
    skipped: run.skipped,
    failed: run.failed,
  };
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

/** Queues the import of every user and every group of the directory (run them with runQueued). */
export async function queueEverything(db: Db, directoryId: number): Promise<void> {
  for (const selection of [
    { mode: "query", text: "", kind: "users" },
    { mode: "query", text: "", kind: "groups" },
  ] satisfies Selection[]) {
    await createRun(db, {
      directory: { id: directoryId, name: "LDAP" },
      actor: { id: null, name: "admin" },
      query: "",
      selection,
      copyRolesFrom: null,
      total: null,
    });
  }
}

/** Requests a synchronization of the directory, runs it with `worker` and returns it as it ended. */
export async function synchronizeWith(
  db: Db,
  directoryId: number,
  worker: ImportWorker,
  full = false,
): Promise<ImportRun> {
  const { run } = await requestSynchronization(
    db,
    { id: directoryId, name: "LDAP" },
    { id: null, name: "admin" },
    { full },
  );
  await runQueued(worker);
  const [ended] = await db.select().from(importRuns).where(eq(importRuns.id, run.id));
  if (!ended) throw new Error("the run is gone");
  return ended;
}

/** The usernames of the group's members, in order. */
export async function memberUsernames(db: Db, groupName: string): Promise<string[]> {
  const rows = await queryRows<{ username: string }>(
    db,
    sql`select u.username from group_members m join users u on u.id = m.user_id
        join groups g on g.id = m.group_id where g.name = ${groupName} order by u.username`,
  );
  return rows.map((r) => r.username);
}

/** Executes queued runs until none is left. */
export async function runQueued(worker: ImportWorker): Promise<number> {
  let runs = 0;
  while (await worker.runOnce()) runs += 1;
  return runs;
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
      key: decodeEntities(key),
      info: decodeEntities(info),
      name: decodeEntities(name),
      status: decodeEntities(status),
    });
  }
  return rows;
}
