import { z } from "zod";
import { SYNC_INTERVALS } from "../../services/sync/schedule.ts";

const intervals = new Set(SYNC_INTERVALS.map((choice) => choice.value));

/** The schedule form of a directory: how often, and when a synchronization holds its removals. */
export const scheduleForm = z.object({
  interval: z
    .string()
    .refine((value) => intervals.has(value), "Choose how often from the list.")
    .transform((value) => (value === "off" ? null : Number(value))),
  holdPercent: z
    .string()
    .trim()
    .regex(/^\d+$/, "Enter a whole number from 0 to 100.")
    .transform(Number)
    .refine((n) => n <= 100, "Enter a whole number from 0 to 100."),
  holdMinimum: z
    .string()
    .trim()
    .regex(/^\d+$/, "Enter a whole number of entries, 0 or more.")
    .transform(Number)
    .refine((n) => n <= 1_000_000_000, "Enter a smaller number."),
});

export const reviewForm = z.object({
  decision: z.enum(["apply", "discard"], { message: "Choose to apply or to discard the held changes." }),
});
