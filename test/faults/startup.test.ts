/** Start-up that can't succeed fails fast, on one line that names the cause, with a non-zero exit. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { closedPort } from "../ldap/support.ts";

const serverEntry = path.resolve(import.meta.dirname, "../../src/server.ts");

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs Roster's entry point as an operator would, and waits for it to exit (or kills it at 20 s). */
function startRoster(env: Record<string, string>): Promise<Exit> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", serverEntry], {
      env: { PATH: process.env.PATH ?? "", NODE_ENV: "development", LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("exit", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

describe("starting Roster", () => {
  let dataDir: string;
  let holder: Server;
  let takenPort: number;
  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), "roster-startup-"));
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const address = holder.address();
    takenPort = typeof address === "object" && address ? address.port : 0;
  });
  after(() => {
    holder.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("on a port another process holds exits non-zero within 10 s, saying the port is in use", async () => {
    const exit = await startRoster({ ROSTER_DATA_DIR: dataDir, HOST: "127.0.0.1", PORT: String(takenPort) });
    assert.equal(exit.code, 1, exit.stdout + exit.stderr);
    assert.ok(exit.ms < 10_000, `exited after ${exit.ms} ms`);
    assert.match(
      exit.stderr,
      new RegExp(`127\\.0\\.0\\.1:${takenPort} is already in use by another process`),
    );
    assert.doesNotMatch(exit.stdout, /Roster is listening/);
  });

  test("with a database nobody answers for exits non-zero within 10 s, naming the database and the cause", async () => {
    const port = await closedPort();
    const exit = await startRoster({
      ROSTER_DATA_DIR: dataDir,
      PORT: "0",
      DATABASE_URL: `postgres://roster:sekrit-password@127.0.0.1:${port}/roster`,
    });
    assert.equal(exit.code, 1, exit.stdout + exit.stderr);
    assert.ok(exit.ms < 10_000, `exited after ${exit.ms} ms`);
    assert.match(exit.stderr, /Roster could not start: the database could not be reached \(ECONNREFUSED\)/);
    assert.doesNotMatch(exit.stdout + exit.stderr, /sekrit-password/);
  });

  test("without a setting production requires exits non-zero, naming it", async () => {
    const exit = await startRoster({ ROSTER_DATA_DIR: dataDir, NODE_ENV: "production", PORT: "0" });
    assert.equal(exit.code, 1, exit.stdout + exit.stderr);
    assert.match(
      exit.stderr,
      /^Roster could not start: invalid configuration: SESSION_SECRET: required when NODE_ENV=production; ROSTER_ENCRYPTION_KEY/,
    );
    assert.equal(exit.stderr.trim().split("\n").length, 1, exit.stderr);
  });
});
