import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { SQL } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import * as schema from "./schema.ts";

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

/** The minimal `pg`-style pool that connect-pg-simple (and any raw SQL) needs, on either driver. */
export interface QueryPool {
  query(text: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

export interface Database {
  kind: "postgres" | "pglite";
  db: Db;
  pool: QueryPool;
  migrate(): Promise<void>;
  close(): Promise<void>;
}

const migrationsFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../drizzle");

/** postgres.js when a URL is given, otherwise PGlite in `dataDir` (or in memory when dataDir is null). */
export async function openDatabase(options: {
  databaseUrl: string | null;
  dataDir: string | null;
}): Promise<Database> {
  return options.databaseUrl ? openPostgres(options.databaseUrl) : openPglite(options.dataDir);
}

type PostgresOptions = postgres.Options<Record<string, postgres.PostgresType>>;

/**
 * The URL and options postgres.js needs for a connection URL written as libpq takes it. libpq lets
 * the URL name a Unix socket's directory, as `?host=/var/run/postgresql` or as the percent-encoded
 * host `postgres://%2Fvar%2Frun%2Fpostgresql/roster`; postgres.js takes a socket only as an option,
 * and would send `host` to the server as a setting (refused: "unrecognized configuration parameter").
 */
export function postgresConnection(url: string): { url: string; host?: string; port?: number } {
  const parsed = new URL(url);
  const authorityHost = decodeURIComponent(parsed.hostname);
  const socketInAuthority = authorityHost.startsWith("/");
  const host = parsed.searchParams.get("host") || (socketInAuthority ? authorityHost : null);
  // A port that isn't a number stays in the URL, for the server to refuse by name.
  const portText = parsed.searchParams.get("port") ?? "";
  const port = /^\d+$/.test(portText) ? Number(portText) : null;
  if (host === null && port === null) return { url };
  parsed.searchParams.delete("host");
  if (port !== null) parsed.searchParams.delete("port");
  if (socketInAuthority) parsed.hostname = "localhost";
  return { url: parsed.toString(), ...(host ? { host } : {}), ...(port !== null ? { port } : {}) };
}

/** postgres.js for a libpq-style connection URL (see `postgresConnection`). */
export function connectPostgres(url: string, options: PostgresOptions = {}) {
  const { url: driverUrl, ...where } = postgresConnection(url);
  return postgres(driverUrl, { ...options, ...where });
}

function openPostgres(url: string): Database {
  const client = connectPostgres(url, {
    max: 10,
    // A server that doesn't answer is reported within seconds (start-up fails fast; a request 503s).
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: "roster" },
  });
  const db = drizzlePostgres({ client, schema }) as unknown as Db;
  return {
    kind: "postgres",
    db,
    pool: {
      async query(text, params = []) {
        const rows = await client.unsafe(
          text,
          params.map(toDriverParam) as postgres.ParameterOrJSON<never>[],
        );
        return { rows: [...rows] };
      },
    },
    migrate: () => migratePostgres(drizzlePostgres({ client }), { migrationsFolder }),
    close: () => client.end({ timeout: 5 }),
  };
}

async function openPglite(dataDir: string | null): Promise<Database> {
  let dir: string | undefined;
  if (dataDir) {
    dir = path.join(dataDir, "pglite");
    // PGlite creates the data directory itself, but not its parents.
    mkdirSync(dataDir, { recursive: true });
  }
  // Loaded only here: a process on a PostgreSQL server never pays PGlite's ~50 MB.
  const [{ PGlite }, { pg_trgm }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all(
    [
      import("@electric-sql/pglite"),
      import("@electric-sql/pglite/contrib/pg_trgm"),
      import("drizzle-orm/pglite"),
      import("drizzle-orm/pglite/migrator"),
    ],
  );
  const client = await PGlite.create(dir, { extensions: { pg_trgm } });
  const db = drizzlePglite({ client, schema }) as unknown as Db;
  return {
    kind: "pglite",
    db,
    pool: {
      async query(text, params = []) {
        const result = await client.query<Record<string, unknown>>(text, params.map(toDriverParam));
        return { rows: result.rows };
      },
    },
    migrate: () => migratePglite(drizzlePglite({ client }), { migrationsFolder }),
    close: () => client.close(),
  };
}

/** Both drivers take strings reliably; objects (JSON) and dates are sent as text. */
function toDriverParam(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === "object" && !Buffer.isBuffer(value)) return JSON.stringify(value);
  return value;
}

/** Rows of a raw `db.execute(sql…)`: postgres.js returns an array, PGlite an object with `rows`. */
export async function queryRows<T>(db: Db, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

/** The SQLSTATE of a failed query (drizzle wraps the driver's error: the code is on its cause), if any. */
export function sqlState(err: unknown): string | undefined {
  const candidate = (err as { cause?: { code?: unknown }; code?: unknown }) ?? {};
  const code = candidate.cause?.code ?? candidate.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * postgres.js's own codes and the socket's for a connection that was lost or never made, and the
 * SQLSTATEs a server sends as it drops one (class 08, and 57P01–57P03: terminated, crashed,
 * starting up). Such a failure says nothing about the statement: the same work can be tried again.
 * Not CONNECTION_ENDED or CONNECTION_DESTROYED: those mean Roster itself closed its pool.
 */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "57P01",
  "57P02",
  "57P03",
]);

/** Whether an error (or its cause, as drizzle wraps it) is the database connection lost or refused. */
export function isConnectionLost(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 4; depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (CONNECTION_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
    if (e instanceof AggregateError && e.errors.some(isConnectionLost)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
