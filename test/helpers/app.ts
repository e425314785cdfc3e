import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { eq } from "drizzle-orm";
import { pino } from "pino";
import supertest from "supertest";
import { type AppDeps, createApp } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import type { Db } from "../../src/db/client.ts";
import { roleAssignments, roles } from "../../src/db/schema.ts";
import { insertInternalUser, type User } from "../../src/services/auth.ts";
import type { PredefinedRoleKey } from "../../src/services/permissions.ts";
import { createTestDatabase, type TestDatabase } from "./database.ts";

export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    env: "test",
    host: "127.0.0.1",
    port: 0,
    databaseUrl: null,
    dataDir: "",
    sessionSecret: randomBytes(32).toString("hex"),
    encryptionKey: randomBytes(32),
    sessionIdleMinutes: 30,
    secureCookies: false,
    trustProxy: false,
    bootstrapAdmin: null,
    logLevel: "info",
    ...overrides,
  };
}

export interface TestApp {
  app: ReturnType<typeof createApp>;
  database: TestDatabase;
  db: Db;
  config: Config;
  /** Every log line the app wrote, as text: for asserting that no secret is ever logged. */
  logs: string[];
  close(): Promise<void>;
}

export async function createTestApp(
  options: { config?: Partial<Config>; deps?: Partial<AppDeps>; database?: TestDatabase } = {},
): Promise<TestApp> {
  const database = options.database ?? (await createTestDatabase());
  const config = testConfig(options.config);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level: "debug" }, sink);
  const app = createApp({ config, database, logger, ...options.deps });
  return {
    app,
    database,
    db: database.db,
    config,
    logs,
    close: () => (options.database ? Promise.resolve() : database.destroy()),
  };
}

export async function createUser(
  db: Db,
  input: { username: string; password?: string; fullName?: string; role?: PredefinedRoleKey },
): Promise<User> {
  const user = await insertInternalUser(db, {
    username: input.username,
    password: input.password ?? "correct horse battery staple",
    fullName: input.fullName,
  });
  if (input.role) {
    const [role] = await db.select().from(roles).where(eq(roles.key, input.role));
    if (!role) throw new Error(`no role ${input.role}`);
    await db.insert(roleAssignments).values({ roleId: role.id, userId: user.id });
  }
  return user;
}

/** The CSRF token in a page's forms. */
export function csrfTokenOf(html: string): string {
  const match = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!match?.[1]) throw new Error("no CSRF token in page");
  return match[1];
}

/** A supertest agent (keeps cookies) signed in as the given user. */
export async function signedInAgent(
  app: TestApp["app"],
  username: string,
  password = "correct horse battery staple",
) {
  const agent = supertest.agent(app);
  const page = await agent.get("/login").expect(200);
  await agent
    .post("/login")
    .type("form")
    .send({ username, password, _csrf: csrfTokenOf(page.text) })
    .expect(303);
  const home = await agent.get("/");
  return { agent, csrf: csrfTokenOf(home.text) };
}

export type SignedInAgent = Awaited<ReturnType<typeof signedInAgent>>;

/** Where most console tests start: an app with one server administrator, `admin`, signed in. */
export async function createTestAppWithAdmin(): Promise<{ t: TestApp; admin: SignedInAgent }> {
  const t = await createTestApp();
  await createUser(t.db, { username: "admin", role: "server_admin" });
  return { t, admin: await signedInAgent(t.app, "admin") };
}

/** One user a role, for the permission tests: admin, manager (user manager), viewer, and nobody (no role). */
export async function createRoleUsers(db: Db): Promise<void> {
  await createUser(db, { username: "admin", role: "server_admin" });
  await createUser(db, { username: "manager", role: "user_manager" });
  await createUser(db, { username: "viewer", role: "viewer" });
  await createUser(db, { username: "nobody" });
}

/** Serves an Express app on a free loopback port (for a browser, or a client that must see the response as it arrives). */
export async function serve(app: { listen: (port: number, host: string, cb: () => void) => Server }) {
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
