import { z } from "zod";
import { groupNameProblem } from "../../services/groups.ts";

export const groupSchema = z.object({
  name: z.string().superRefine((value, ctx) => {
    const problem = groupNameProblem(value);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  }),
  description: z.string().trim().max(500, "Use at most 500 characters.").default(""),
});
