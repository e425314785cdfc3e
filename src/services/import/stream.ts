/** Small async-iteration tools that keep an import streaming with flat memory. */

/**
 * Asks the source for up to `depth` items ahead, so the directory sends the next page while the
 * database writes the current batch. Memory stays bounded by `depth` items.
 */
export async function* readAhead<T>(source: AsyncIterable<T>, depth = 1): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const pending: Promise<IteratorResult<T>>[] = [];
  const request = () => {
    const next = iterator.next();
    // Awaited in order below; this only keeps an early failure from being reported as unhandled.
    next.catch(() => {});
    pending.push(next);
  };
  let finished = false;
  try {
    request();
    for (;;) {
      const next = pending.shift();
      if (next === undefined) return;
      const result = await next;
      if (result.done) {
        finished = true;
        return;
      }
      while (pending.length < depth) request();
      yield result.value;
    }
  } finally {
    if (!finished) await iterator.return?.(undefined).catch(() => {});
  }
}

export interface MappedBatch<T> {
  values: T[];
  /** Items that could not be mapped, with the entry's stable id when it has one. */
  invalid: { dn: string; reason: string; externalId?: string }[];
  /** Items read, mapped or not. */
  size: number;
}

/**
 * Maps each page as it arrives, so its items are garbage before the next page comes (collected
 * young, never copied into the old generation), and regroups the results into batches of about
 * `size` items (the last may be smaller).
 */
export async function* mapBatches<I, T>(
  pages: AsyncIterable<I[]>,
  size: number,
  map: (item: I) => { ok: true; value: T } | { ok: false; dn: string; reason: string; externalId?: string },
): AsyncGenerator<MappedBatch<T>> {
  let batch: MappedBatch<T> = { values: [], invalid: [], size: 0 };
  for await (const page of pages) {
    for (const item of page) {
      const mapped = map(item);
      if (mapped.ok) batch.values.push(mapped.value);
      else
        batch.invalid.push(
          mapped.externalId === undefined
            ? { dn: mapped.dn, reason: mapped.reason }
            : { dn: mapped.dn, reason: mapped.reason, externalId: mapped.externalId },
        );
      batch.size += 1;
      if (batch.size >= size) {
        yield batch;
        batch = { values: [], invalid: [], size: 0 };
      }
    }
  }
  if (batch.size > 0) yield batch;
}

/**
 * Runs `work` for each item of `source` as it comes, with at most `limit` running at once: the next
 * item is read while they run. Every work started is awaited. The first failure stops the reading
 * and is thrown once the works still running have ended, however long after it happened: a batch
 * that failed while the reader waited for the directory is never lost.
 */
export async function forEachConcurrently<T>(
  source: AsyncIterable<T>,
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const pool = new WorkPool(limit);
  try {
    for await (const item of source) await pool.add(() => work(item));
  } catch (err) {
    // The source failed (or a work did, and stopped the reading): the works started still end first.
    await pool.settle();
    throw err;
  }
  await pool.drain();
}

/**
 * Works started one by one, at most `limit` running at once: `add` waits for room, `drain` for all of
 * them. A failure is kept and thrown by the next `add` or by `drain`, once every started work has
 * ended — a work is never left running behind an error.
 */
export class WorkPool {
  private readonly running = new Set<Promise<void>>();
  private readonly failures: unknown[] = [];

  constructor(private readonly limit: number) {}

  async add(work: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit && this.failures.length === 0) await Promise.race(this.running);
    if (this.failures.length > 0) return this.drain();
    const task: Promise<void> = work()
      .catch((err: unknown) => {
        this.failures.push(err);
      })
      .finally(() => this.running.delete(task));
    this.running.add(task);
  }

  /** Waits for every started work to end; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    if (this.failures.length > 0) throw this.failures[0];
  }

  /** Waits for every started work to end, failed or not. */
  async settle(): Promise<void> {
    await Promise.all(this.running);
  }
}

/** Runs `work` over items with at most `limit` in flight, keeping the results in order. */
export async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < items.length; index = next++) {
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
