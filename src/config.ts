import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";

/** Everything Roster reads from the environment, validated in one place. */
export interface Config {
  env: "production" | "development" | "test";
  host: string;
  port: number;
  /** postgres://… — when null, the embedded PGlite database under dataDir is used. */
  databaseUrl: string | null;
  dataDir: string;
  sessionSecret: string;
  /** 32 bytes: the AES-256-GCM key for directory passwords. */
  encryptionKey: Buffer;
  sessionIdleMinutes: number;
  /** Set when Roster is served over TLS (directly or by a proxy): cookies get `Secure`. */
  secureCookies: boolean;
  trustProxy: boolean | number;
  bootstrapAdmin: { username: string; password: string } | null;
  logLevel: string;
}

export class ConfigError extends Error {}

const booleanish = z
  .enum(["1", "0", "true", "false", "yes", "no", "on", "off"])
  .transform((v) => ["1", "true", "yes", "on"].includes(v));

const envSchema = z.object({
  NODE_ENV: z.enum(["production", "development", "test"]).default("development"),
  HOST: z.string().min(1).default("127.0.0.1"),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must start with postgres:// or postgresql://")
    .optional(),
  ROSTER_DATA_DIR: z.string().min(1).default("data"),
  SESSION_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  ROSTER_ENCRYPTION_KEY: z
    .string()
    .regex(
      /^[A-Za-z0-9+/]{43}=$|^[0-9a-fA-F]{64}$/,
      "must be 32 bytes as base64 (44 chars) or hex (64 chars)",
    )
    .optional(),
  SESSION_IDLE_MINUTES: z.coerce
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60)
    .default(30),
  SECURE_COOKIES: booleanish.optional(),
  TRUST_PROXY: z.string().optional(),
  ROSTER_ADMIN_USERNAME: z.string().min(1).optional(),
  ROSTER_ADMIN_PASSWORD: z.string().min(12, "must be at least 12 characters").optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

/**
 * Reads and validates the configuration. In production the secrets must be given; in development the
 * ones not given are generated once and kept in `<dataDir>/secrets.json`, so restarts keep sessions and
 * can still decrypt stored directory passwords.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === "production";
  const dataDir = path.resolve(e.ROSTER_DATA_DIR);

  if (Boolean(e.ROSTER_ADMIN_USERNAME) !== Boolean(e.ROSTER_ADMIN_PASSWORD)) {
    throw new ConfigError(
      "Invalid configuration:\n  ROSTER_ADMIN_USERNAME and ROSTER_ADMIN_PASSWORD must be given together",
    );
  }
  if (production) {
    const missing = ["SESSION_SECRET", "ROSTER_ENCRYPTION_KEY"].filter((k) => !env[k]);
    if (missing.length > 0) {
      throw new ConfigError(
        `Invalid configuration:\n${missing.map((k) => `  ${k}: required when NODE_ENV=production`).join("\n")}`,
      );
    }
  }
  const generated = production ? null : developmentSecrets(dataDir);
  const sessionSecret = e.SESSION_SECRET ?? generated?.sessionSecret ?? "";
  const keyText = e.ROSTER_ENCRYPTION_KEY ?? generated?.encryptionKey ?? "";

  return {
    env: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    databaseUrl: e.DATABASE_URL ?? null,
    dataDir,
    sessionSecret,
    encryptionKey: decodeKey(keyText),
    sessionIdleMinutes: e.SESSION_IDLE_MINUTES,
    secureCookies: e.SECURE_COOKIES ?? production,
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    bootstrapAdmin:
      e.ROSTER_ADMIN_USERNAME && e.ROSTER_ADMIN_PASSWORD
        ? { username: e.ROSTER_ADMIN_USERNAME, password: e.ROSTER_ADMIN_PASSWORD }
        : null,
    logLevel: e.LOG_LEVEL,
  };
}

function decodeKey(text: string): Buffer {
  return /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, "hex") : Buffer.from(text, "base64");
}

function parseTrustProxy(value: string | undefined): boolean | number {
  if (value === undefined || value === "" || value === "false" || value === "0") return false;
  if (value === "true") return true;
  const hops = Number(value);
  if (Number.isInteger(hops) && hops > 0) return hops;
  throw new ConfigError(
    "Invalid configuration:\n  TRUST_PROXY: must be true, false or a number of proxy hops",
  );
}

interface GeneratedSecrets {
  sessionSecret: string;
  encryptionKey: string;
}

function developmentSecrets(dataDir: string): GeneratedSecrets {
  const file = path.join(dataDir, "secrets.json");
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as GeneratedSecrets;
  const secrets: GeneratedSecrets = {
    sessionSecret: randomBytes(32).toString("base64url"),
    encryptionKey: randomBytes(32).toString("base64"),
  };
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600, flag: "wx" });
  return secrets;
}
