/** Shared set-up for the LDAP layer's integration tests. */
import { isSlapdAvailable, type SlapdServer } from "../../src/dev/slapd.ts";
import { presetMapping } from "../../src/ldap/presets.ts";
import type { DirectoryConnection, DirectoryMapping } from "../../src/ldap/types.ts";

/** A connection as Roster would configure it: the read-only service account, plain ldap://. */
export function connectionTo(
  server: SlapdServer,
  overrides: Partial<DirectoryConnection> = {},
): DirectoryConnection {
  return {
    urls: [server.url],
    startTls: false,
    caCertPem: null,
    verifyCertificate: true,
    connectTimeoutMs: 2000,
    operationTimeoutMs: 10_000,
    bindDn: server.serviceDn,
    bindPassword: server.servicePassword,
    baseDn: server.baseDn,
    ...overrides,
  };
}

export function openldapMapping(overrides: Partial<DirectoryMapping> = {}): DirectoryMapping {
  return { ...presetMapping("openldap"), ...overrides };
}

/** A 127.0.0.1 port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        address && typeof address === "object" ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/** Collects an async iterable of pages into one array. */
export async function collect<T>(pages: AsyncIterable<T[]>): Promise<T[]> {
  const all: T[] = [];
  for await (const page of pages) all.push(...page);
  return all;
}

/** Why a test that needs slapd is skipped on this machine; false where slapd is installed. */
export const skipWithoutSlapd =
  !isSlapdAvailable() && "slapd is not installed (apt-get install slapd ldap-utils)";
