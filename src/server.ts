import type { Server } from "node:http";
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

/** Configuration → database → migrations → predefined data → listen. */
export async function start(
  env: NodeJS.ProcessEnv = process.env,
  extra: Partial<AppDeps> = {},
): Promise<Running> {
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel);
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  await database.migrate();
  await ensurePredefinedRoles(database.db);
  await bootstrapAdmin(database.db, config.bootstrapAdmin);
  const stopHousekeeping = startHousekeeping(database.db, logger);

  const secretBox = createSecretBox(config.encryptionKey);
  const externalAuth = createDirectoryAuthenticator({
    db: database.db,
    secretBox,
    logger: logger.child({ component: "ldap" }),
  });
  const importWorker = createImportWorker({
    db: database.db,
    secretBox,
    logger: logger.child({ component: "import" }),
  });
  importWorker.start();
  const app = createApp({ config, database, logger, externalAuth, importWorker, ...extra });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  const storage = database.kind === "pglite" ? `embedded database in ${config.dataDir}` : "PostgreSQL";
  logger.info({ url, storage }, "Roster is listening");
  if (await needsSetup(database.db)) {
    logger.info(`No user exists yet: open ${url}/setup to create the first administrator`);
  }

  return {
    url,
    config,
    database,
    server,
    async stop() {
      stopHousekeeping();
      await importWorker.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await database.close();
    },
  };
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
      if (err instanceof ConfigError) {
        console.error(err.message);
      } else {
        console.error("Roster could not start:", err);
      }
      process.exit(1);
    },
  );
}
