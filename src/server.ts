import type { Server } from "node:http";
import { type AppDeps, createApp } from "./app.ts";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import { type Database, openDatabase } from "./db/client.ts";
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

const isEntry = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isEntry) {
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
