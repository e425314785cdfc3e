import { z } from "zod";
import { ALL_PERMISSIONS, type Permission } from "../../services/permissions.ts";
import { scopeProblem } from "../../services/roles.ts";

const manyStrings = z.preprocess(
  (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]),
  z.array(z.string()),
);

export const roleSchema = z.object({
  name: z.string().trim().min(1, "Enter a name.").max(100, "Use at most 100 characters."),
  description: z.string().trim().max(500, "Use at most 500 characters.").default(""),
  permissions: manyStrings
    .refine((list) => list.every((p) => (ALL_PERMISSIONS as readonly string[]).includes(p)), {
      message: "Choose permissions from the list.",
    })
    .refine((list) => list.length > 0, { message: "Choose at least one permission." })
    .transform((list) => list as Permission[]),
});

/** A role given to a user or a group, optionally for a scope. */
export const assignmentSchema = z.object({
  roleId: z.coerce
    .number({ message: "Choose a role." })
    .int()
    .positive("Choose a role.")
    .max(2_147_483_647, "Choose a role."),
  scope: z
    .string()
    .trim()
    .max(200, "Use at most 200 characters.")
    .default("")
    .superRefine((value, ctx) => {
      const problem = scopeProblem(value);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
});
