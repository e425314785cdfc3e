import { sql } from "drizzle-orm";
import type { ClientRateLimitInfo, Options, Store } from "express-rate-limit";
import { type Db, queryRows } from "../db/client.ts";
import { rateLimits } from "../db/schema.ts";

/**
 * Rate-limit counters in the database, so every instance behind a load balancer sees the same
 * count of sign-in attempts.
 */
export class DatabaseRateLimitStore implements Store {
  localKeys = false;
  prefix: string;
  private windowMs = 60_000;

  constructor(
    private readonly db: Db,
    prefix: string,
  ) {
    this.prefix = prefix;
  }

  init(options: Options): void {
    this.windowMs = options.windowMs;
  }

  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    const [row] = await queryRows<{ hits: number; reset_at: string | Date }>(
      this.db,
      sql`select hits, reset_at from ${rateLimits} where key = ${this.prefix + key} and reset_at > now()`,
    );
    return row ? { totalHits: Number(row.hits), resetTime: new Date(row.reset_at) } : undefined;
  }

  async increment(key: string): Promise<ClientRateLimitInfo> {
    const resetAt = new Date(Date.now() + this.windowMs).toISOString();
    const [row] = await queryRows<{ hits: number; reset_at: string | Date }>(
      this.db,
      sql`insert into ${rateLimits} (key, hits, reset_at) values (${this.prefix + key}, 1, ${resetAt})
          on conflict (key) do update set
            hits = case when ${rateLimits.resetAt} <= now() then 1 else ${rateLimits.hits} + 1 end,
            reset_at = case when ${rateLimits.resetAt} <= now() then excluded.reset_at else ${rateLimits.resetAt} end
          returning hits, reset_at`,
    );
    if (!row) throw new Error("rate limit upsert returned no row");
    return { totalHits: Number(row.hits), resetTime: new Date(row.reset_at) };
  }

  async decrement(key: string): Promise<void> {
    await this.db.execute(
      sql`update ${rateLimits} set hits = greatest(hits - 1, 0) where key = ${this.prefix + key}`,
    );
  }

  async resetKey(key: string): Promise<void> {
    await this.db.execute(sql`delete from ${rateLimits} where key = ${this.prefix + key}`);
  }
}

/**
 * Where each user signed in from lately (an address and a typed username), kept beside the
 * counters: `hits` counts the sign-ins, and each one keeps the row for `days` more.
 */
export async function rememberSignIn(db: Db, key: string, days: number): Promise<void> {
  const resetAt = new Date(Date.now() + days * 86_400_000).toISOString();
  await db.execute(
    sql`insert into ${rateLimits} (key, hits, reset_at) values (${`signed-in:${key}`}, 1, ${resetAt})
        on conflict (key) do update set hits = ${rateLimits.hits} + 1, reset_at = excluded.reset_at`,
  );
}

export async function signedInBefore(db: Db, key: string): Promise<boolean> {
  const rows = await queryRows<{ key: string }>(
    db,
    sql`select key from ${rateLimits} where key = ${`signed-in:${key}`} and reset_at > now()`,
  );
  return rows.length > 0;
}

/** Drops counters whose window ended; run from the housekeeping timer. */
export async function pruneRateLimits(db: Db): Promise<void> {
  await db.execute(sql`delete from ${rateLimits} where reset_at < now() - interval '1 hour'`);
}
