/**
 * A throwaway Active Directory for tests: a Samba 4 AD DC provisioned into a temp dir, serving
 * LDAP only, with TLS from a fresh test CA, and `samba` in the foreground so that the spawned PID
 * is Samba's own. See the Samba section of docs/ldap-test-server.md for the facts this relies on.
 *
 * Samba cannot be moved off its ports (389, 636 and the global catalog's 3268, 3269 on 127.0.0.1
 * and ::1): one runs on a machine at a time, and it needs root. Busy ports fail fast with a
 * message rather than leaving Samba to half-start.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "ldapts";
import { generateServerCertificate, generateTestCa } from "./slapd.ts";

const run = promisify(execFile);

export const AD_REALM = "EXAMPLE.TEST";
export const AD_DOMAIN = "EXAMPLE";
export const AD_BASE_DN = "DC=example,DC=test";
export const AD_HOST_NAME = "dc1";

/** The user accounts `samba-tool domain provision` creates (Samba 4.17, --dns-backend=NONE). */
export const BUILTIN_USERS = ["Administrator", "Guest", "krbtgt", `dns-${AD_HOST_NAME}`] as const;
/** The groups it creates (under CN=Users and CN=Builtin). */
export const BUILTIN_GROUP_COUNT = 36;

const SAMBA = "/usr/sbin/samba";
const SAMBA_TOOL = "/usr/bin/samba-tool";
const PROVISION_DATA = "/usr/share/samba/setup/provision.ldif";
/** From samba-vfs-modules (only a Recommends of samba): provisioning fails without it. */
const ACL_XATTR = "/usr/lib/x86_64-linux-gnu/samba/vfs/acl_xattr.so";
const LDAP_PORTS = [389, 636, 3268, 3269] as const;
const DIR_PREFIX = "roster-samba-";
/** Holds the PID of the process that started the server, to sweep dirs it left behind. */
const OWNER_FILE = "owner.pid";
const READY_TIMEOUT_MS = 30_000;
/**
 * Samba's databases skip fsync (as in Samba's own selftest): the data is thrown away anyway, and
 * loading 2,500 users takes ~7.5 s instead of 13–27 s.
 */
function sambaEnv(): NodeJS.ProcessEnv {
  return { ...process.env, TDB_NO_FSYNC: "1" };
}
const STOP_TIMEOUT_MS = 10_000;

export interface SambaOptions {
  /**
   * Keep Samba's default `ldap server require strong auth = yes`, under which a simple bind over
   * plain ldap:// fails with strongerAuthRequired (8). Default false: simple binds are allowed.
   */
  requireStrongAuth?: boolean;
  /** The Administrator's password (default: a random one that meets AD's complexity rules). */
  adminPassword?: string;
}

export interface SambaTimings {
  provisionMs: number;
  /** Spawn until LDAPS answers, for the latest (re)start. */
  startMs: number;
}

export interface SambaServer {
  readonly ldapUrl: string;
  readonly ldapsUrl: string;
  readonly baseDn: string;
  readonly realm: string;
  /** The NetBIOS domain name. */
  readonly domain: string;
  readonly adminDn: string;
  readonly adminPassword: string;
  /** PEM of the CA that signed the server certificate (names 127.0.0.1, ::1, localhost). */
  readonly caCertPem: string;
  /** The running samba's own PID (it changes on restart). */
  readonly pid: number;
  readonly requireStrongAuth: boolean;
  readonly dir: string;
  readonly timings: SambaTimings;
  /** Stops samba and starts it again on the same data, optionally with another strong-auth setting. */
  restart(options?: Pick<SambaOptions, "requireStrongAuth">): Promise<void>;
  /** SIGTERM, wait for samba to exit, remove the dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** Why Samba cannot run here, or null when it can. */
export function sambaUnavailableReason(): string | null {
  const missing = [SAMBA, SAMBA_TOOL, PROVISION_DATA, ACL_XATTR].filter((file) => !existsSync(file));
  if (missing.length > 0) {
    return `Samba AD DC is not installed (missing ${missing.join(", ")}): apt-get install samba samba-ad-provision samba-dsdb-modules samba-vfs-modules ldb-tools ldap-utils openssl`;
  }
  if (process.getuid?.() !== 0) return "Samba AD DC needs root (it binds the fixed ports 389 and 636)";
  return null;
}

export function isSambaAvailable(): boolean {
  return sambaUnavailableReason() === null;
}

export async function startSamba(options: SambaOptions = {}): Promise<SambaServer> {
  const unavailable = sambaUnavailableReason();
  if (unavailable) throw new Error(unavailable);
  await removeStaleDirs();
  // Before provisioning: a busy port should fail in milliseconds, not after seconds of work.
  await assertPortsFree();
  const dir = await mkdtemp(path.join(tmpdir(), DIR_PREFIX));
  try {
    await writeFile(path.join(dir, OWNER_FILE), String(process.pid));
    return await startIn(dir, options);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startIn(dir: string, options: SambaOptions): Promise<SambaServer> {
  const adminPassword = options.adminPassword ?? complexPassword();
  const provisionStarted = performance.now();
  const [caCertPem] = await Promise.all([writeTlsFiles(dir), provision(dir, adminPassword)]);
  const provisionMs = elapsed(provisionStarted);
  await writeFile(configPath(dir), await serverConfig(dir));
  const server = new RunningSamba(dir, adminPassword, caCertPem, provisionMs);
  await server.launch(options.requireStrongAuth ?? false);
  return server;
}

class RunningSamba implements SambaServer {
  readonly ldapUrl = "ldap://127.0.0.1";
  readonly ldapsUrl = "ldaps://127.0.0.1";
  readonly baseDn = AD_BASE_DN;
  readonly realm = AD_REALM;
  readonly domain = AD_DOMAIN;
  readonly adminDn = `CN=Administrator,CN=Users,${AD_BASE_DN}`;
  readonly timings: SambaTimings;
  private child: ChildProcess | undefined;
  private strongAuth = false;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly dir: string,
    readonly adminPassword: string,
    readonly caCertPem: string,
    provisionMs: number,
  ) {
    this.timings = { provisionMs, startMs: 0 };
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  get requireStrongAuth(): boolean {
    return this.strongAuth;
  }

  async launch(requireStrongAuth: boolean): Promise<void> {
    const started = performance.now();
    this.child = await launch(this.dir, requireStrongAuth, this.caCertPem);
    this.strongAuth = requireStrongAuth;
    this.timings.startMs = elapsed(started);
  }

  async restart(options: Pick<SambaOptions, "requireStrongAuth"> = {}): Promise<void> {
    if (this.stopping) throw new Error("This Samba server has been stopped.");
    if (this.child) await terminate(this.child);
    this.child = undefined;
    await assertPortsFree();
    await this.launch(options.requireStrongAuth ?? this.strongAuth);
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.child) await terminate(this.child);
      running.delete(this.dir);
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }
}

// ——— Provisioning ———

async function provision(dir: string, adminPassword: string): Promise<void> {
  const args = [
    ...["domain", "provision", `--targetdir=${dir}`, `--realm=${AD_REALM}`, `--domain=${AD_DOMAIN}`],
    ...["--server-role=dc", "--dns-backend=NONE", "--use-rfc2307", `--adminpass=${adminPassword}`],
    ...[`--host-name=${AD_HOST_NAME}`, "--host-ip=127.0.0.1"],
    ...["--option=interfaces=lo", "--option=bind interfaces only=yes"],
  ];
  try {
    await run(SAMBA_TOOL, args, { maxBuffer: 16 * 1024 * 1024, env: sambaEnv() });
  } catch (err) {
    const output = redact(outputOf(err), adminPassword);
    throw new Error(`samba-tool domain provision failed: ${output}`, { cause: err });
  }
}

/** Settings that replace what provisioning wrote: LDAP only, everything Samba writes kept in `dir`. */
function globalSettings(dir: string): [string, string][] {
  const runDir = path.join(dir, "run");
  return [
    ["server services", "ldap"],
    ["log file", logPath(dir)],
    ["logging", "file"],
    ["pid directory", runDir],
    ["ncalrpc dir", path.join(runDir, "ncalrpc")],
    ["winbindd socket directory", path.join(runDir, "winbindd")],
    ["ntp signd socket directory", path.join(runDir, "ntp_signd")],
    ["tls enabled", "yes"],
    ["tls keyfile", path.join(dir, "tls", "server.key")],
    ["tls certfile", path.join(dir, "tls", "server.pem")],
    ["tls cafile", path.join(dir, "tls", "ca.pem")],
  ];
}

/** The provisioned smb.conf with [global]'s overridden settings replaced by `globalSettings`. */
async function serverConfig(dir: string): Promise<string> {
  const settings = globalSettings(dir);
  await Promise.all(["log", "run"].map((name) => mkdir(path.join(dir, name), { recursive: true })));
  const overridden = new Set(settings.map(([key]) => key));
  const lines = (await readFile(configPath(dir), "utf8")).split("\n");
  const output: string[] = [];
  let section = "";
  const closeGlobal = () => {
    if (section === "global") output.push(...settings.map(([key, value]) => `\t${key} = ${value}`), "");
  };
  for (const line of lines) {
    const header = /^\s*\[([^\]]+)\]/.exec(line);
    if (header) {
      closeGlobal();
      section = (header[1] ?? "").trim().toLowerCase();
    } else if (section === "global") {
      const key = /^\s*([^=#;]+?)\s*=/.exec(line)?.[1]?.toLowerCase();
      if (key !== undefined && overridden.has(key)) continue;
    }
    output.push(line);
  }
  closeGlobal();
  return output.join("\n");
}

async function writeTlsFiles(dir: string): Promise<string> {
  const ca = await generateTestCa("Roster Samba Test CA");
  const server = await generateServerCertificate(ca, {
    ipAddresses: ["127.0.0.1", "::1"],
    dnsNames: ["localhost", `${AD_HOST_NAME}.${AD_REALM.toLowerCase()}`],
  });
  const tlsDir = path.join(dir, "tls");
  await mkdir(tlsDir);
  await writeFile(path.join(tlsDir, "ca.pem"), ca.certPem);
  await writeFile(path.join(tlsDir, "server.pem"), server.certPem);
  // Samba refuses a private key that others can read.
  await writeFile(path.join(tlsDir, "server.key"), server.keyPem, { mode: 0o600 });
  return ca.certPem;
}

// ——— Running ———

async function launch(dir: string, requireStrongAuth: boolean, caCertPem: string): Promise<ChildProcess> {
  const args = ["-i", "-M", "single", "-s", configPath(dir)];
  if (!requireStrongAuth) args.push("--option=ldap server require strong auth=no");
  // stdin stays an open pipe: `samba -i` exits when it reads EOF there, so Samba ends with this
  // process even when this process is killed outright and no exit handler runs.
  const child = spawn(SAMBA, args, { stdio: ["pipe", "pipe", "pipe"], env: sambaEnv() });
  child.stdin?.on("error", () => {});
  running.set(dir, child);
  let output = "";
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      output = (output + chunk).slice(-4000);
    });
  }
  const exited = new Promise<never>((_, reject) => {
    child.once("exit", (code, signal) =>
      reject(new Error(`samba exited (${signal ?? code}): ${output.trim()}${logTail(dir)}`)),
    );
    child.once("error", reject);
  });
  exited.catch(() => {});
  try {
    await Promise.race([waitUntilAnswering(caCertPem), exited]);
    return child;
  } catch (err) {
    child.kill("SIGKILL");
    running.delete(dir);
    throw err;
  }
}

/**
 * Polls the root DSE over LDAPS. Trusting only this server's own CA also proves that the answer
 * comes from this Samba, not from another server that took the port in the meantime.
 */
async function waitUntilAnswering(caCertPem: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const client = new Client({
      url: "ldaps://127.0.0.1",
      connectTimeout: 1000,
      timeout: 2000,
      tlsOptions: { ca: caCertPem, minVersion: "TLSv1.2" },
    });
    try {
      await client.search("", { scope: "base", filter: "(objectClass=*)", attributes: ["dnsHostName"] });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error("samba did not answer on ldaps://127.0.0.1", { cause: err });
      await new Promise((resolve) => setTimeout(resolve, 50));
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

/** Samba servers still running (by dir), killed if this process exits without stopping them. */
const running = new Map<string, ChildProcess>();

process.once("exit", () => {
  for (const [dir, child] of running) {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  running.clear();
});

/**
 * A process killed by a signal leaves its dir behind (Samba itself goes, on stdin EOF): remove the
 * dirs whose owner process is gone.
 */
async function removeStaleDirs(): Promise<void> {
  const names = await readdir(tmpdir()).catch(() => []);
  for (const name of names.filter((candidate) => candidate.startsWith(DIR_PREFIX))) {
    const dir = path.join(tmpdir(), name);
    const owner = Number.parseInt(await readFile(path.join(dir, OWNER_FILE), "utf8").catch(() => ""), 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !isAlive(owner)) {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

// ——— Ports ———

async function assertPortsFree(): Promise<void> {
  const busy: number[] = [];
  for (const port of LDAP_PORTS) {
    for (const host of ["127.0.0.1", "::1"]) {
      if ((await portState(port, host)) === "busy" && !busy.includes(port)) busy.push(port);
    }
  }
  if (busy.length === 0) return;
  const holders = await portHolders(busy);
  throw new Error(
    `Samba needs the fixed ports ${LDAP_PORTS.join(", ")} on loopback, but ${busy.join(", ")} ` +
      `${busy.length === 1 ? "is" : "are"} already in use${holders ? ` (by ${holders})` : ""}. ` +
      "Another Samba, perhaps another test run, may hold them: stop it or wait for it to finish.",
  );
}

function portState(port: number, host: string): Promise<"free" | "busy" | "absent"> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRINUSE") resolve("busy");
      // No IPv6 loopback here: Samba will not listen on ::1 either.
      else if (err.code === "EADDRNOTAVAIL" || err.code === "EAFNOSUPPORT") resolve("absent");
      else reject(new Error(`Cannot check port ${port} on ${host}: ${err.message}`, { cause: err }));
    });
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve("free")));
  });
}

/** "samba (pid 1234)" from `ss`, best effort: only used to word the error. */
async function portHolders(ports: number[]): Promise<string> {
  try {
    const { stdout } = await run("ss", [
      "-Hltnp",
      `( ${ports.map((port) => `sport = :${port}`).join(" or ")} )`,
    ]);
    const holders = new Set(
      Array.from(stdout.matchAll(/\("([^"]+)",pid=(\d+)/g), (match) => `${match[1]} (pid ${match[2]})`),
    );
    return [...holders].join(", ");
  } catch {
    return "";
  }
}

// ——— Helpers ———

function configPath(dir: string): string {
  return path.join(dir, "etc", "smb.conf");
}

function logPath(dir: string): string {
  return path.join(dir, "log", "samba.log");
}

/** Meets AD's default complexity rules: upper and lower case, a digit and a symbol, long enough. */
function complexPassword(): string {
  return `Roster-${randomBytes(12).toString("base64url")}-9a`;
}

function logTail(dir: string): string {
  try {
    const text = readFileSync(logPath(dir), "utf8").trim();
    return text ? `\n--- ${logPath(dir)} ---\n${text.slice(-2000)}` : "";
  } catch {
    return "";
  }
}

function outputOf(err: unknown): string {
  const { stdout = "", stderr = "" } = err as { stdout?: string; stderr?: string };
  const text = `${stderr}\n${stdout}`.trim();
  return (text || String(err)).slice(-3000);
}

function redact(text: string, secret: string): string {
  return text.split(secret).join("[redacted]");
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
