import { type Logger, type LoggerOptions, pino } from "pino";
import { PinoPretty } from "pino-pretty";

export interface LoggerStyle {
  /**
   * Short, readable lines for a person at a terminal (development): a request is one line
   * (`GET /users 200 12 ms`), and only at debug level unless it went wrong, so that a page view
   * doesn't scroll away what the terminal said at start-up. Otherwise JSON lines for a log collector.
   */
  readable?: boolean;
  /** Where the lines go (stdout unless told: tests read them). */
  destination?: NodeJS.WritableStream;
}

/** Logs on stdout. Secrets never reach here: bodies aren't logged and cookies are redacted. */
export function createLogger(level: string, style: LoggerStyle = {}): Logger {
  const options: LoggerOptions = { level, base: { app: "roster" } };
  if (!style.readable) return style.destination ? pino(options, style.destination) : pino(options);
  return pino({ ...options, hooks: { logMethod: quietRequests } }, readableStream(style.destination));
}

const WARN = 40;

type LogMethod = (this: Logger, ...args: unknown[]) => void;

/** pino-http's line for each answer, at info when it went well: kept for debug level in development. */
function quietRequests(this: Logger, args: unknown[], method: LogMethod, level: number): void {
  const first = args[0];
  const isRequestLine = typeof first === "object" && first !== null && "responseTime" in first;
  if (isRequestLine && level < WARN && !this.isLevelEnabled("debug")) return;
  method.apply(this, args);
}

function readableStream(destination?: NodeJS.WritableStream) {
  return PinoPretty({
    ...(destination ? { destination } : {}),
    colorize: process.stdout.isTTY === true,
    translateTime: "SYS:HH:MM:ss",
    ignore: "pid,hostname,app,req,res,responseTime",
    singleLine: true,
    messageFormat: (log, messageKey) => {
      const req = log.req as { method?: string; url?: string } | undefined;
      const res = log.res as { statusCode?: number } | undefined;
      if (req && res && typeof log.responseTime === "number")
        return `${req.method} ${req.url} ${res.statusCode} ${Math.round(log.responseTime)} ms`;
      return String(log[messageKey] ?? "");
    },
  });
}
