/**
 * The Users list under load: CONNECTIONS signed-in clients (each its own session) search the list
 * for DURATION seconds against USERS users, with autocannon, while Roster serves from a child
 * process (load-server.ts). Prints requests/s, latency p50/p99, errors and non-2xx answers, the
 * PostgreSQL CPU per request (utime + stime of the server processes of the bench database, from
 * /proc), the statements per request by kind, and each kind's own server CPU (replayed alone).
 *
 *   npm run bench:load
 *   USERS=20000 DURATION=20 CONNECTIONS=50 npm run bench:load
 *   BENCH_BASELINE_ROOT=/tmp/roster-before npm run bench:load   (that tree first, then this one)
 *
 * PostgreSQL only: DATABASE_URL, or BENCH_POSTGRES_URL, or postgres://postgres@127.0.0.1:5432/postgres.
 * Exits non-zero when a request failed (an error, a timeout or an answer other than 2xx).
 */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { connectPostgres } from "../../src/db/client.ts";
import { roleAssignments, roles, users } from "../../src/db/schema.ts";
import { nameKey, userSearchText } from "../../src/services/names.ts";
import { hashPassword } from "../../src/services/passwords.ts";
import { createTestDatabase } from "../helpers/database.ts";
import { seedUsersAndGroups } from "./seed.ts";

const USER_COUNT = Number(process.env.USERS ?? 100_000);
const GROUP_COUNT = Number(process.env.GROUPS ?? 2_000);
const DURATION = Number(process.env.DURATION ?? 60);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const PASSWORD = "load bench password";
const here = path.dirname(fileURLToPath(import.meta.url));

process.env.DATABASE_URL ||= process.env.BENCH_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";

/** What a person types into the search box: names and their beginnings, a full name, no match. */
const SEARCHES = [
  ...[
    "ada",
    "anders",
    "chloé",
    "fatima",
    "ingrid",
    "lucía",
    "mohammed",
    "søren",
    "thandiwe",
    "zoë",
    "andersson",
    "fernández",
    "kowalski",
    "müller",
    "nakamura",
    "okafor",
    "schmidt",
    "wójcik",
    "yamamoto",
    "ólafsson",
  ].flatMap((name) => [name.slice(0, 3), name.slice(0, 4), name.slice(0, 5), name]),
  "ada abbott",
  "maya kim",
  "grace lee",
  "kim",
  "lee",
  "chen",
  "wang",
  "hugo",
  "qqqzzz",
  "xylophone",
];

const database = await createTestDatabase();
const [{ name: databaseName } = { name: "" }] = (
  await database.pool.query("select current_database() as name")
).rows as { name: string }[];
const monitor = connectPostgres(benchUrl(databaseName), { max: 1, onnotice: () => {} });
let failed = false;

try {
  const seeded = await seedUsersAndGroups(database.db, USER_COUNT, GROUP_COUNT);
  await createAdmins(CONNECTIONS);
  console.log(
    `PostgreSQL ${databaseName}: ${USER_COUNT} users, ${GROUP_COUNT} groups seeded in ${seeded} ms; ` +
      `${CONNECTIONS} clients, ${DURATION} s, ${SEARCHES.length} search terms\n`,
  );
  const [row] = await monitor`select pg_backend_pid() as pid`;
  const monitorPid = Number(row?.pid);

  const roots: [string, string][] = [];
  if (process.env.BENCH_BASELINE_ROOT) roots.push(["before", path.resolve(process.env.BENCH_BASELINE_ROOT)]);
  roots.push([roots.length > 0 ? "after" : "this tree", path.resolve(here, "../..")]);
  const lines: string[] = [];
  for (const [label, root] of roots) {
    const outcome = await measure(label, root, monitorPid);
    lines.push(outcome.summary);
    failed ||= outcome.failed;
  }
  console.log(`\n== summary (${USER_COUNT} users, ${CONNECTIONS} clients, ${DURATION} s) ==`);
  for (const line of lines) console.log(line);
} finally {
  await monitor.end();
  await database.destroy();
}
if (failed) process.exitCode = 1;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function benchUrl(name: string): string {
  const url = new URL(process.env.DATABASE_URL ?? "");
  url.pathname = `/${name}`;
  return url.toString();
}

/** One Server Administrator per client, `load0`, `load1`, …, sharing one password hash. */
async function createAdmins(count: number): Promise<void> {
  const passwordHash = await hashPassword(PASSWORD);
  const created = await database.db
    .insert(users)
    .values(
      Array.from({ length: count }, (_, i) => ({
        kind: "internal" as const,
        username: `load${i}`,
        usernameKey: nameKey(`load${i}`),
        fullName: `Load Client ${i}`,
        email: "",
        searchText: userSearchText(`load${i}`, `Load Client ${i}`, ""),
        passwordHash,
      })),
    )
    .returning({ id: users.id });
  const serverAdmin = (await database.db.select().from(roles)).find((r) => r.key === "server_admin");
  if (!serverAdmin) throw new Error("no predefined roles");
  await database.db
    .insert(roleAssignments)
    .values(created.map((u) => ({ roleId: serverAdmin.id, userId: u.id })));
}

interface Outcome {
  summary: string;
  failed: boolean;
}

async function measure(label: string, root: string, monitorPid: number): Promise<Outcome> {
  console.log(`== ${label}: ${root} ==`);
  const child = fork(path.join(here, "load-server.ts"), [], {
    execArgv: ["--heap-growing-percent=50", "--import", "tsx"],
    env: { ...process.env, BENCH_DATABASE_URL: benchUrl(databaseName), BENCH_APP_ROOT: root },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  try {
    const { port } = (await reply(child, null, "listening")) as { port: number };
    const url = `http://127.0.0.1:${port}`;
    const cookies = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => signIn(url, `load${i}`)));
    // A short warm-up: connections opened, statements prepared, caches filled.
    await drive(url, cookies, 5);
    await reply(child, { type: "reset" }, "reset");
    // An idle server process reports its statistics within 10 s (PGSTAT_IDLE_INTERVAL).
    await sleep(11_000);
    const statsBefore = await databaseStats();
    const cpuBefore = backendCpu(monitorPid);
    // Sampled during the run too, so a process that ends meanwhile (an autovacuum worker) counts.
    const cpuAfter = new Map<number, number>();
    const sample = () => {
      for (const [pid, ms] of backendCpu(monitorPid)) cpuAfter.set(pid, ms);
    };
    const sampler = setInterval(sample, 250);
    const result = await drive(url, cookies, DURATION);
    clearInterval(sampler);
    sample();
    const { counts } = (await reply(child, { type: "counts" }, "counts")) as {
      counts: Record<string, number>;
    };
    await sleep(11_000);
    const statsAfter = await databaseStats();
    const { cpu: perKind } = (await reply(child, { type: "calibrate" }, "calibrated")) as {
      cpu: Record<string, { ms: number; runs: number }>;
    };
    child.send({ type: "stop" });
    await once(child, "exit");

    const requests = result.requests.total;
    const bad = result.errors + result.timeouts + result.non2xx;
    const pgMs = [...new Set([...cpuBefore.keys(), ...cpuAfter.keys()])].reduce(
      (sum, pid) => sum + ((cpuAfter.get(pid) ?? 0) - (cpuBefore.get(pid) ?? 0)),
      0,
    );
    const statements = Object.values(counts).reduce((a, b) => a + b, 0);
    console.log(
      `requests ${requests}, ${result.requests.average.toFixed(1)} req/s; latency p50 ${result.latency.p50} ms, ` +
        `p99 ${result.latency.p99} ms; errors ${result.errors}, timeouts ${result.timeouts}, non-2xx ${result.non2xx}`,
    );
    console.log(
      `PostgreSQL CPU ${pgMs} ms: ${(pgMs / requests).toFixed(2)} ms per request; ` +
        `${(statements / requests).toFixed(2)} statements per request (${((statsAfter.xacts - statsBefore.xacts) / requests).toFixed(2)} transactions)`,
    );
    console.log("  statements per request by kind, and each kind's server CPU replayed alone:");
    for (const [kind, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
      const cpu = perKind[kind];
      console.log(
        `    ${kind.padEnd(28)} ${(n / requests).toFixed(3).padStart(7)} per request` +
          (cpu ? `  ${cpu.ms.toFixed(3).padStart(7)} ms CPU each (${cpu.runs} runs)` : ""),
      );
    }
    console.log("  table activity per request (scans, rows read, rows written):");
    for (const [table, after] of statsAfter.tables) {
      const before = statsBefore.tables.get(table) ?? [0, 0, 0, 0, 0];
      const d = after.map((v, i) => (v - (before[i] ?? 0)) / requests);
      if (d.every((v) => v < 0.001)) continue;
      console.log(
        `    ${table.padEnd(18)} seq ${d[0]?.toFixed(2)} (${d[1]?.toFixed(0)} rows)  idx ${d[2]?.toFixed(2)} ` +
          `(${d[3]?.toFixed(0)} rows)  written ${d[4]?.toFixed(2)}`,
      );
    }
    console.log();
    return {
      summary:
        `${label.padEnd(10)} ${result.requests.average.toFixed(1).padStart(7)} req/s  p50 ${String(result.latency.p50).padStart(4)} ms  ` +
        `p99 ${String(result.latency.p99).padStart(5)} ms  errors+non-2xx ${bad}  ` +
        `PG CPU ${(pgMs / requests).toFixed(2)} ms/request  ${(statements / requests).toFixed(2)} statements/request`,
      failed: bad > 0,
    };
  } finally {
    if (child.exitCode === null) child.kill();
  }
}

/** Sends a message to the child (or none) and waits for its answer of the given type. */
function reply(child: ChildProcess, message: object | null, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Record<string, unknown>) => {
      if (m?.type !== type) return;
      child.off("message", onMessage);
      child.off("exit", onExit);
      resolve(m);
    };
    const onExit = (code: number | null) => reject(new Error(`the server process exited (${code})`));
    child.on("message", onMessage);
    child.once("exit", onExit);
    if (message) child.send(message);
  });
}

/** Signs in as a user; the session cookie, with the CSRF token already in the session. */
async function signIn(url: string, username: string): Promise<string> {
  const page = await fetch(`${url}/login`);
  let cookie = cookieOf(page) ?? "";
  const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? "";
  const login = await fetch(`${url}/login`, {
    method: "POST",
    redirect: "manual",
    headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ _csrf: token, username, password: PASSWORD }),
  });
  if (login.status !== 303) throw new Error(`sign-in as ${username} answered ${login.status}`);
  cookie = cookieOf(login) ?? cookie;
  // The first page after signing in stores the session's CSRF token; later pages leave it unchanged.
  const home = await fetch(`${url}/`, { headers: { cookie }, redirect: "manual" });
  if (home.status !== 200) throw new Error(`the start page answered ${home.status} for ${username}`);
  return cookieOf(home) ?? cookie;
}

function cookieOf(res: Response): string | null {
  const header = res.headers.getSetCookie().find((c) => c.startsWith("roster.sid="));
  return header ? (header.split(";")[0] ?? null) : null;
}

/** autocannon: each connection with its own client's cookie, the search terms taken in turn. */
async function drive(url: string, cookies: string[], seconds: number) {
  let client = 0;
  let request = 0;
  const searchAs = (cookie: string) => ({
    method: "GET" as const,
    setupRequest: (req: autocannon.Request) => {
      const q = SEARCHES[request++ % SEARCHES.length] ?? "";
      return { ...req, path: `/users?q=${encodeURIComponent(q)}`, headers: { cookie } };
    },
  });
  return autocannon({
    url,
    connections: cookies.length,
    duration: seconds,
    timeout: 10,
    // Each connection gets requests of its own: the ones given here are shared by all of them.
    setupClient: (c) => c.setRequests([searchAs(cookies[client++ % cookies.length] ?? "")]),
    requests: [searchAs(cookies[0] ?? "")],
  });
}

/** utime + stime (ms) of each server process of the bench database (backends, autovacuum), but the monitor's. */
function backendCpu(exclude: number): Map<number, number> {
  const cpu = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === exclude) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      // "postgres: 15/main: postgres <database> 127.0.0.1(…) idle", "…: autovacuum worker <database>"
      if (!cmdline.startsWith("postgres") || !cmdline.split(/[\s\0]+/).includes(databaseName)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      cpu.set(Number(entry), (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {
      // ended meanwhile
    }
  }
  return cpu;
}

/** Transactions of the bench database, and per table: seq scans, rows they read, index scans, rows fetched, rows written. */
async function databaseStats() {
  const [db] = await monitor`select xact_commit + xact_rollback as xacts from pg_stat_database
    where datname = current_database()`;
  const rows = await monitor`select relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) as idx_scan,
    coalesce(idx_tup_fetch, 0) as idx_tup_fetch, n_tup_ins + n_tup_upd + n_tup_del as written
    from pg_stat_user_tables`;
  return {
    xacts: Number(db?.xacts ?? 0),
    tables: new Map(
      rows.map((r) => [
        String(r.relname),
        [r.seq_scan, r.seq_tup_read, r.idx_scan, r.idx_tup_fetch, r.written].map(Number),
      ]),
    ),
  };
}
