/**
 * Roster's app for the load bench, in a process of its own so that the load generator's CPU is not
 * the server's. Started by load.bench.ts over IPC: it listens on a free loopback port, counts every
 * statement it sends to PostgreSQL by kind, and on request replays a sample of each kind on a
 * connection of its own to measure that kind's server CPU.
 *
 *   BENCH_DATABASE_URL=…, BENCH_APP_ROOT (the tree whose src/ is served; default this one)
 */
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { pino } from "pino";
import postgres from "postgres";

type AppModule = typeof import("../../src/app.ts");
type ClientModule = typeof import("../../src/db/client.ts");

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(process.env.BENCH_APP_ROOT || path.join(here, "../.."));
const databaseUrl = process.env.BENCH_DATABASE_URL ?? "";
const load = <T>(file: string): Promise<T> => import(pathToFileURL(path.join(root, file)).href) as Promise<T>;
const { createApp } = await load<AppModule>("src/app.ts");
const { openDatabase } = await load<ClientModule>("src/db/client.ts");

/** What each statement is, from its text: the parts of a signed-in request. */
const KINDS: [string, RegExp][] = [
  ["session read", /^select sess from "session"/i],
  ["session touch", /^update "session" set expire/i],
  ["session save", /^insert into "session"/i],
  ["session delete", /^delete from "session"/i],
  ["signed-in user", /from "users" left join "directories"/i],
  ["permissions", /with recursive member_of/i],
  ["activity update", /^update "users" set "last_activity_at"/i],
  ["email domains", /from email_domains/i],
  ["list (ids, counts)", /users_found|users_internal/i],
  ["list (rows)", /from users u left join directories d/i],
  ["rate limits", /rate_limits/i],
];

function kindOf(text: string): string {
  const trimmed = text.trim();
  for (const [kind, pattern] of KINDS) if (pattern.test(trimmed)) return kind;
  return `other: ${trimmed.replace(/\s+/g, " ").slice(0, 60)}`;
}

interface Sample {
  text: string;
  params: unknown[];
}
const counts = new Map<string, number>();
const samples = new Map<string, Sample[]>();
const SAMPLES_PER_KIND = 300;

const database = await openDatabase({ databaseUrl, dataDir: null });
if (database.kind !== "postgres") throw new Error("the load bench needs BENCH_DATABASE_URL");
// The pool and drizzle share one postgres.js client: counting its `unsafe` counts every statement.
const client = (database.db as unknown as { $client: postgres.Sql }).$client;
const unsafe = client.unsafe.bind(client);
client.unsafe = ((text: string, params?: unknown[], options?: unknown) => {
  const kind = kindOf(text);
  counts.set(kind, (counts.get(kind) ?? 0) + 1);
  const kept = samples.get(kind) ?? [];
  if (kept.length < SAMPLES_PER_KIND) kept.push({ text, params: [...(params ?? [])] });
  samples.set(kind, kept);
  return unsafe(text, params as never, options as never);
}) as typeof client.unsafe;

const logger = pino({ level: "info" }, new Writable({ write: (_chunk, _enc, done) => done() }));
const app = createApp({
  config: {
    // Production: templates are compiled once, as on a real server.
    env: "production",
    host: "127.0.0.1",
    port: 0,
    databaseUrl,
    dataDir: "",
    sessionSecret: "load-bench-session-secret-0123456789abcdef",
    encryptionKey: Buffer.alloc(32, 7),
    sessionIdleMinutes: 30,
    secureCookies: false,
    trustProxy: false,
    bootstrapAdmin: null,
    logLevel: "info",
  },
  database,
  logger,
  // The bench signs in its clients from one address.
  throttle: { windowMs: 60_000, perAccount: 1_000, perAddress: 10_000 },
});
const server = app.listen(0, "127.0.0.1", () => {
  process.send?.({ type: "listening", port: (server.address() as AddressInfo).port });
});

process.on("message", async (message: { type: string }) => {
  if (message.type === "reset") {
    counts.clear();
    samples.clear();
    process.send?.({ type: "reset" });
  } else if (message.type === "counts") {
    process.send?.({ type: "counts", counts: Object.fromEntries(counts), backends: await backendPids() });
  } else if (message.type === "calibrate") {
    process.send?.({ type: "calibrated", cpu: await calibrate() });
  } else if (message.type === "stop") {
    server.closeAllConnections();
    server.close();
    await database.close();
    process.exit(0);
  }
});

/** The server processes of the app's connections (each answers on whichever connection is free). */
async function backendPids(): Promise<number[]> {
  const rows = await unsafe(
    "select pid from pg_stat_activity where datname = current_database() and application_name = 'roster'",
  );
  return rows.map((r) => Number(r.pid));
}

/**
 * Server CPU per statement of each kind: the kept samples, replayed one at a time on one
 * connection (prepared, as the app's are) until it has used a second of CPU or 3,000 statements.
 */
async function calibrate(): Promise<Record<string, { ms: number; runs: number }>> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const result: Record<string, { ms: number; runs: number }> = {};
  try {
    const [row] = await sql`select pg_backend_pid() as pid`;
    const pid = Number(row?.pid);
    for (const [kind, kept] of samples) {
      if (kept.length === 0) continue;
      for (const s of kept) await sql.unsafe(s.text, s.params as never, { prepare: true });
      const before = processCpuMs(pid);
      const started = performance.now();
      let runs = 0;
      while (runs < 3_000 && (runs < kept.length || processCpuMs(pid) - before < 1_000)) {
        const s = kept[runs % kept.length] as Sample;
        await sql.unsafe(s.text, s.params as never, { prepare: true });
        runs += 1;
        if (performance.now() - started > 20_000) break;
      }
      result[kind] = { ms: (processCpuMs(pid) - before) / runs, runs };
    }
  } finally {
    await sql.end();
  }
  return result;
}

/** utime + stime of a process, in ms (clock ticks of 10 ms). */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
