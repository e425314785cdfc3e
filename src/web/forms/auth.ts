import { z } from "zod";
import { passwordFields, withMatchingPasswords } from "./password.ts";
import { emailField, usernameField } from "./users.ts";

export const loginSchema = z.object({
  username: z.string().trim().min(1, "Enter your username.").max(256, "That username is too long."),
  password: z.string().min(1, "Enter your password.").max(1024, "That password is too long."),
  returnTo: z.string().optional(),
});

/** The first administrator, created on a fresh installation. */
export const setupSchema = withMatchingPasswords(
  z.object({
    username: usernameField,
    fullName: z.string().trim().max(200, "Use at most 200 characters.").default(""),
    email: emailField,
    ...passwordFields,
  }),
);
