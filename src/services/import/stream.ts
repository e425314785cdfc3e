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

/** Regroups pages of any size into batches of about `size` items (the last may be smaller). */
export async function* rebatch<T>(pages: AsyncIterable<T[]>, size: number): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const page of pages) {
    for (const item of page) {
      batch.push(item);
      if (batch.length >= size) {
        yield batch;
        batch = [];
      }
    }
  }
  if (batch.length > 0) yield batch;
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
