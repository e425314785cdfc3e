import type { Response } from "express";

/**
 * CSV downloads (RFC 4180: CRLF lines, fields with a comma, quote or line break quoted, quotes
 * doubled), streamed batch by batch with the socket's backpressure, so a million rows need the
 * memory of one batch. Cells a spreadsheet would read as a formula (starting with = + - @, a tab or
 * a carriage return: OWASP's "CSV injection") get a leading apostrophe and are quoted, so they show
 * as the text they are.
 */

const FORMULA_START = /^[=+\-@\t\r]/;
const NEEDS_QUOTES = /[",\r\n]/;

export function csvCell(value: string): string {
  if (FORMULA_START.test(value)) return `"'${value.replaceAll('"', '""')}"`;
  return NEEDS_QUOTES.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function csvLine(cells: string[]): string {
  return `${cells.map(csvCell).join(",")}\r\n`;
}

/** `users-2026-05-04.csv`: what the download is called. */
export function csvFilename(what: string, at: Date): string {
  return `${what}-${at.toISOString().slice(0, 10)}.csv`;
}

/** Waits until the socket takes more, or is gone (then false: stop reading). */
function drained(res: Response): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (more: boolean) => {
      res.off("drain", onDrain);
      res.off("close", onClose);
      resolve(more);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on("drain", onDrain);
    res.on("close", onClose);
  });
}

/**
 * Sends the header row, then each batch of rows as it comes. A failure before the first byte is the
 * request's error (the usual error page); after it, the connection is cut, so a partial file never
 * looks like a whole one.
 */
export async function streamCsv(
  res: Response,
  filename: string,
  header: string[],
  batches: AsyncIterable<string[][]>,
): Promise<void> {
  const iterator = batches[Symbol.asyncIterator]();
  // The first batch is read before anything is sent, so an error there is answered normally.
  let next = await iterator.next();
  res.status(200);
  res.type("text/csv; charset=utf-8");
  res.attachment(filename);
  res.set("Cache-Control", "no-store");
  // A byte-order mark: spreadsheet programs otherwise read UTF-8 (Zoë, Ångström) as Latin-1.
  res.write(`\uFEFF${csvLine(header)}`);
  try {
    while (!next.done) {
      if (res.destroyed) break;
      const chunk = next.value.map(csvLine).join("");
      if (!res.write(chunk) && !(await drained(res))) break;
      next = await iterator.next();
    }
    if (!next.done) await iterator.return?.();
    res.end();
  } catch (err) {
    res.destroy(err instanceof Error ? err : new Error(String(err)));
    res.req.log?.error({ err }, "CSV download cut short");
  }
}
