import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import connectPgSimple from "connect-pg-simple";
import { csrfSync } from "csrf-sync";
import express, { type ErrorRequestHandler, type RequestHandler } from "express";
import session from "express-session";
import helmet from "helmet";
import type { Logger } from "pino";
import { pinoHttp } from "pino-http";
import { swaggerUiDir } from "./api/docs.ts";
import { createApi } from "./api/router.ts";
import type { Config } from "./config.ts";
import { type Database, isConnectionLost } from "./db/client.ts";
import type { ExternalAuthenticator } from "./services/auth.ts";
import { createSecretBox } from "./services/secrets.ts";
import { loadCurrentUser } from "./web/auth-middleware.ts";
import { takeFlash } from "./web/flash.ts";
import { multipartForms } from "./web/multipart.ts";
import { createViews, render } from "./web/render.ts";
import { type RouteDeps, routes } from "./web/routes.ts";

export interface AppDeps {
  config: Config;
  database: Database;
  logger: Logger;
  externalAuth?: ExternalAuthenticator;
  throttle?: RouteDeps["throttle"];
  /** The background import worker (server.ts starts it); told when a run is queued. */
  importWorker?: { wake(): void };
  /** API requests a client may send per window (tests lower it). */
  apiRateLimit?: { limit: number; windowMs: number };
}

const here = path.dirname(fileURLToPath(import.meta.url));
const publicDir = path.resolve(here, "../public");
const htmxDir = path.join(
  path.dirname(createRequire(import.meta.url).resolve("htmx.org/package.json")),
  "dist",
);

export const SESSION_COOKIE = "roster.sid";

/** The Express app, without listening: what server.ts starts and what the tests drive. */
export function createApp(deps: AppDeps): express.Express {
  const { config, database, logger } = deps;
  const db = database.db;
  const app = express();
  app.locals.views = createViews(config.env === "production");
  app.set("trust proxy", config.trustProxy);
  app.disable("x-powered-by");

  app.use(requestLogger(logger));
  app.use(securityHeaders(config));
  const staticOptions = { maxAge: config.env === "production" ? "1d" : 0, index: false };
  app.use("/static", express.static(publicDir, staticOptions));
  app.use("/vendor/htmx", express.static(htmxDir, staticOptions));
  // Swagger UI for /api/docs (issue 29), from node_modules like htmx.
  app.use("/vendor/swagger-ui", express.static(swaggerUiDir, staticOptions));
  // Browsers ask for this on every page; answering before the session keeps it from taking a flash.
  app.get("/favicon.ico", (_req, res) => res.redirect(301, "/static/favicon.svg"));
  app.use(express.urlencoded({ extended: false, limit: "256kb", parameterLimit: 5000 }));
  // Forms with a file input (the directory form's CA certificate) come as multipart.
  app.use(multipartForms({ limit: 256 * 1024, maxFields: 5000 }));
  app.use(refuseNulCharacters);
  // The JSON API (src/api): a request with an API token is answered here, before any session is
  // read or made and without CSRF (no cookie is involved); others go on through the session.
  const api = createApi({
    db,
    secretBox: createSecretBox(config.encryptionKey),
    directoryLogger: logger.child({ component: "ldap" }),
    wake: () => deps.importWorker?.wake(),
    rateLimit: deps.apiRateLimit,
    sessionCookie: SESSION_COOKIE,
  });
  app.use("/api/v1", api.bearer);
  app.use(sessions(config, database, logger));
  app.use(...csrfProtection());
  app.use(takeFlash);
  app.use(loadCurrentUser(db));
  // The API for a signed-in browser session: CSRF-protected like every page (X-CSRF-Token header).
  app.use("/api/v1", ...api.session);

  app.use(
    routes({
      db,
      secretBox: createSecretBox(config.encryptionKey),
      directoryLogger: logger.child({ component: "ldap" }),
      externalAuth: deps.externalAuth,
      throttle: deps.throttle,
      wake: () => deps.importWorker?.wake(),
    }),
  );

  app.use((req, res) => {
    render(
      req,
      res,
      "errors/error",
      {
        title: "Page not found",
        heading: "Page not found",
        message: "There is no page at this address. Check the address, or start again from the start page.",
      },
      { status: 404 },
    );
  });
  app.use(errorHandler);
  return app;
}

function requestLogger(logger: Logger): RequestHandler {
  return pinoHttp({
    logger,
    genReqId: (_req, res) => {
      const id = randomUUID();
      res.setHeader("X-Request-Id", id);
      return id;
    },
    // Cookies carry the session id; request bodies (passwords) are never logged at all.
    redact: ["req.headers.cookie", "req.headers.authorization", 'res.headers["set-cookie"]'],
    // An answer Roster chose (the database unreachable, a directory's bad gateway) is a warning,
    // not an error with a stack: only an unexpected failure is.
    customLogLevel: (_req, res, err) =>
      res.statusCode === 502 || res.statusCode === 503
        ? "warn"
        : err || res.statusCode >= 500
          ? "error"
          : "info",
    // For any answer of 500 or more pino-http makes up an Error ("failed with status code 502")
    // whose stack says nothing but pino-http's own frames. Only a real error is kept on the line;
    // an unexpected one was logged with its stack by errorHandler already.
    customErrorObject: (_req, res, error, fields) => {
      if (!isMadeUpError(error, res.statusCode)) return fields;
      const { err: _madeUp, ...rest } = fields;
      return rest;
    },
    customErrorMessage: (_req, res, error) =>
      isMadeUpError(error, res.statusCode) ? "request completed" : "request errored",
    autoLogging: { ignore: (req) => isAssetPath(req.url) },
  });
}

function isMadeUpError(error: Error, statusCode: number): boolean {
  return error.message === `failed with status code ${statusCode}`;
}

/** Static files: logged by nobody and cached by browsers, unlike every page and fragment. */
function isAssetPath(url: string | undefined): boolean {
  return Boolean(url?.startsWith("/static/") || url?.startsWith("/vendor/") || url === "/favicon.ico");
}

function securityHeaders(config: Config): RequestHandler[] {
  const headers = helmet({
    contentSecurityPolicy: {
      directives: {
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "upgrade-insecure-requests": config.secureCookies ? [] : null,
      },
    },
    strictTransportSecurity: config.secureCookies,
  });
  return [headers, pageHeaders];
}

/**
 * The console uses none of the browser's powerful features (helmet sets no Permissions-Policy), so
 * a script that got in anyway can't ask for them. Pages and fragments show people, groups and
 * settings: `no-store` keeps them out of browser and proxy caches (and out of the Back button after
 * signing out); static files keep their caching (express.static sets it only when none is set).
 */
const pageHeaders: RequestHandler = (req, res, next) => {
  res.set("Permissions-Policy", PERMISSIONS_POLICY);
  if (!isAssetPath(req.path)) res.set("Cache-Control", "no-store");
  next();
};

const PERMISSIONS_POLICY = [
  "accelerometer",
  "autoplay",
  "camera",
  "display-capture",
  "fullscreen",
  "geolocation",
  "gyroscope",
  "hid",
  "magnetometer",
  "microphone",
  "midi",
  "payment",
  "publickey-credentials-get",
  "screen-wake-lock",
  "serial",
  "usb",
  "xr-spatial-tracking",
]
  .map((feature) => `${feature}=()`)
  .join(", ");

function sessions(config: Config, database: Database, logger: Logger): RequestHandler {
  const PgStore = connectPgSimple(session);
  const idleMs = config.sessionIdleMinutes * 60_000;
  // Renewing the stored expiry on every request was a write per page view. It is renewed once it
  // is this old, so an idle session ends after the idle time less at most this much.
  const renewAfterMs = Math.min(60_000, idleMs / 10);
  const renewedAt = new Map<string, number>();
  let prunedAt = Date.now();
  const remember = (sid: string) => {
    const now = Date.now();
    renewedAt.set(sid, now);
    // An entry older than renewAfterMs saves no write: such entries go, keeping the map small.
    if (now - prunedAt < renewAfterMs) return;
    prunedAt = now;
    for (const [key, at] of renewedAt) if (now - at >= renewAfterMs) renewedAt.delete(key);
  };
  class ThrottledTouchStore extends PgStore {
    override set(sid: string, sess: session.SessionData, callback?: (err?: unknown) => void): void {
      super.set(sid, sess, (err?: unknown) => {
        if (!err) remember(sid);
        callback?.(err);
      });
    }

    override touch(sid: string, sess: session.SessionData, callback?: (err?: unknown) => void): void {
      const at = renewedAt.get(sid);
      if (at !== undefined && Date.now() - at < renewAfterMs) {
        callback?.();
        return;
      }
      const touched = (err?: unknown) => {
        if (!err) remember(sid);
        callback?.(err);
      };
      super.touch(sid, sess, touched as () => void);
    }

    override destroy(sid: string, callback?: (err?: unknown) => void): void {
      renewedAt.delete(sid);
      super.destroy(sid, callback);
    }
  }
  const store = new ThrottledTouchStore({
    pool: database.pool as never,
    tableName: "session",
    createTableIfMissing: false,
    // Expired sessions are pruned by the housekeeping timer in server.ts, not by a timer per app.
    pruneSessionInterval: false,
    errorLog: (...args: unknown[]) => logger.error({ detail: args.map(String) }, "session store failed"),
  });
  return session({
    name: SESSION_COOKIE,
    secret: config.sessionSecret,
    store,
    resave: false,
    saveUninitialized: false,
    // Every response renews the cookie: the session ends after this much idle time.
    rolling: true,
    cookie: {
      httpOnly: true,
      sameSite: "lax",
      secure: config.secureCookies,
      maxAge: config.sessionIdleMinutes * 60_000,
    },
  });
}

function csrfProtection(): RequestHandler[] {
  const { csrfSynchronisedProtection, generateToken } = csrfSync({
    // Plain forms send the token as a field; htmx sends the enclosing form's fields too.
    getTokenFromRequest: (req) => req.body?._csrf ?? req.get("X-CSRF-Token"),
  });
  const exposeToken: RequestHandler = (req, res, next) => {
    res.locals.csrfToken = generateToken(req);
    next();
  };
  return [exposeToken, csrfSynchronisedProtection];
}

/**
 * A NUL character (U+0000) can't be stored in PostgreSQL's text or jsonb, nor sent to a directory
 * as part of a name: a request carrying one in its address or form is refused before any route
 * sees it, instead of failing deep inside one. No keyboard types it; a crafted request or a paste can.
 */
const refuseNulCharacters: RequestHandler = (req, _res, next) => {
  if (holdsNul(req.query) || holdsNul(req.body)) {
    next(Object.assign(new Error("request with a NUL character"), { status: 400, code: "ENULCHAR" }));
    return;
  }
  next();
};

function holdsNul(value: unknown, depth = 0): boolean {
  if (typeof value === "string") return value.includes("\u0000");
  if (depth > 8 || value === null || typeof value !== "object") return false;
  if (Buffer.isBuffer(value)) return false; // an uploaded file's bytes are checked where they are read
  return Object.entries(value).some(([key, v]) => key.includes("\u0000") || holdsNul(v, depth + 1));
}

const errorHandler: ErrorRequestHandler = (err, req, res, _next) => {
  if (isConnectionLost(err)) {
    req.log.warn({ code: err?.code ?? err?.cause?.code }, "request failed: the database is unreachable");
    if (res.headersSent) return;
    res.set("Retry-After", "5");
    const page = databaseUnreachablePage();
    render(req, res, "errors/error", { title: page.heading, ...page }, { status: page.status });
    return;
  }
  const status = Number(err?.status ?? err?.statusCode ?? 500);
  if (status >= 500) req.log.error({ err }, "request failed");
  else req.log.info({ status, code: err?.code }, "request refused");
  if (res.headersSent) return;
  const page = errorPage(status, err?.code, String(req.id));
  render(req, res, "errors/error", { title: page.heading, ...page }, { status: page.status });
};

function databaseUnreachablePage() {
  return {
    status: 503,
    heading: "The database is unreachable",
    message:
      "Roster can't reach its database right now, so nothing was changed. Try again in a moment; if it keeps happening, check that the database server is running.",
  };
}

function errorPage(status: number, code: string | undefined, reference: string) {
  if (code === "EBADCSRFTOKEN") {
    return {
      status: 403,
      heading: "This form has expired",
      message:
        "The page was open too long, or the form came from another site. Go back, reload the page and try again.",
    };
  }
  if (status === 403) {
    return {
      status,
      heading: "You don't have permission to do this",
      message: "Your account has no role that allows this page. Ask an administrator if you need it.",
    };
  }
  if (code === "ENULCHAR") {
    return {
      status: 400,
      heading: "That text has a character Roster can't accept",
      message:
        "What you sent contains a NUL character (U+0000), which can't be stored or searched for. Go back, remove it (retype the text rather than pasting it) and try again.",
    };
  }
  if (status === 413) {
    return {
      status,
      heading: "That was too much data",
      message: "The form sent more data than Roster accepts.",
    };
  }
  if (status >= 400 && status < 500) {
    return {
      status,
      heading: "That request could not be handled",
      message: "Check what you entered and try again.",
    };
  }
  return {
    status: 500,
    heading: "Something went wrong",
    message:
      "Roster could not finish this request. Nothing secret was shown; the details are in the server log.",
    reference,
  };
}
