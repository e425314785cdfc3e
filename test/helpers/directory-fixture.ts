/**
 * A throwaway slapd with a few people and groups, configured as a Roster directory, and an admin
 * connection (as the rootdn) to change entries while a test runs.
 */
import { Attribute, Change, Client } from "ldapts";
import type { Db } from "../../src/db/client.ts";
import { directories } from "../../src/db/schema.ts";
import { groupEntry, ldifEntry } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { withDirectory } from "../../src/ldap/client.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import { type Directory, toLoaded } from "../../src/services/directories.ts";
import type { SecretBox } from "../../src/services/secrets.ts";
import { syncUserEntry } from "../../src/services/sync/entries.ts";
import { findUserEntry } from "../../src/services/sync/find.ts";

export const BASE = "dc=example,dc=test";
export const people = (uid: string) => `uid=${uid},ou=people,${BASE}`;

function person(uid: string, cn: string, password: string, extra: Record<string, string> = {}): string {
  return ldifEntry(people(uid), {
    objectClass: "inetOrgPerson",
    uid,
    cn,
    sn: cn.split(" ").pop() ?? cn,
    mail: `${uid.replace(/[^a-z0-9.]/gi, "")}@example.test`,
    userPassword: password,
    ...extra,
  });
}

/** alice, bob, carol, ‘twin’ twice (two entries with uid=twin), zoë; groups staff ⊃ admins. */
export const FIXTURE = [
  person("alice", "Alice Liddell", "alice-password", {
    departmentNumber: "Wonderland",
    telephoneNumber: "+1 555 0100",
  }),
  person("bob", "Bob Builder", "bob-password"),
  person("carol", "Carol Danvers", "carol-password"),
  person("zoë", "Zoë Schmidt", "zoe-password"),
  person("twin", "Twin One", "twin-password"),
  ldifEntry(`cn=Twin Two,ou=people,${BASE}`, {
    objectClass: "inetOrgPerson",
    uid: "twin",
    cn: "Twin Two",
    sn: "Two",
    userPassword: "twin-password",
  }),
  groupEntry({
    cn: "admins",
    members: [people("bob")],
    description: "Runs things",
    memberOf: [`cn=staff,ou=groups,${BASE}`],
  }),
  groupEntry({
    cn: "staff",
    members: [people("alice"), `cn=admins,ou=groups,${BASE}`],
    description: "Everyone",
  }),
].join("");

export interface DirectoryFixture {
  server: SlapdServer;
  directory: Directory;
  admin: Client;
  stop(): Promise<void>;
}

export async function startDirectory(
  db: Db,
  secretBox: SecretBox,
  name = "Test LDAP",
): Promise<DirectoryFixture> {
  const server = await startSlapd({ ldif: FIXTURE });
  const [directory] = await db
    .insert(directories)
    .values({
      name,
      position: 1,
      ...presetMapping("openldap"),
      urls: [server.url],
      baseDn: server.baseDn,
      bindDn: server.serviceDn,
      bindPasswordEncrypted: secretBox.encrypt(server.servicePassword),
      connectTimeoutMs: 2000,
      operationTimeoutMs: 5000,
    })
    .returning();
  if (!directory) throw new Error("no directory row");
  const admin = new Client({ url: server.url });
  await admin.bind(server.rootDn, server.rootPassword);
  return {
    server,
    directory,
    admin,
    async stop() {
      await admin.unbind().catch(() => {});
      await server.stop();
    },
  };
}

export async function replaceAttribute(admin: Client, dn: string, type: string, values: string[]) {
  await admin.modify(dn, new Change({ operation: "replace", modification: new Attribute({ type, values }) }));
}

/** Imports one user the way an import would (by username), for tests that need an external user. */
export async function importUser(db: Db, secretBox: SecretBox, fixture: DirectoryFixture, username: string) {
  const loaded = toLoaded(fixture.directory, secretBox);
  const result = await withDirectory(loaded.connection, async (session) => {
    const found = await findUserEntry(session, loaded.mapping, { username });
    if (!found.ok) throw new Error(`no entry for ${username}`);
    return syncUserEntry(db, fixture.directory.id, found.entry);
  });
  if (!result.ok) throw new Error(result.error.message);
  if (result.value.outcome === "conflict") throw new Error(result.value.reason);
  return result.value.user;
}
