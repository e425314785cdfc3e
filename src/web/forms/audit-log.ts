import { z } from "zod";

/** A day as a date field sends it (YYYY-MM-DD), or nothing. */
const day = (label: string) =>
  z
    .string()
    .trim()
    .default("")
    .refine((value) => value === "" || isDay(value), {
      message: `Enter the ${label} date as YYYY-MM-DD, for example 2026-01-31.`,
    });

function isDay(value: string): boolean {
  if (!/^\d{4}-\d\d-\d\d$/.test(value)) return false;
  const date = new Date(`${value}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().startsWith(value);
}

/** The audit log's date range (UTC days, both included). */
export const auditDatesSchema = z
  .object({ from: day("start"), to: day("end") })
  .refine((range) => !range.from || !range.to || range.from <= range.to, {
    path: ["to"],
    message: "The end date must be on or after the start date.",
  });
