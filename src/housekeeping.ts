import { sql } from "drizzle-orm";
import type { Logger } from "pino";
import type { Db } from "./db/client.ts";
import { sessions } from "./db/schema.ts";
import { pruneRateLimits } from "./web/rate-limit-store.ts";

/** Periodic clean-up shared by all instances (each statement is idempotent). */
export function startHousekeeping(db: Db, logger: Logger, everyMs = 15 * 60_000): () => void {
  const run = async () => {
    try {
      await db.delete(sessions).where(sql`${sessions.expire} < now()`);
      await pruneRateLimits(db);
      // Checkpoints of runs that ended without closing them (their run row deleted, say).
      for (const table of ["import_run_handled", "import_run_users"]) {
        await db.execute(
          sql`delete from ${sql.identifier(table)} h where not exists (
                select 1 from import_runs r where r.id = h.run_id and r.status in ('queued', 'running'))`,
        );
      }
    } catch (err) {
      logger.warn({ err }, "housekeeping failed");
    }
  };
  const timer = setInterval(run, everyMs);
  timer.unref();
  void run();
  return () => clearInterval(timer);
}
