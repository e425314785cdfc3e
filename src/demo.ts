import { eq, sql } from "drizzle-orm";
import type { Db } from "./db/client.ts";
import { directories } from "./db/schema.ts";
import { readFixture } from "./dev/fixtures.ts";
import { isSlapdAvailable, type SlapdServer, startSlapd } from "./dev/slapd.ts";
import { presetMapping } from "./ldap/presets.ts";
import { start } from "./server.ts";
import { needsSetup } from "./services/auth.ts";
import { createSecretBox } from "./services/secrets.ts";

const DEMO_DIRECTORY = "Demo directory (OpenLDAP)";

/**
 * `npm run demo`: a throwaway OpenLDAP loaded with test/fixtures/demo.ldif, and Roster on the
 * embedded database in data/demo with that server already configured as a directory.
 */
async function main(): Promise<void> {
  if (!isSlapdAvailable()) {
    console.error("slapd is not installed. Install it with: apt-get install -y slapd ldap-utils");
    process.exit(1);
  }
  const ldap = await startSlapd({ ldif: await readFixture("demo.ldif"), contentSync: true });
  const env = { ...process.env, ROSTER_DATA_DIR: process.env.ROSTER_DATA_DIR ?? "data/demo" };
  const running = await start(env).catch(async (err: unknown) => {
    await ldap.stop();
    throw err;
  });
  await configureDemoDirectory(running.database.db, createSecretBox(running.config.encryptionKey), ldap);

  const setup = (await needsSetup(running.database.db)) ? `${running.url}/setup` : null;
  console.log(
    [
      "",
      `  Roster is running at ${running.url}`,
      setup
        ? `  First visit: ${setup} creates your administrator account.`
        : "  Sign in with your administrator account.",
      `  Demo directory: ${ldap.url} (${ldap.baseDn}) — 34 people, 7 groups; their password is roster-demo`,
      "  Stop with Ctrl+C.",
      "",
    ].join("\n"),
  );

  const stop = async () => {
    await running.stop().catch(() => {});
    await ldap.stop().catch(() => {});
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

/** The demo slapd gets a new port and service password each run: keep the directory pointing at it. */
async function configureDemoDirectory(db: Db, box: ReturnType<typeof createSecretBox>, ldap: SlapdServer) {
  const connection = {
    urls: [ldap.url],
    baseDn: ldap.baseDn,
    bindDn: ldap.serviceDn,
    bindPasswordEncrypted: box.encrypt(ldap.servicePassword),
  };
  const [existing] = await db
    .select({ id: directories.id })
    .from(directories)
    .where(eq(directories.name, DEMO_DIRECTORY));
  if (existing) {
    await db.update(directories).set(connection).where(eq(directories.id, existing.id));
    return;
  }
  const [{ next } = { next: 1 }] = await db
    .select({ next: sql<number>`coalesce(max(${directories.position}), 0) + 1` })
    .from(directories);
  await db.insert(directories).values({
    name: DEMO_DIRECTORY,
    position: Number(next),
    preset: "openldap",
    ...presetMapping("openldap"),
    ...connection,
  });
}

main().catch((err: unknown) => {
  console.error("The demo could not start:", err);
  process.exit(1);
});
