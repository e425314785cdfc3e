import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { eq } from "drizzle-orm";
import { importRuns, users } from "../../src/db/schema.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
import { tokenFor } from "../api/support.ts";
import { serve } from "../helpers/app.ts";
import { closeImportTestBed, type ImportTestBed, openImportTestBed } from "../web/import-support.ts";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/roster.js");
const BIG = 60;

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

function roster(args: string[], env: Record<string, string>): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 90_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("the roster command line against a running Roster and slapd", () => {
  let bed: ImportTestBed;
  let server: Awaited<ReturnType<typeof serve>>;
  let env: Record<string, string>;
  const run = (...args: string[]) => roster(args, env);

  before(async () => {
    bed = await openImportTestBed({ bigGroupSize: BIG, worker: { start: true } });
    server = await serve(bed.t.app);
    const [admin] = await bed.t.db.select().from(users).where(eq(users.id, bed.adminId));
    const { token } = await tokenFor(bed.t.db, admin ?? { id: bed.adminId, username: "admin" });
    env = { ROSTER_URL: server.url, ROSTER_TOKEN: token };
  });
  after(async () => {
    await server?.close();
    await closeImportTestBed(bed);
  });

  test("directories --json prints the directories as JSON", async () => {
    const out = await run("directories", "--json");
    assert.equal(out.code, 0, out.stderr);
    const list = JSON.parse(out.stdout) as { id: number; name: string }[];
    assert.deepEqual(
      list.map((d) => d.name),
      ["Example LDAP"],
    );
  });

  test("search --status says what importing would do", async () => {
    const out = await run("search", "example ldap", "alpha", "--kind", "users", "--status");
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^KIND\s+NAME\s+FULL NAME\s+DN\s+STATUS$/m);
    assert.match(out.stdout, /^user\s+alpha\s+.*uid=alpha,ou=people,dc=example,dc=test\s+new$/m);
  });

  let importId: number;

  test("import --wait runs to the end and exits 0; --json prints the finished run", async () => {
    const out = await run(
      "import",
      "Example LDAP",
      "--query",
      "everyone",
      "--kind",
      "groups",
      "--wait",
      "--json",
    );
    assert.equal(out.code, 0, out.stderr);
    const finished = JSON.parse(out.stdout) as { id: number; status: string; counts: { created: number } };
    assert.equal(finished.status, "succeeded");
    assert.equal(finished.counts.created, BIG + 1);
    importId = finished.id;
    const [row] = await bed.t.db.select().from(importRuns).where(eq(importRuns.id, importId));
    assert.equal(row?.actorName, "admin", "started as the token's user");
  });

  test("runs and run --report show it", async () => {
    const runs = await run("runs", "--json");
    assert.equal(runs.code, 0, runs.stderr);
    assert.equal((JSON.parse(runs.stdout) as { id: number }[])[0]?.id, importId);
    const shown = await run("run", String(importId), "--report");
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^Import #${importId} succeeded: ${BIG + 1} created`, "m"));
  });

  test("sync --wait synchronizes the directory", async () => {
    const out = await run("sync", "Example LDAP", "--wait");
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^Synchronization #\d+ succeeded/m);
  });

  test("users --csv lists every imported user, page after page", async () => {
    const out = await run("users", "--filter", "external", "--csv");
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.trim().split("\n");
    assert.equal(lines[0], "id,username,full_name,email,kind,directory,enabled");
    assert.equal(lines.length, BIG + 1);
    assert.ok(lines.slice(1).every((line) => line.includes(",external,Example LDAP,true")));
  });

  test("a failed run exits 1", async () => {
    const failed = await createRun(bed.t.db, {
      directory: { id: bed.directoryId, name: "Example LDAP" },
      actor: { id: bed.adminId, name: "admin" },
      query: "x",
      selection: { mode: "query", text: "x", kind: "both" },
      copyRolesFrom: null,
      total: null,
    });
    await bed.t.db
      .update(importRuns)
      .set({
        status: "failed",
        cancelRequested: true,
        error: "The directory stopped answering.",
        finishedAt: new Date(),
      })
      .where(eq(importRuns.id, failed.id));
    const out = await run("run", String(failed.id));
    assert.equal(out.code, 1);
    assert.match(out.stdout, /failed: .*The directory stopped answering/);
  });

  test("errors exit 1 with the API's words; bad usage exits 2", async () => {
    const missing = await run(
      "import",
      "Example LDAP",
      "--entry",
      "uid=nobody-here,ou=people,dc=example,dc=test",
    );
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /entries\.0\.dn: No user or group/);
    const badToken = await roster(["directories"], { ...env, ROSTER_TOKEN: "roster_wrong" });
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /not valid/);
    assert.ok(!badToken.stderr.includes(env.ROSTER_TOKEN ?? "?"), "the token is never printed");
    assert.equal((await run("import", "Example LDAP")).code, 2, "neither --query nor --entry");
    assert.equal((await run("search", "No such directory", "x")).code, 2);
    assert.equal((await run("frobnicate")).code, 2);
    assert.equal((await roster(["directories"], { ROSTER_TOKEN: "x" })).code, 2, "no ROSTER_URL");
    const help = await run("import", "--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--copy-roles-from <subject>/);
  });
});
