import { randomBytes } from "node:crypto";
import { connectPostgres, type Database, openDatabase } from "../../src/db/client.ts";
import { ensurePredefinedRoles } from "../../src/services/permissions.ts";

export interface TestDatabase extends Database {
  /** Closes the connection and, on a PostgreSQL server, drops the database made for the test. */
  destroy(): Promise<void>;
}

/**
 * A fresh, migrated database with the predefined roles: an in-memory PGlite by default, or a new
 * database on the server named by DATABASE_URL (dropped again by `destroy`).
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    const database = await openDatabase({ databaseUrl: null, dataDir: null });
    await prepare(database);
    return { ...database, destroy: () => database.close() };
  }
  const name = `roster_test_${randomBytes(6).toString("hex")}`;
  const admin = connectPostgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ databaseUrl: url.toString(), dataDir: null });
  await prepare(database);
  return {
    ...database,
    async destroy() {
      await database.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

async function prepare(database: Database): Promise<void> {
  await database.migrate();
  await ensurePredefinedRoles(database.db);
}
