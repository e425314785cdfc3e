/**
 * Sessions with a directory: failover across URLs, TLS (ldaps:// or StartTLS) with a per-directory
 * CA, a service-account or anonymous bind, and searches that are always paged so that server size
 * limits (Active Directory's MaxPageSize, OpenLDAP's sizelimit) never truncate results.
 *
 * Sockets are opened here rather than by ldapts so that connect and TLS failures surface as
 * Node's own errors (ECONNREFUSED, UNABLE_TO_VERIFY_LEAF_SIGNATURE…) under our own timeout; the
 * connected socket is then handed to ldapts.
 */
import net from "node:net";
import tls from "node:tls";
import { Client, type Control, type Entry, NoSuchObjectError } from "ldapts";
import { type ContentSyncAnswer, emptyAnswer, SyncRequestControl } from "./content-sync.ts";
import { isValidDn } from "./dn.ts";
import { type MessageTap, tapMessages } from "./entry-tap.ts";
import { type ClassifiedLdapError, classifyLdapError, DirectoryError } from "./errors.ts";
import { type Filter, parseFilter } from "./filter.ts";
import { DEFAULT_PAGE_SIZE } from "./presets.ts";
import type { DirectoryConnection, SearchScope } from "./types.ts";

export type { Entry } from "ldapts";

/** The subset of pino's API used here. */
export interface DirectoryLogger {
  debug(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface OpenOptions {
  logger?: DirectoryLogger;
}

export type OpenStep = "connect" | "starttls" | "bind";

/** One URL tried and given up on before the session was opened (or all failed). */
export interface UrlAttempt {
  url: string;
  step: "connect" | "starttls";
  /** Time spent on the failing step. */
  ms: number;
  /** When StartTLS failed: how long the connect before it took. */
  connectMs?: number;
  error: ClassifiedLdapError;
}

export interface OpenTimings {
  connectMs: number;
  /** Absent when StartTLS was not used. */
  startTlsMs?: number;
  bindMs: number;
}

export type OpenResult =
  | { ok: true; session: DirectorySession; url: string; attempts: UrlAttempt[]; timings: OpenTimings }
  | {
      ok: false;
      step: OpenStep;
      error: ClassifiedLdapError;
      url?: string;
      attempts: UrlAttempt[];
      /** The steps that did succeed before the failure. */
      timings: Partial<OpenTimings>;
    };

export type OpenFailure = Extract<OpenResult, { ok: false }>;

export type BindResult = { ok: true } | { ok: false; error: ClassifiedLdapError };

export interface SearchPagesOptions {
  /** Entries per page; capped at 1000, the most Active Directory returns in one page. */
  pageSize?: number;
  /** Attributes to return as Buffers (objectGUID, objectSid are always included). */
  bufferAttributes?: string[];
  /** Stops between pages when aborted (the iterator then throws the abort reason). */
  signal?: AbortSignal;
  /** Request controls sent with the search besides paging (Active Directory's Show Deleted, say). */
  controls?: Control[];
}

export interface ContentSyncResult extends ContentSyncAnswer {
  /** Entries added or changed since the cookie (all matching entries without one). */
  entries: Entry[];
}

export interface DirectorySession {
  /** The URL that answered. */
  readonly url: string;
  readonly connection: DirectoryConnection;
  /** Search continuation references seen and not followed. */
  readonly referralsIgnored: number;
  /** Every matching entry, one page at a time (never an unpaged search). */
  searchPages(
    base: string,
    filter: string | Filter,
    scope: SearchScope | "base",
    attributes: string[],
    options?: SearchPagesOptions,
  ): AsyncIterable<Entry[]>;
  /**
   * A content-synchronization refresh (RFC 4533, refreshOnly; OpenLDAP's syncprov): with the
   * cookie of an earlier one, the entries added or changed since and the entryUUIDs of those
   * deleted, and the next cookie. Not paged: the server's size limit applies.
   */
  contentSync(
    base: string,
    filter: string | Filter,
    scope: SearchScope,
    attributes: string[],
    options: { cookie: Buffer | null; bufferAttributes?: string[] },
  ): Promise<ContentSyncResult>;
  /** The entry at `dn`, or null when it does not exist. */
  readEntry(
    dn: string,
    attributes: string[],
    options?: { bufferAttributes?: string[] },
  ): Promise<Entry | null>;
  /** Exact number of matching entries, however many (paged, no attributes transferred). */
  count(base: string, filter: string | Filter, scope: SearchScope): Promise<number>;
  /**
   * Checks a user's password with a bind on a separate connection (same URLs and TLS settings).
   * `dn` may also be a name Active Directory accepts instead: `alice@corp.example`, `CORP\alice`.
   */
  bindAs(dn: string, password: string): Promise<BindResult>;
  close(): Promise<void>;
}

const MAX_PAGE_SIZE = 1000;
const ALWAYS_BUFFER = ["objectGUID", "objectguid", "objectSid", "objectsid"];
/** Each client's message tap, which decodes the entries of paged searches (src/ldap/entry-tap.ts). */
const taps = new WeakMap<Client, MessageTap>();

/** Connects to the first URL that answers, does StartTLS if configured, and binds. */
export async function openDirectory(
  conn: DirectoryConnection,
  options: OpenOptions = {},
): Promise<OpenResult> {
  const connected = await connectFirstAvailable(conn, conn.urls, options.logger);
  if (!connected.ok) return connected;
  const { client, url, attempts, connectMs, startTlsMs } = connected;
  const reached = { connectMs, ...(startTlsMs === undefined ? {} : { startTlsMs }) };
  const started = performance.now();
  const bound = await bindClient(client, conn.bindDn, conn.bindPassword);
  const bindMs = elapsed(started);
  if (!bound.ok) {
    await closeQuietly(client);
    options.logger?.warn(
      { url, kind: bound.error.kind, detail: bound.error.detail },
      "directory bind failed",
    );
    return { ok: false, step: "bind", error: bound.error, url, attempts, timings: reached };
  }
  const session = new Session(client, conn, url, options.logger);
  return { ok: true, session, url, attempts, timings: { ...reached, bindMs } };
}

/** Runs `work` with an open session and always closes it; open failures are returned, not thrown. */
export async function withDirectory<T>(
  conn: DirectoryConnection,
  work: (session: DirectorySession) => Promise<T>,
  options: OpenOptions = {},
): Promise<{ ok: true; value: T } | OpenFailure> {
  const opened = await openDirectory(conn, options);
  if (!opened.ok) return opened;
  try {
    return { ok: true, value: await work(opened.session) };
  } finally {
    await opened.session.close();
  }
}

/** Errors after which a session's connection is not used again. */
const CONNECTION_LOST = new Set<ClassifiedLdapError["kind"]>(["unreachable", "refused", "timeout", "tls"]);

/**
 * OpenLDAP keeps one paged-results state per connection: a second paged search on the same
 * connection invalidates the first one's cookie ("paged results cookie is invalid", 53). So each
 * paged search borrows a connection of its own; concurrent or nested ones get extra connections
 * (same URL, TLS and bind), kept for reuse until the session closes.
 */
class Session implements DirectorySession {
  private referrals = 0;
  private readonly idle: Client[];
  private readonly clients: Client[];
  private closed = false;

  constructor(
    primary: Client,
    readonly connection: DirectoryConnection,
    readonly url: string,
    private readonly logger: DirectoryLogger | undefined,
  ) {
    this.idle = [primary];
    this.clients = [primary];
  }

  get referralsIgnored(): number {
    return this.referrals;
  }

  async *searchPages(
    base: string,
    filter: string | Filter,
    scope: SearchScope | "base",
    attributes: string[],
    options: SearchPagesOptions = {},
  ): AsyncGenerator<Entry[]> {
    const parsed = toFilter(filter);
    const client = await this.borrow();
    // A fresh array: the tap recognises this search's requests by its identity.
    const requested = [...attributes];
    const buffers = [...ALWAYS_BUFFER, ...(options.bufferAttributes ?? [])];
    const sink = taps.get(client)?.collect(requested, buffers);
    let broken = false;
    try {
      const pages = client.searchPaginated(
        base,
        {
          scope,
          filter: parsed,
          attributes: requested,
          explicitBufferAttributes: buffers,
          paged: { pageSize: pageSizeOf(options.pageSize) },
          timeLimit: this.timeLimitSeconds(),
        },
        options.controls,
      );
      for await (const page of pages) {
        this.noteReferrals(page.searchReferences);
        // ldapts itself decoded only the first entry of the page when the tap decoded them all.
        const decoded = sink?.take() ?? [];
        const entries = decoded.length > 0 ? decoded : page.searchEntries;
        if (entries.length > 0) yield entries;
        options.signal?.throwIfAborted();
      }
    } catch (err) {
      if (options.signal?.aborted) throw err;
      const error = this.searchError(err, base);
      broken = CONNECTION_LOST.has(error.classified.kind);
      throw error;
    } finally {
      sink?.close();
      // A connection the server dropped is not used again: the next search opens a new one.
      if (broken) this.discard(client);
      else this.giveBack(client);
    }
  }

  async contentSync(
    base: string,
    filter: string | Filter,
    scope: SearchScope,
    attributes: string[],
    options: { cookie: Buffer | null; bufferAttributes?: string[] },
  ): Promise<ContentSyncResult> {
    return this.onClient(base, async (client) => {
      const requested = [...attributes];
      const buffers = [...ALWAYS_BUFFER, ...(options.bufferAttributes ?? [])];
      const answer = emptyAnswer();
      const sink = taps.get(client)?.collect(requested, buffers, { contentSync: answer });
      if (!sink) throw new Error("content synchronization needs the message tap, which this ldapts lacks");
      try {
        await client.search(
          base,
          {
            scope,
            filter: toFilter(filter),
            attributes: requested,
            explicitBufferAttributes: buffers,
            timeLimit: this.timeLimitSeconds(),
          },
          [new SyncRequestControl(options.cookie)],
        );
        return { ...answer, entries: sink.take() };
      } finally {
        sink.close();
      }
    });
  }

  async readEntry(dn: string, attributes: string[], options: { bufferAttributes?: string[] } = {}) {
    return this.onClient(dn, async (client) => {
      try {
        const result = await client.search(dn, {
          scope: "base",
          filter: "(objectClass=*)",
          attributes,
          explicitBufferAttributes: [...ALWAYS_BUFFER, ...(options.bufferAttributes ?? [])],
          timeLimit: this.timeLimitSeconds(),
        });
        return result.searchEntries[0] ?? null;
      } catch (err) {
        if (err instanceof NoSuchObjectError) return null;
        throw err;
      }
    });
  }

  /**
   * One request on a borrowed connection: its failure classified, the connection given back —
   * or dropped when the server dropped it, so that the next request opens a new one.
   */
  private async onClient<T>(base: string, work: (client: Client) => Promise<T>): Promise<T> {
    const client = await this.borrow();
    let broken = false;
    try {
      return await work(client);
    } catch (err) {
      const error = this.searchError(err, base);
      broken = CONNECTION_LOST.has(error.classified.kind);
      throw error;
    } finally {
      if (broken) this.discard(client);
      else this.giveBack(client);
    }
  }

  async count(base: string, filter: string | Filter, scope: SearchScope): Promise<number> {
    let total = 0;
    // "1.1" asks for no attributes: only the DNs cross the wire.
    for await (const page of this.searchPages(base, filter, scope, ["1.1"], { pageSize: MAX_PAGE_SIZE })) {
      total += page.length;
    }
    return total;
  }

  async bindAs(dn: string, password: string): Promise<BindResult> {
    if (!isValidBindName(dn)) {
      return { ok: false, error: { kind: "invalid_dn", message: "The user's DN is not valid.", detail: dn } };
    }
    if (password === "") {
      // An empty password would be an "unauthenticated bind", which many servers accept as anonymous.
      return { ok: false, error: emptyPasswordError() };
    }
    const urls = [this.url, ...this.connection.urls.filter((url) => url !== this.url)];
    const connected = await connectFirstAvailable(this.connection, urls, this.logger);
    if (!connected.ok) return { ok: false, error: connected.error };
    try {
      return await bindClient(connected.client, dn, password);
    } finally {
      await closeQuietly(connected.client);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.clients.map(closeQuietly));
  }

  private async borrow(): Promise<Client> {
    if (this.closed) throw new DirectoryError(sessionClosedError());
    const idle = this.idle.pop();
    if (idle) return idle;
    const connected = await connectFirstAvailable(this.connection, [this.url], this.logger);
    if (!connected.ok) throw new DirectoryError(connected.error);
    const bound = await bindClient(connected.client, this.connection.bindDn, this.connection.bindPassword);
    if (!bound.ok) {
      await closeQuietly(connected.client);
      throw new DirectoryError(bound.error);
    }
    this.clients.push(connected.client);
    return connected.client;
  }

  private discard(client: Client): void {
    const at = this.clients.indexOf(client);
    if (at >= 0) this.clients.splice(at, 1);
    void closeQuietly(client);
  }

  private giveBack(client: Client): void {
    if (this.closed) void closeQuietly(client);
    else this.idle.push(client);
  }

  private timeLimitSeconds(): number {
    return Math.max(1, Math.ceil(this.connection.operationTimeoutMs / 1000));
  }

  private noteReferrals(references: string[]): void {
    if (references.length === 0) return;
    this.referrals += references.length;
    this.logger?.debug(
      { url: this.url, references },
      "ignored search references (referrals are not followed)",
    );
  }

  private searchError(err: unknown, base: string): DirectoryError {
    const classified = classifyLdapError(err, { secrets: [this.connection.bindPassword] });
    // This server answered the connect and the bind: a lost connection now is no URL or TLS mistake.
    const message =
      classified.ldapCode === 32
        ? `The search base "${base}" does not exist on the server: check the base DN and the search bases.`
        : classified.kind === "unreachable" || classified.kind === "refused"
          ? "The directory closed the connection while Roster was reading from it (it stopped or restarted, or the network dropped)."
          : classified.kind === "timeout"
            ? `The directory stopped answering for longer than the operation timeout (${this.timeLimitSeconds()} s).`
            : classified.message;
    return new DirectoryError({ ...classified, message }, { cause: err });
  }
}

type Connected =
  | { ok: true; client: Client; url: string; attempts: UrlAttempt[]; connectMs: number; startTlsMs?: number }
  | (OpenFailure & { step: "connect" | "starttls" });

async function connectFirstAvailable(
  conn: DirectoryConnection,
  urls: string[],
  logger: DirectoryLogger | undefined,
): Promise<Connected> {
  const attempts: UrlAttempt[] = [];
  for (const url of urls) {
    const result = await connectOne(conn, url);
    if (result.ok) return { ...result, url, attempts };
    attempts.push(result.attempt);
    logger?.warn(
      {
        url,
        step: result.attempt.step,
        kind: result.attempt.error.kind,
        detail: result.attempt.error.detail,
      },
      "directory server did not answer; trying the next URL",
    );
  }
  const chosen = mostTellingAttempt(attempts);
  if (!chosen) {
    const error = { kind: "unknown", message: "No server URL is configured.", detail: "urls: []" } as const;
    return { ok: false, step: "connect", error, attempts, timings: {} };
  }
  const error =
    attempts.length > 1
      ? { ...chosen.error, message: `${chosen.url}: ${chosen.error.message}` }
      : chosen.error;
  const timings = chosen.step === "starttls" ? { connectMs: chosen.connectMs ?? 0 } : {};
  return { ok: false, step: chosen.step, error, url: chosen.url, attempts, timings };
}

type ConnectOne =
  | { ok: true; client: Client; connectMs: number; startTlsMs?: number }
  | { ok: false; attempt: UrlAttempt };

async function connectOne(conn: DirectoryConnection, url: string): Promise<ConnectOne> {
  const target = parseLdapUrl(url);
  const started = performance.now();
  if (!target.ok) return { ok: false, attempt: { url, step: "connect", ms: 0, error: target.error } };
  let socket: net.Socket;
  try {
    socket = await openSocket(target, conn);
  } catch (err) {
    const error = classifyLdapError(err);
    return { ok: false, attempt: { url, step: "connect", ms: elapsed(started), error } };
  }
  const connectMs = elapsed(started);
  const client = createClient(url, target, socket, conn);
  if (!conn.startTls || target.secure) return { ok: true, client, connectMs };
  const tlsStarted = performance.now();
  try {
    await withTimeout(
      client.startTLS(tlsOptions(conn, target.host)),
      conn.connectTimeoutMs + conn.operationTimeoutMs,
    );
  } catch (err) {
    await closeQuietly(client);
    socket.destroy();
    const error = startTlsError(err);
    return { ok: false, attempt: { url, step: "starttls", ms: elapsed(tlsStarted), connectMs, error } };
  }
  return { ok: true, client, connectMs, startTlsMs: elapsed(tlsStarted) };
}

interface Target {
  ok: true;
  host: string;
  port: number;
  secure: boolean;
}

function parseLdapUrl(url: string): Target | { ok: false; error: ClassifiedLdapError } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, error: badUrl(url) };
  }
  const secure = parsed.protocol === "ldaps:";
  if (!secure && parsed.protocol !== "ldap:") return { ok: false, error: badUrl(url) };
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || "localhost";
  const port = parsed.port ? Number(parsed.port) : secure ? 636 : 389;
  return { ok: true, host, port, secure };
}

function badUrl(url: string): ClassifiedLdapError {
  return {
    kind: "protocol",
    message: `"${url}" is not an LDAP URL: write it as ldap://host:389 or ldaps://host:636.`,
    detail: `invalid LDAP URL: ${url}`,
  };
}

function openSocket(target: Target, conn: DirectoryConnection): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = target.secure
      ? tls.connect({ port: target.port, ...tlsOptions(conn, target.host) })
      : net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      socket.destroy();
      const error = new Error(
        `No connection to ${target.host}:${target.port} within ${conn.connectTimeoutMs} ms`,
      );
      reject(Object.assign(error, { code: "ETIMEDOUT" }));
    }, conn.connectTimeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once("error", onError);
    socket.once(target.secure ? "secureConnect" : "connect", () => {
      clearTimeout(timer);
      socket.removeListener("error", onError);
      // Until ldapts attaches its own handlers, an error must not crash the process.
      socket.on("error", () => {});
      resolve(socket);
    });
  });
}

function tlsOptions(conn: DirectoryConnection, host: string): tls.ConnectionOptions {
  return {
    host,
    // SNI must be a host name, never an IP address (RFC 6066).
    ...(net.isIP(host) ? {} : { servername: host }),
    ...(conn.caCertPem ? { ca: conn.caCertPem } : {}),
    rejectUnauthorized: conn.verifyCertificate,
    minVersion: "TLSv1.2",
  };
}

/**
 * An ldapts client over a socket that is already connected. If ldapts ever needs to reconnect on
 * its own, it gets a socket that fails at once: a silent reconnect would be unbound (anonymous).
 */
function createClient(url: string, target: Target, socket: net.Socket, conn: DirectoryConnection): Client {
  let handedOver = false;
  const handOver = <T extends net.Socket>(): T => {
    if (handedOver) return lostConnection() as T;
    handedOver = true;
    return socket as T;
  };
  const client = new Client({
    url,
    timeout: conn.operationTimeoutMs,
    connectTimeout: conn.connectTimeoutMs,
    ...(target.secure
      ? { createSecureConnection: (() => handOver<tls.TLSSocket>()) as typeof tls.connect }
      : { createConnection: (() => handOver<net.Socket>()) as typeof net.connect }),
  });
  const tap = tapMessages(client);
  if (tap) taps.set(client, tap);
  return client;
}

function lostConnection(): net.Socket {
  const socket = new net.Socket();
  process.nextTick(() =>
    socket.destroy(new Error("Connection closed: the connection to the directory was lost")),
  );
  return socket;
}

async function bindClient(client: Client, dn: string | null, password: string | null): Promise<BindResult> {
  const anonymous = dn === null || dn.trim() === "";
  if (!anonymous && !password) return { ok: false, error: emptyPasswordError() };
  try {
    await client.bind(anonymous ? "" : dn, anonymous ? "" : (password ?? ""));
    return { ok: true };
  } catch (err) {
    return { ok: false, error: classifyLdapError(err, { secrets: [password] }) };
  }
}

/**
 * A non-empty DN (the empty one would be an anonymous bind), or a userPrincipalName (`user@domain`)
 * or down-level logon name (`DOMAIN\user`), which Active Directory accepts in a simple bind.
 */
export function isValidBindName(name: string): boolean {
  if (name.trim() === "") return false;
  if (isValidDn(name)) return true;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(name)) return false;
  return /^[^@\\]+@[^@\\\s]+$/.test(name) || /^[^@\\\s]+\\[^@\\]+$/.test(name);
}

function sessionClosedError(): ClassifiedLdapError {
  return {
    kind: "unknown",
    message: "The directory session is already closed.",
    detail: "search after close()",
  };
}

function emptyPasswordError(): ClassifiedLdapError {
  return {
    kind: "invalid_credentials",
    message: "A password is required: a bind DN with an empty password would sign in anonymously.",
    detail: "empty password refused before binding",
  };
}

function startTlsError(err: unknown): ClassifiedLdapError {
  const classified = classifyLdapError(err);
  if (classified.ldapCode === undefined) return classified;
  // The server answered the StartTLS request itself with an error: it cannot do TLS here.
  return {
    ...classified,
    kind: "tls",
    message:
      "The server refused StartTLS (it may have no certificate configured): use ldaps:// or fix the server.",
  };
}

/** When every URL failed, the most specific failure is the one worth showing. */
function mostTellingAttempt(attempts: UrlAttempt[]): UrlAttempt | undefined {
  const rank = (attempt: UrlAttempt): number => {
    const order = [
      "certificate_untrusted",
      "hostname_mismatch",
      "tls",
      "timeout",
      "dns",
      "refused",
      "unreachable",
    ];
    const index = order.indexOf(attempt.error.kind);
    return index === -1 ? order.length : index;
  };
  return [...attempts].sort((a, b) => rank(a) - rank(b))[0];
}

function toFilter(filter: string | Filter): Filter {
  if (typeof filter !== "string") return filter;
  const parsed = parseFilter(filter);
  if (parsed.ok) return parsed.filter;
  throw new DirectoryError({
    kind: "protocol",
    message: `The search filter is invalid: ${parsed.message}`,
    detail: `filter: ${filter}`,
  });
}

function pageSizeOf(requested: number | undefined): number {
  const size = requested ?? DEFAULT_PAGE_SIZE;
  return Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(size)));
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(Object.assign(new Error(`Timed out after ${ms} ms`), { code: "ETIMEDOUT" })),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function closeQuietly(client: Client): Promise<void> {
  try {
    await withTimeout(client.unbind(), 1000);
  } catch {
    // The connection is going away either way.
  }
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
