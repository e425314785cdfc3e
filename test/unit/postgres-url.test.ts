import assert from "node:assert/strict";
import { test } from "node:test";
import { connectPostgres, openDatabase, postgresConnection } from "../../src/db/client.ts";

test("a libpq-style URL naming a Unix socket becomes postgres.js's host option", () => {
  assert.deepEqual(postgresConnection("postgres://roster@localhost/roster?host=/var/run/postgresql"), {
    url: "postgres://roster@localhost/roster",
    host: "/var/run/postgresql",
  });
  assert.deepEqual(postgresConnection("postgresql://roster@%2Fvar%2Frun%2Fpostgresql/roster"), {
    url: "postgresql://roster@localhost/roster",
    host: "/var/run/postgresql",
  });
  assert.deepEqual(postgresConnection("postgres:///roster?host=/run/pg&port=5433&application_name=x"), {
    url: "postgres:///roster?application_name=x",
    host: "/run/pg",
    port: 5433,
  });
  // Other URLs are left as they are.
  const plain = "postgres://roster:s%40cret@db.example.internal:6432/roster?sslmode=require";
  assert.deepEqual(postgresConnection(plain), { url: plain });
});

const serverUrl = process.env.DATABASE_URL;

test("DATABASE_URL may reach the server through its Unix socket", {
  skip: !serverUrl && "needs a PostgreSQL server (DATABASE_URL)",
}, async (t) => {
  const tcp = connectPostgres(serverUrl ?? "", { max: 1, onnotice: () => {} });
  const [row] = await tcp`select current_setting('unix_socket_directories') as dirs`;
  await tcp.end();
  const directory = String(row?.dirs ?? "")
    .split(",")
    .map((dir) => dir.trim())
    .find((dir) => dir.startsWith("/"));
  if (!directory) {
    t.skip("the server has no Unix socket");
    return;
  }
  // The same server, user, password and database, through the socket.
  const socketUrl = new URL(serverUrl ?? "");
  const port = socketUrl.port || "5432";
  socketUrl.hostname = "localhost";
  socketUrl.port = "";
  socketUrl.searchParams.set("host", directory);
  socketUrl.searchParams.set("port", port);
  const database = await openDatabase({ databaseUrl: socketUrl.toString(), dataDir: null });
  try {
    const { rows } = await database.pool.query("select inet_server_addr() as address, 1 + 1 as two");
    // A connection through a Unix socket has no server address.
    assert.deepEqual(rows, [{ address: null, two: 2 }]);
  } finally {
    await database.close();
  }
});
