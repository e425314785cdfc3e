import { z } from "zod";
import { usernameProblem } from "../../services/names.ts";
import { passwordFields, withMatchingPasswords } from "./password.ts";

const optionalText = (max: number) =>
  z.string().trim().max(max, `Use at most ${max} characters.`).default("");

export const usernameField = z.string().superRefine((value, ctx) => {
  const problem = usernameProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

export const emailField = z
  .union([z.literal(""), z.email("Enter an email address like name@example.com.")])
  .default("");

export const accountSchema = z.object({
  fullName: optionalText(200),
  email: emailField,
  department: optionalText(200),
  phone: optionalText(64),
});

export const newUserSchema = withMatchingPasswords(
  accountSchema.extend({ username: usernameField, ...passwordFields }),
);

/** A bulk action on the users selected in the list. */
export const selectionSchema = z.object({
  action: z.enum(["enable", "disable", "add-to-group", "copy-roles"], { message: "Choose an action." }),
});

/** Converting an internal user to an external one of a directory. */
export const toExternalSchema = z.object({
  directoryId: z.coerce
    .number({ message: "Choose a directory." })
    .int()
    .positive("Choose a directory.")
    .max(2_147_483_647, "Choose a directory."),
});
