/** Plain-text output: aligned columns for people, RFC 4180 CSV for spreadsheets. */
import { csvCell } from "../web/csv.ts";

export function printTable(
  head: string[],
  rows: string[][],
  write = (line: string) => process.stdout.write(`${line}\n`),
) {
  if (rows.length === 0) {
    write("(none)");
    return;
  }
  const widths = head.map((h, i) =>
    Math.min(60, Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  write(line(head));
  for (const row of rows) write(line(row));
}

/** A CSV line without its line break, cells written as the console's CSV downloads write them. */
export function csvLine(cells: string[]): string {
  return cells.map(csvCell).join(",");
}
