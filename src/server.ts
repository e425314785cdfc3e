import { createServer, type RequestListener, type Server } from "node:http";
import type { Logger } from "pino";
import { type AppDeps, createApp } from "./app.ts";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import { type Database, isConnectionLost, openDatabase } from "./db/client.ts";
import { startHousekeeping } from "./housekeeping.ts";
import { createLogger } from "./logger.ts";
import { bootstrapAdmin, needsSetup } from "./services/auth.ts";
import { createDirectoryAuthenticator } from "./services/directory-sign-in.ts";
import { createImportWorker } from "./services/import/worker.ts";
import { ensurePredefinedRoles } from "./services/permissions.ts";
import { createSecretBox } from "./services/secrets.ts";

export interface Running {
  url: string;
  config: Config;
  database: Database;
  server: Server;
  stop(): Promise<void>;
}

/** Why Roster could not start, in one line an operator can act on. */
export class StartupError extends Error {}

/** Configuration → database → migrations → predefined data → listen → background work. */
export async function start(
  env: NodeJS.ProcessEnv = process.env,
  extra: Partial<AppDeps> = {},
): Promise<Running> {
  const config = loadConfig(env);
  // A terminal in development gets short lines; production (and tests) keep JSON for collectors.
  const logger = createLogger(config.logLevel, { readable: config.env === "development" });
  // The port is taken first, so a port in use fails at once; until the app is ready it answers 503.
  let handle: RequestListener = (_req, res) => {
    res.writeHead(503, { "Content-Type": "text/plain; charset=utf-8", "Retry-After": "2" });
    res.end("Roster is starting. Try again in a moment.\n");
  };
  const server = await listen(
    createServer((req, res) => handle(req, res)),
    config,
  );
  let database: Database | undefined;
  try {
    database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    await prepareDatabase(database, config);
    const db = database.db;
    const secretBox = createSecretBox(config.encryptionKey);
    const externalAuth = createDirectoryAuthenticator({
      db,
      secretBox,
      logger: logger.child({ component: "ldap" }),
    });
    const importWorker = createImportWorker({
      db,
      secretBox,
      logger: logger.child({ component: "import" }),
    });
    handle = createApp({ config, database, logger, externalAuth, importWorker, ...extra });
    // Background work starts only once the server listens: an instance that can't serve does none.
    const stopHousekeeping = startHousekeeping(db, logger);
    importWorker.start();
    const opened = database;
    return await announce(server, config, opened, logger, async () => {
      stopHousekeeping();
      await importWorker.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await opened.close();
    });
  } catch (err) {
    server.close();
    await database?.close().catch(() => {});
    throw err;
  }
}

async function prepareDatabase(database: Database, config: Config): Promise<void> {
  try {
    await database.migrate();
    await ensurePredefinedRoles(database.db);
  } catch (err) {
    const where = database.kind === "pglite" ? `the embedded database in ${config.dataDir}` : "the database";
    const cause = isConnectionLost(err)
      ? `could not be reached (${connectionCode(err)}): check DATABASE_URL and that the server is running`
      : `could not be migrated: ${firstLine(err)}`;
    throw new StartupError(`Roster could not start: ${where} ${cause}.`);
  }
  await bootstrapAdmin(database.db, config.bootstrapAdmin);
}

function listen(server: Server, config: Config): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.once("listening", () => resolve(server));
    server.once("error", (err: NodeJS.ErrnoException) => {
      const where = `${config.host}:${config.port}`;
      const reason =
        err.code === "EADDRINUSE"
          ? `${where} is already in use by another process: stop it, or set PORT (or HOST) to a free one`
          : err.code === "EACCES"
            ? `listening on ${where} is not permitted: choose a PORT above 1023, or run with the right to bind it`
            : err.code === "EADDRNOTAVAIL"
              ? `${config.host} is not an address of this machine: set HOST to one of its addresses`
              : `could not listen on ${where} (${err.code ?? err.message})`;
      reject(new StartupError(`Roster could not start: ${reason}.`));
    });
    server.listen(config.port, config.host);
  });
}

async function announce(
  server: Server,
  config: Config,
  database: Database,
  logger: Logger,
  stop: () => Promise<void>,
): Promise<Running> {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  const storage = database.kind === "pglite" ? `embedded database in ${config.dataDir}` : "PostgreSQL";
  logger.info({ url, storage }, "Roster is listening");
  if (await needsSetup(database.db)) {
    logger.info(`No user exists yet: open ${url}/setup to create the first administrator`);
  }
  return { url, config, database, server, stop };
}

function connectionCode(err: unknown): string {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 4; depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return "no answer";
}

function firstLine(err: unknown): string {
  const cause = (err as { cause?: unknown })?.cause;
  const text = cause instanceof Error ? cause.message : err instanceof Error ? err.message : String(err);
  return text.split("\n")[0]?.slice(0, 300) ?? "";
}

/**
 * The last resort for an error no `await` caught. A lost database connection is survivable (the
 * pool opens a new one; the work that used it has already failed on its own), so it is logged and
 * Roster keeps serving. Anything else leaves the process in an unknown state: it is logged on one
 * line and the process exits, for its supervisor to restart it.
 */
export function handleUncaught(err: unknown, logger: Logger, exit: (code: number) => void): void {
  if (isConnectionLost(err)) {
    logger.warn({ code: (err as { code?: string }).code }, "database connection lost; Roster keeps serving");
    return;
  }
  logger.fatal({ err }, `Roster stopped on an unexpected error: ${describe(err)}`);
  exit(1);
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

const isEntry = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isEntry) {
  const fatalLogger = createLogger("info");
  const onUncaught = (err: unknown) => handleUncaught(err, fatalLogger, (code) => process.exit(code));
  process.on("uncaughtException", onUncaught);
  process.on("unhandledRejection", onUncaught);
  start().then(
    (running) => {
      const shutdown = () => {
        running.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once("SIGINT", shutdown);
      process.once("SIGTERM", shutdown);
    },
    (err: unknown) => {
      if (err instanceof StartupError) {
        console.error(err.message);
      } else if (err instanceof ConfigError) {
        // One line, for a supervisor's log: "…: invalid configuration: A: …; B: …".
        const [head = "", ...settings] = err.message.split("\n").map((line) => line.trim());
        console.error(`Roster could not start: ${head.toLowerCase()} ${settings.filter(Boolean).join("; ")}`);
      } else {
        console.error("Roster could not start:", err);
      }
      process.exit(1);
    },
  );
}
