/**
 * `--wait`: polls a run until it ends. On a terminal a progress bar (cli-progress); otherwise a
 * plain line when the count moves, at most every few seconds, so a CI log stays readable.
 */
import cliProgress from "cli-progress";
import type { Client } from "./client.ts";

export interface Run {
  id: number;
  kind: "import" | "synchronization";
  directory: { id: number | null; name: string };
  status: string;
  finished: boolean;
  progress: { processed: number; total: number | null };
  counts: { created: number; updated: number; unchanged: number; skipped: number; failed: number };
  error: string | null;
  createdAt: string;
}

const POLL_MS = 1000;
const PLAIN_EVERY_MS = 5000;

export async function waitForRun(
  client: Client,
  first: Run,
  options: { stream: NodeJS.WriteStream; pollMs?: number },
): Promise<Run> {
  const path = `/${first.kind === "synchronization" ? "synchronizations" : "imports"}/${first.id}`;
  const tty = options.stream.isTTY === true;
  const bar = tty
    ? new cliProgress.SingleBar(
        {
          stream: options.stream,
          format: "{bar} {percentage}% | {value}/{total} entries | {status} | ETA {eta_formatted}",
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      )
    : null;
  let run = first;
  let lastLine = 0;
  let lastProcessed = -1;
  bar?.start(Math.max(run.progress.total ?? 0, run.progress.processed, 1), run.progress.processed, {
    status: run.status,
  });
  try {
    while (!run.finished) {
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? POLL_MS));
      run = await client.get<Run>(path);
      const total = run.progress.total ?? run.progress.processed;
      if (bar) {
        bar.setTotal(Math.max(total, run.progress.processed, 1));
        bar.update(run.progress.processed, { status: run.status });
      } else if (run.progress.processed !== lastProcessed && Date.now() - lastLine >= PLAIN_EVERY_MS) {
        lastLine = Date.now();
        lastProcessed = run.progress.processed;
        options.stream.write(
          `${run.kind} #${run.id} ${run.status}: ${run.progress.processed}${run.progress.total !== null ? ` of ${run.progress.total}` : ""} entries\n`,
        );
      }
    }
  } finally {
    bar?.stop();
  }
  return run;
}
