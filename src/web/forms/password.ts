import { z } from "zod";
import { MIN_PASSWORD_LENGTH } from "../../services/passwords.ts";

/** A new password and its confirmation: the fields every form that sets a password has. */
export const passwordFields = {
  password: z
    .string()
    .min(MIN_PASSWORD_LENGTH, `Use at least ${MIN_PASSWORD_LENGTH} characters.`)
    .max(1024, "Use at most 1024 characters."),
  passwordConfirmation: z.string(),
};

/** Refuses a form whose confirmation differs from its password, beside the confirmation field. */
export function withMatchingPasswords<
  S extends z.ZodType<{ password: string; passwordConfirmation: string }>,
>(schema: S) {
  return schema.refine((v) => v.password === v.passwordConfirmation, {
    path: ["passwordConfirmation"],
    message: "The passwords don't match.",
  });
}

/** Setting a password, alone: a reset, or converting an external user to internal. */
export const passwordSchema = withMatchingPasswords(z.object(passwordFields));
