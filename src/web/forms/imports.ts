import { z } from "zod";
import { IMPORT_KINDS, type ImportKind, type SelectedEntry } from "../../services/import/types.ts";

/** The first value of a field that may come more than once. */
export const one = (value: unknown) => (Array.isArray(value) ? value[0] : value);
const many = (value: unknown): string[] =>
  (Array.isArray(value) ? value : value === undefined ? [] : [value]).filter(
    (v): v is string => typeof v === "string",
  );

/** The import search: its address (GET) or the fields a selection change repeats (POST). */
export const searchSchema = z.object({
  directory: z.preprocess(one, z.coerce.number().int().positive().optional().catch(undefined)),
  kind: z.preprocess(one, z.enum(IMPORT_KINDS as [ImportKind, ...ImportKind[]]).catch("both")),
  q: z.preprocess(one, z.string().catch("")),
  page: z.preprocess(one, z.coerce.number().int().min(1).max(1_000_000).catch(1)),
});

export type SearchParams = { directory: number | undefined; kind: ImportKind; q: string; page: number };

/** What a checkbox (and the list of rows shown) carries: enough to find and name the entry later. */
export const entrySchema = z
  .object({
    k: z.enum(["user", "group"]),
    id: z.string().min(1).max(512),
    dn: z.string().max(4096),
    n: z.string().max(1024),
  })
  .transform((e): SelectedEntry => ({ kind: e.k, externalId: e.id, dn: e.dn, name: e.n }));

/** Ticks, "select all", paging, the roles picker and re-running a run. */
export const choicesSchema = z.object({
  shown: z.preprocess(many, z.array(z.string())),
  pick: z.preprocess(many, z.array(z.string())),
  action: z.preprocess(one, z.enum(["select-page", "select-matches", "clear", "find-source", ""]).catch("")),
  goto: z.preprocess(one, z.coerce.number().int().min(1).optional().catch(undefined)),
  total: z.preprocess(one, z.coerce.number().int().min(0).catch(0)),
  copyQ: z.preprocess(one, z.string().max(200).optional().catch(undefined)),
  copyFrom: z.preprocess(one, z.string().max(40).optional().catch(undefined)),
  rerun: z.preprocess(one, z.coerce.number().int().positive().optional().catch(undefined)),
});
