/**
 * The background worker of one Roster instance: queues the scheduled synchronizations that are due,
 * claims import and synchronization runs from the database queue, keeps
 * their heartbeat, stops them when cancelled, and puts its run back in the queue when the instance
 * shuts down. Started by server.ts; tests start it (or call `runOnce`) themselves.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Db } from "../../db/client.ts";
import type { SecretBox } from "../secrets.ts";
import { queueDueSynchronizations } from "../sync/schedule.ts";
import { type ExecuteDeps, executeRun, type ImportHooks, RunStopped } from "./importer.ts";
import { type Claim, claimNextRun, finishRun, heartbeat, releaseRun } from "./run-queue.ts";

export interface ImportWorkerOptions {
  db: Db;
  secretBox: SecretBox;
  logger: Logger;
  /** How often to look for queued runs when not woken (default 2 s). */
  pollMs?: number;
  heartbeatMs?: number;
  /** A running run whose heartbeat is older than this is taken over (default 12 s). */
  staleAfterMs?: number;
  batchSize?: number;
  writers?: number;
  hooks?: ImportHooks;
  workerId?: string;
  /** How long a run waits for a directory that stopped answering (default 2 minutes). */
  directoryRetryMs?: number;
  /** See ExecuteDeps.watermarkMarginMs. */
  watermarkMarginMs?: number;
}

export interface ImportWorker {
  readonly id: string;
  start(): void;
  /** Looks for work now (after a run was created). */
  wake(): void;
  /** Claims and executes one run if there is one; resolves when it ended. True when a run was executed. */
  runOnce(): Promise<boolean>;
  /** Stops claiming; a run in progress is put back in the queue. */
  stop(): Promise<void>;
}

export function createImportWorker(options: ImportWorkerOptions): ImportWorker {
  const id = options.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const pollMs = options.pollMs ?? 2000;
  // Four missed heartbeats make a run stale; with the 2 s poll another instance takes it within 14 s.
  const heartbeatMs = options.heartbeatMs ?? 3000;
  const staleAfterMs = options.staleAfterMs ?? 12_000;
  const log = options.logger.child({ importWorker: id });
  const deps: ExecuteDeps = {
    db: options.db,
    secretBox: options.secretBox,
    logger: options.logger,
    ...(options.batchSize ? { batchSize: options.batchSize } : {}),
    ...(options.writers ? { writers: options.writers } : {}),
    ...(options.hooks ? { hooks: options.hooks } : {}),
    ...(options.directoryRetryMs !== undefined ? { directoryRetryMs: options.directoryRetryMs } : {}),
    ...(options.watermarkMarginMs !== undefined ? { watermarkMarginMs: options.watermarkMarginMs } : {}),
  };

  let stopped = true;
  let timer: NodeJS.Timeout | undefined;
  let loop: Promise<void> | undefined;
  let wanted = false;
  let current: AbortController | undefined;

  async function runOnce(): Promise<boolean> {
    const claim = await claimNextRun(options.db, id, staleAfterMs);
    if (!claim) return false;
    log.info({ importRun: claim.run.id, attempt: claim.run.attempts }, "import run claimed");
    const controller = new AbortController();
    current = controller;
    const beat = setInterval(() => void keepAlive(claim, controller), heartbeatMs);
    try {
      const ending = await executeRun(deps, claim, controller);
      if (ending) {
        const run = await finishRun(options.db, claim, ending);
        log.info({ importRun: claim.run.id, status: run?.status }, "import run finished");
      }
    } catch (err) {
      if (err instanceof RunStopped && err.reason === "shutdown") {
        await releaseRun(options.db, claim).catch((e: unknown) =>
          log.warn({ err: e }, "could not release run"),
        );
      } else {
        // The database itself failed: the heartbeat goes stale and another attempt picks the run up.
        log.error({ err, importRun: claim.run.id }, "import run could not be closed");
      }
    } finally {
      clearInterval(beat);
      current = undefined;
    }
    return true;
  }

  async function keepAlive(claim: Claim, controller: AbortController): Promise<void> {
    try {
      const state = await heartbeat(options.db, claim);
      if (!state.held) controller.abort(new RunStopped("lost"));
      else if (state.cancelRequested) controller.abort(new RunStopped("cancel"));
    } catch (err) {
      log.warn({ err, importRun: claim.run.id }, "import heartbeat failed");
    }
  }

  async function drain(): Promise<void> {
    do {
      wanted = false;
      try {
        const queued = await queueDueSynchronizations(options.db);
        for (const run of queued)
          log.info({ importRun: run.id, directory: run.directoryName }, "scheduled synchronization queued");
      } catch (err) {
        log.warn({ err }, "import worker could not queue the scheduled synchronizations");
      }
      try {
        while (!stopped && (await runOnce())) {
          // keep going while there is work
        }
      } catch (err) {
        log.warn({ err }, "import worker could not claim a run");
      }
    } while (wanted && !stopped);
  }

  function schedule(delay: number): void {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
    timer.unref();
  }

  function tick(): void {
    if (stopped) return;
    if (loop) {
      wanted = true;
      return;
    }
    loop = drain().finally(() => {
      loop = undefined;
      schedule(pollMs);
    });
  }

  return {
    id,
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(0);
    },
    wake() {
      if (!stopped) schedule(0);
    },
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      current?.abort(new RunStopped("shutdown"));
      await loop;
    },
  };
}
