/**
 * A throwaway OpenLDAP server for tests and the demo: generated slapd.conf in a temp dir, data
 * loaded offline with `slapadd -q`, slapd in the foreground on free 127.0.0.1 ports, a read-only
 * service account held to an Active Directory-like 1000-entry size limit, optional TLS with a
 * freshly generated CA. See docs/ldap-test-server.md for the facts this relies on.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "ldapts";
import { baseTreeLdif, DEFAULT_BASE_DN, SERVICE_ACCOUNT_RDN } from "./fixtures.ts";

const run = promisify(execFile);

const SLAPD = "/usr/sbin/slapd";
const SLAPADD = "/usr/sbin/slapadd";
const MODULE_PATH = "/usr/lib/ldap";
const SCHEMA_DIR = "/etc/ldap/schema";
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
/** Sparse on disk; 100k users take about 300 MB. */
const DEFAULT_MAX_SIZE = 2 * 1024 ** 3;
/**
 * The map grown with what is loaded: an entry takes up to ~8× its LDIF text in the database with
 * its indexes (1,000,000 users: ~2.4 GB, past the default). The map is only address space.
 */
const MAP_PER_LDIF_BYTE = 16;
/** Where the accesslog overlay logs writes (`changeLog`). */
export const CHANGE_LOG_BASE = "cn=accesslog";

export interface SlapdOptions {
  /** Entries to load below the base tree (which is always created: suffix, ou=people, ou=groups, ou=services, service account). */
  ldif?: string;
  /** LDIF files to load after `ldif` (for generated directories too big for a string). */
  ldifFiles?: string[];
  baseDn?: string;
  /** Also listen on ldaps:// and accept StartTLS, with a certificate from a fresh test CA. */
  tls?: boolean;
  servicePassword?: string;
  /** The size limit for everyone but the rootdn (paged searches are not capped in total). Default 1000. */
  sizeLimit?: number;
  /** Let anonymous binds read the directory (default true). */
  anonymousRead?: boolean;
  /** mdb maxsize in bytes. */
  maxSizeBytes?: number;
  /**
   * The syncprov overlay, for content synchronization (RFC 4533), with a session log so that a
   * refresh reports deletions by entryUUID.
   */
  contentSync?: boolean;
  /**
   * The accesslog overlay: every successful write logged under `cn=accesslog` (readable by the
   * service account), as delta-syncrepl directories have. A synchronization reads a changed
   * group's member changes from it instead of its whole member list.
   */
  changeLog?: boolean;
  /** Names in the server certificate (default 127.0.0.1 and localhost); others provoke hostname mismatches. */
  certificateNames?: CertificateNames;
  /**
   * Substring indexes on the name attributes (default true), as a directory searched by name has.
   * They are most of slapadd's time (100,000 users: 19 of 23 s); a benchmark that reads every entry
   * and searches by no name goes without them.
   */
  substringIndexes?: boolean;
}

export interface CertificateNames {
  ipAddresses?: string[];
  dnsNames?: string[];
}

export interface SlapdServer {
  url: string;
  ldapsUrl?: string;
  port: number;
  ldapsPort?: number;
  pid: number;
  baseDn: string;
  rootDn: string;
  rootPassword: string;
  /** A read-only account subject to the size limit: bind as this one to behave like Roster. */
  serviceDn: string;
  servicePassword: string;
  /** PEM of the CA that signed the server certificate (when `tls`). */
  caCertPem?: string;
  dir: string;
  /** Kills slapd at once (SIGKILL), as a crash would; its data stays. */
  crash(): Promise<void>;
  /** Starts slapd again on the same ports with the same data (after `crash`). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface TestCa {
  certPem: string;
  keyPem: string;
}

/** True when slapd, slapadd and the modules this harness loads are installed. */
export function isSlapdAvailable(): boolean {
  return [
    SLAPD,
    SLAPADD,
    `${MODULE_PATH}/back_mdb.so`,
    `${MODULE_PATH}/memberof.so`,
    `${SCHEMA_DIR}/nis.schema`,
  ].every((file) => existsSync(file));
}

export async function startSlapd(options: SlapdOptions = {}): Promise<SlapdServer> {
  const dir = await mkdtemp(path.join(tmpdir(), "roster-slapd-"));
  try {
    return await startIn(dir, options);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A map size the LDIF to load fits in, whatever its size. */
async function mapSizeFor(options: SlapdOptions): Promise<number> {
  let bytes = Buffer.byteLength(options.ldif ?? "");
  for (const file of options.ldifFiles ?? []) bytes += (await stat(file)).size;
  return Math.max(DEFAULT_MAX_SIZE, bytes * MAP_PER_LDIF_BYTE);
}

async function startIn(dir: string, options: SlapdOptions): Promise<SlapdServer> {
  const baseDn = options.baseDn ?? DEFAULT_BASE_DN;
  const settings: ConfigSettings = {
    dir,
    baseDn,
    rootDn: `cn=admin,${baseDn}`,
    rootPassword: secret(),
    serviceDn: `${SERVICE_ACCOUNT_RDN},${baseDn}`,
    servicePassword: options.servicePassword ?? secret(),
    sizeLimit: options.sizeLimit ?? 1000,
    anonymousRead: options.anonymousRead ?? true,
    maxSizeBytes: options.maxSizeBytes ?? (await mapSizeFor(options)),
    tls: options.tls ?? false,
    contentSync: options.contentSync ?? false,
    changeLog: options.changeLog ?? false,
    substringIndexes: options.substringIndexes ?? true,
  };
  await mkdir(path.join(dir, "db"));
  if (settings.changeLog) await mkdir(path.join(dir, "accesslog"));
  const caCertPem = settings.tls ? await writeTlsFiles(dir, options.certificateNames) : undefined;
  await writeFile(configPath(dir), slapdConfig(settings));
  await load(dir, settings, options);
  const started = await launchOnFreePorts(dir, settings.tls);
  const { port, ldapsPort } = started;
  let child = started.child;
  const url = `ldap://127.0.0.1:${port}`;
  let stopping: Promise<void> | undefined;
  const server: SlapdServer = {
    url,
    ...(ldapsPort === undefined ? {} : { ldapsUrl: `ldaps://127.0.0.1:${ldapsPort}`, ldapsPort }),
    port,
    pid: child.pid ?? -1,
    baseDn,
    rootDn: settings.rootDn,
    rootPassword: settings.rootPassword,
    serviceDn: settings.serviceDn,
    servicePassword: settings.servicePassword,
    ...(caCertPem === undefined ? {} : { caCertPem }),
    dir,
    async crash() {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGKILL");
      await exited;
      running.delete(child);
    },
    async restart() {
      child = await launch(dir, port, ldapsPort);
      server.pid = child.pid ?? -1;
    },
    stop() {
      stopping ??= (async () => {
        await terminate(child);
        running.delete(child);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  return server;
}

interface ConfigSettings {
  dir: string;
  baseDn: string;
  rootDn: string;
  rootPassword: string;
  serviceDn: string;
  servicePassword: string;
  sizeLimit: number;
  anonymousRead: boolean;
  maxSizeBytes: number;
  tls: boolean;
  contentSync: boolean;
  changeLog: boolean;
  substringIndexes: boolean;
}

function slapdConfig(s: ConfigSettings): string {
  const tls = s.tls
    ? [
        `TLSCACertificateFile ${quote(path.join(s.dir, "ca.pem"))}`,
        `TLSCertificateFile ${quote(path.join(s.dir, "server.pem"))}`,
        `TLSCertificateKeyFile ${quote(path.join(s.dir, "server.key"))}`,
        "TLSVerifyClient never",
      ]
    : [];
  return `${[
    ...["core", "cosine", "inetorgperson", "nis"].map((schema) => `include ${SCHEMA_DIR}/${schema}.schema`),
    `modulepath ${MODULE_PATH}`,
    "moduleload back_mdb",
    "moduleload memberof",
    ...(s.contentSync ? ["moduleload syncprov"] : []),
    ...(s.changeLog ? ["moduleload accesslog"] : []),
    `pidfile ${quote(path.join(s.dir, "slapd.pid"))}`,
    `argsfile ${quote(path.join(s.dir, "slapd.args"))}`,
    ...tls,
    "",
    ...(s.changeLog
      ? [
          // The log's database comes first: the main database's overlay names it.
          "database mdb",
          `suffix ${quote(CHANGE_LOG_BASE)}`,
          `rootdn ${quote(`cn=admin,${CHANGE_LOG_BASE}`)}`,
          `directory ${quote(path.join(s.dir, "accesslog"))}`,
          "index reqStart,reqEntryUUID eq",
          `access to * by dn.exact=${quote(s.serviceDn)} read by * none`,
          "",
        ]
      : []),
    "database mdb",
    `maxsize ${s.maxSizeBytes}`,
    `suffix ${quote(s.baseDn)}`,
    `rootdn ${quote(s.rootDn)}`,
    `rootpw ${quote(s.rootPassword)}`,
    `directory ${quote(path.join(s.dir, "db"))}`,
    // Like Active Directory's MaxPageSize: unpaged searches stop at the limit, paged ones don't.
    `sizelimit size.soft=${s.sizeLimit} size.hard=${s.sizeLimit} size.prtotal=unlimited`,
    "index objectClass,entryUUID,entryCSN,member,uniqueMember,memberUid eq",
    `index uid,cn,mail,sn,givenName,displayName ${s.substringIndexes ? "eq,sub" : "eq"}`,
    "access to attrs=userPassword by anonymous auth by * none",
    `access to * by dn.exact=${quote(s.serviceDn)} read by users read${s.anonymousRead ? " by anonymous read" : ""} by * none`,
    // After the database directives: lines that follow belong to the overlay.
    "overlay memberof",
    "memberof-group-oc groupOfNames",
    "memberof-member-ad member",
    "memberof-memberof-ad memberOf",
    "memberof-refint TRUE",
    ...(s.contentSync
      ? [
          "overlay syncprov",
          "syncprov-checkpoint 100 10",
          // Deletions since a cookie are told by entryUUID while they are among the last 10,000 writes.
          "syncprov-sessionlog 10000",
        ]
      : []),
    ...(s.changeLog
      ? [
          "overlay accesslog",
          `logdb ${quote(CHANGE_LOG_BASE)}`,
          "logops writes",
          "logsuccess TRUE",
          "logpurge 07+00:00 01+00:00",
        ]
      : []),
  ].join("\n")}\n`;
}

async function load(dir: string, settings: ConfigSettings, options: SlapdOptions): Promise<void> {
  const base = baseTreeLdif({
    baseDn: settings.baseDn,
    serviceDn: settings.serviceDn,
    servicePassword: settings.servicePassword,
  });
  const dataFile = path.join(dir, "data.ldif");
  await writeFile(dataFile, base + (options.ldif ?? ""));
  for (const file of [dataFile, ...(options.ldifFiles ?? [])]) {
    try {
      await run(SLAPADD, ["-q", "-f", configPath(dir), "-b", settings.baseDn, "-l", file], {
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? "";
      throw new Error(`slapadd could not load ${file}: ${stderr.trim() || String(err)}`, { cause: err });
    }
  }
}

interface Launched {
  child: ChildProcess;
  port: number;
  ldapsPort?: number;
}

/** Free ports are found by binding port 0; another process may grab one first, hence the retries. */
async function launchOnFreePorts(dir: string, tls: boolean): Promise<Launched> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const port = await freePort();
    const ldapsPort = tls ? await freePort() : undefined;
    try {
      const child = await launch(dir, port, ldapsPort);
      return { child, port, ...(ldapsPort === undefined ? {} : { ldapsPort }) };
    } catch (err) {
      lastError = err;
      if (!/address already in use|bind|listen/i.test(String(err))) throw err;
    }
  }
  throw lastError;
}

async function launch(dir: string, port: number, ldapsPort: number | undefined): Promise<ChildProcess> {
  const urls = [`ldap://127.0.0.1:${port}/`, ...(ldapsPort ? [`ldaps://127.0.0.1:${ldapsPort}/`] : [])];
  // -d 0 keeps slapd in the foreground, so this PID is slapd's own.
  const child = spawn(SLAPD, ["-f", configPath(dir), "-h", urls.join(" "), "-d", "0"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.set(child, dir);
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const exited = new Promise<never>((_, reject) => {
    child.once("exit", (code, signal) =>
      reject(new Error(`slapd exited (${signal ?? code}): ${stderr.trim()}`)),
    );
    child.once("error", reject);
  });
  exited.catch(() => {});
  try {
    await Promise.race([waitUntilAnswering(`ldap://127.0.0.1:${port}`), exited]);
    return child;
  } catch (err) {
    child.kill("SIGKILL");
    running.delete(child);
    throw err;
  }
}

/** Polls the root DSE until slapd answers (about 30 ms after spawning). */
async function waitUntilAnswering(url: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const client = new Client({ url, connectTimeout: 500, timeout: 1000 });
    try {
      await client.search("", { scope: "base", filter: "(objectClass=*)", attributes: ["namingContexts"] });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`slapd did not answer on ${url}`, { cause: err });
      await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      await client.unbind().catch(() => {});
    }
  }
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** slapd processes still running, killed if the process exits (or is interrupted) without stopping them. */
const running = new Map<ChildProcess, string>();

function killAllNow(): void {
  for (const [child, dir] of running) {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  running.clear();
}

process.once("exit", killAllNow);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  const onSignal = () => {
    killAllNow();
    // Listening to a signal cancels its default action: if nobody else handles it, re-raise it.
    if (process.listenerCount(signal) === 1) {
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    }
  };
  process.on(signal, onSignal);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}

// ——— TLS ———

/** Generates a CA and a server certificate it signs (for 127.0.0.1 and localhost by default); returns the CA's PEM. */
async function writeTlsFiles(
  dir: string,
  names: CertificateNames = { ipAddresses: ["127.0.0.1"], dnsNames: ["localhost"] },
): Promise<string> {
  const ca = await generateTestCa("Roster Test CA");
  const server = await generateServerCertificate(ca, names);
  await writeFile(path.join(dir, "ca.pem"), ca.certPem);
  await writeFile(path.join(dir, "server.pem"), server.certPem);
  await writeFile(path.join(dir, "server.key"), server.keyPem, { mode: 0o600 });
  return ca.certPem;
}

/** A fresh self-signed CA: pass another server's CA to a client to provoke "certificate not trusted". */
export async function generateTestCa(commonName = "Roster Other Test CA"): Promise<TestCa> {
  return withScratchDir(async (dir) => {
    const key = path.join(dir, "ca.key");
    const cert = path.join(dir, "ca.pem");
    await openssl([
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
      ...["-keyout", key, "-out", cert, "-days", "7", "-subj", `/CN=${commonName}`],
      ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ]);
    return { certPem: await readFile(cert, "utf8"), keyPem: await readFile(key, "utf8") };
  });
}

export async function generateServerCertificate(ca: TestCa, names: CertificateNames): Promise<TestCa> {
  const altNames = [
    ...(names.ipAddresses ?? []).map((ip) => `IP:${ip}`),
    ...(names.dnsNames ?? []).map((dns) => `DNS:${dns}`),
  ];
  return withScratchDir(async (dir) => {
    const file = (name: string) => path.join(dir, name);
    await writeFile(file("ca.pem"), ca.certPem);
    await writeFile(file("ca.key"), ca.keyPem, { mode: 0o600 });
    await writeFile(
      file("ext.cnf"),
      [
        `subjectAltName=${altNames.join(",")}`,
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
      ].join("\n"),
    );
    await openssl([
      ...["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
      ...[
        "-keyout",
        file("server.key"),
        "-out",
        file("server.csr"),
        "-subj",
        `/CN=${names.dnsNames?.[0] ?? "server"}`,
      ],
    ]);
    await openssl([
      ...["x509", "-req", "-in", file("server.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key")],
      ...["-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", "7", "-extfile", file("ext.cnf")],
      ...["-out", file("server.pem")],
    ]);
    return {
      certPem: await readFile(file("server.pem"), "utf8"),
      keyPem: await readFile(file("server.key"), "utf8"),
    };
  });
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run("openssl", args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? "";
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

async function withScratchDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), "roster-tls-"));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function configPath(dir: string): string {
  return path.join(dir, "slapd.conf");
}

function secret(): string {
  return randomBytes(18).toString("base64url");
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}
