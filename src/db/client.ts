import { mkdirSync } from "node:fs";
import net from "node:net";
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

function openPostgres(url: string): Database {
  // `socket` is postgres.js's documented custom-socket option, missing from its type definitions.
  const options: postgres.Options<Record<string, never>> & {
    socket: ReturnType<typeof socketsWithoutDelay>;
  } = {
    max: 10,
    onnotice: () => {},
    connection: { application_name: "roster" },
    socket: socketsWithoutDelay(),
  };
  const client = postgres(url, options);
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

/** The connection settings postgres.js hands to its `socket` option. */
interface SocketOptions {
  host: string[];
  port: number[];
  path: string | false;
}

/**
 * postgres.js's `socket` option: each connection's socket, connected as postgres.js connects its own
 * (the Unix socket path, else the next of the hosts in turn; its timeout, retries and TLS still
 * apply) but with Nagle's algorithm off. postgres.js leaves it on: a COPY's last message is a few
 * bytes written after the data, and was held back until the server acknowledged the data, ≈ 40 ms
 * per COPY.
 */
function socketsWithoutDelay(): (options: SocketOptions) => net.Socket {
  let next = 0;
  return (options) => {
    if (options.path) return net.connect({ path: options.path });
    const i = next++ % options.host.length;
    const host = options.host[i] as string;
    const port = options.port[i] ?? options.port[0] ?? 5432;
    // host and port: where postgres.js looks for the TLS server name, as on the sockets it connects.
    return Object.assign(net.connect({ host, port, noDelay: true }), { host, port });
  };
}

/**
 * Rows into a table by COPY, in its text format (`lines`: one row each, tab-separated, escaped by
 * `copyText`), inside `tx`'s transaction, on either driver. PostgreSQL inserts them in bulk: about a
 * seventh less of its work than an INSERT of the same rows from array parameters.
 */
export async function copyInto(
  tx: Db,
  table: string,
  columns: readonly string[],
  lines: string[],
): Promise<void> {
  if (lines.length === 0) return;
  const data = `${lines.join("\n")}\n`;
  const target = `${table} (${columns.join(", ")})`;
  const client = (tx._.session as unknown as { client: unknown }).client;
  if (typeof (client as postgres.Sql).unsafe === "function") {
    const query = (client as postgres.Sql).unsafe(`copy ${target} from stdin`);
    // postgres.js 3.4 resolves the query with the stream when the copy starts, and when the server
    // then rejects the rows it neither ends nor fails the stream: the error goes only to the query's
    // `reject`, too late to count (porsager/postgres#1173). It is caught there.
    const rejected = interceptRejection(query as unknown as { reject(err: unknown): void });
    const stream = await query.writable();
    await Promise.race([
      rejected,
      new Promise<void>((resolve, reject) => {
        stream.once("error", reject);
        stream.end(data, () => resolve());
      }),
    ]);
  } else {
    const pglite = client as {
      query(text: string, params: unknown[], options: { blob: Blob }): Promise<unknown>;
    };
    await pglite.query(`copy ${target} from '/dev/blob'`, [], { blob: new Blob([data]) });
  }
}

/** A promise that fails when `query.reject` is called (it never succeeds); the query still sees the call. */
function interceptRejection(query: { reject(err: unknown): void }): Promise<never> {
  const own = query.reject;
  const rejected = new Promise<never>((_, reject) => {
    query.reject = (err: unknown) => {
      reject(err);
      own.call(query, err);
    };
  });
  rejected.catch(() => {}); // also reported through the query itself when the copy never started
  return rejected;
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_ESCAPES: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/** A value in COPY's text format: backslash, tab, newline and carriage return escaped; null as \N. */
export function copyText(value: string | null): string {
  if (value === null) return "\\N";
  return COPY_SPECIAL.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c] as string) : value;
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
