import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { test } from "node:test";
import { pinoHttp } from "pino-http";
import { createLogger } from "../../src/logger.ts";

/** A readable (development) logger writing into a string, and a server whose requests it logs. */
async function serveWith(level: string) {
  let out = "";
  const destination = new Writable({
    write(chunk, _enc, done) {
      out += String(chunk);
      done();
    },
  });
  const logger = createLogger(level, { readable: true, destination });
  // As src/app.ts sets it: a failure is an error, the rest info; pino-http's made-up Error is dropped.
  const log = pinoHttp({
    logger,
    customLogLevel: (_req, res) => (res.statusCode >= 500 ? "error" : "info"),
    customErrorObject: (_req, _res, _error, { err: _madeUp, ...rest }) => rest,
  });
  const server = createServer((req, res) => {
    log(req, res);
    res.statusCode = req.url === "/broken" ? 500 : 200;
    res.end("ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    logger,
    url,
    output: async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return out;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

test("in development, a request that went well is not printed at info level; one that failed is one short line", async () => {
  const site = await serveWith("info");
  try {
    site.logger.info({ url: site.url }, "Roster is listening");
    await fetch(`${site.url}/users?page=2`);
    await fetch(`${site.url}/broken`);
    const lines = (await site.output()).trim().split("\n");
    assert.equal(lines.length, 2, JSON.stringify(lines));
    assert.match(
      lines[0] ?? "",
      /^\[\d\d:\d\d:\d\d\] INFO: Roster is listening \{"url":"http:\/\/127\.0\.0\.1:\d+"\}$/,
    );
    assert.match(lines[1] ?? "", /^\[\d\d:\d\d:\d\d\] ERROR: GET \/broken 500 \d+ ms/);
    assert.ok((lines[1] ?? "").length < 200, `short: ${lines[1]}`);
  } finally {
    await site.close();
  }
});

test("at debug level every request is one short line, without headers", async () => {
  const site = await serveWith("debug");
  try {
    await fetch(`${site.url}/users?page=2`, { headers: { cookie: "roster.sid=secret-session" } });
    const out = await site.output();
    assert.match(out, /INFO: GET \/users\?page=2 200 \d+ ms/);
    assert.doesNotMatch(out, /secret-session|user-agent|headers/);
    assert.equal(out.trim().split("\n").length, 1);
  } finally {
    await site.close();
  }
});

test("outside development the lines stay JSON", () => {
  let out = "";
  const logger = createLogger("info", {
    destination: new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    }),
  });
  logger.info({ url: "http://127.0.0.1:3000" }, "Roster is listening");
  assert.deepEqual(
    { ...JSON.parse(out), time: 0, pid: 0, hostname: "" },
    {
      level: 30,
      time: 0,
      pid: 0,
      hostname: "",
      app: "roster",
      url: "http://127.0.0.1:3000",
      msg: "Roster is listening",
    },
  );
});
