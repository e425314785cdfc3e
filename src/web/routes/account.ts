/**
 * My account (every signed-in user): profile as synced, groups, roles, sign-out, and personal API
 * tokens for those with a console permission. An administrator manages a service user's tokens on
 * /users/:userId/api-tokens with the same partial.
 */
import type { Request, Response } from "express";
import { z } from "zod";
import type { Db } from "../../db/client.ts";
import { createApiToken, listApiTokens, revokeApiToken } from "../../services/api-tokens.ts";
import { PERMISSIONS } from "../../services/permissions.ts";
import { assignmentsOf } from "../../services/roles.ts";
import { getUser, groupsOfUser, type UserDetails, updateAccount } from "../../services/users.ts";
import { redirectAfterPost } from "../flash.ts";
import { type FieldErrors, parseForm } from "../forms/form.ts";
import { accountSchema } from "../forms/users.ts";
import { loaded } from "../loaders.ts";
import { render } from "../render.ts";
import { actorOf, positiveId, redirectWithError } from "../request-helpers.ts";

const EXPIRY_CHOICES = [
  { value: "30", label: "In 30 days" },
  { value: "90", label: "In 90 days" },
  { value: "365", label: "In a year" },
  { value: "never", label: "Never" },
] as const;

export const tokenFormSchema = z.object({
  name: z
    .string({ message: "Name the token, e.g. after the script that uses it." })
    .trim()
    .min(1, "Name the token, e.g. after the script that uses it.")
    .max(100, "Use at most 100 characters."),
  expiry: z.enum(["30", "90", "365", "never"], { message: "Choose when the token expires." }),
});

function expiresAtOf(expiry: z.infer<typeof tokenFormSchema>["expiry"]): Date | null {
  return expiry === "never" ? null : new Date(Date.now() + Number(expiry) * 86_400_000);
}

interface TokenPageOptions {
  status?: number;
  /** The profile form (internal users) submitted with errors. */
  profile?: { errors: FieldErrors; values: Record<string, string> };
  errors?: FieldErrors;
  values?: Record<string, string>;
  /** The token just created, shown this once. */
  created?: { name: string; token: string } | null;
}

export function accountHandlers({ db }: { db: Db }) {
  const tokensView = async (owner: UserDetails, basePath: string, options: TokenPageOptions) => ({
    tokens: await listApiTokens(db, owner.id),
    tokensPath: basePath,
    tokenErrors: options.errors ?? {},
    tokenValues: options.values ?? { name: "", expiry: "90" },
    expiryChoices: EXPIRY_CHOICES,
    created: options.created ?? null,
  });

  const renderAccount = async (req: Request, res: Response, options: TokenPageOptions = {}) => {
    const current = res.locals.currentUser;
    const user = current ? await getUser(db, current.id) : null;
    if (!current || !user) return res.redirect(303, "/login");
    const [memberOf, assignments] = await Promise.all([
      groupsOfUser(db, user.id),
      assignmentsOf(db, { type: "user", id: user.id }),
    ]);
    const mayUseApi = current.permissions.has(PERMISSIONS.manageUsers);
    render(
      req,
      res,
      "account/index",
      {
        title: "My account",
        user,
        memberOf,
        assignments,
        mayUseApi,
        errors: options.profile?.errors ?? {},
        values: options.profile?.values ?? {
          fullName: user.fullName,
          email: user.email,
          department: user.department,
          phone: user.phone,
        },
        ...(mayUseApi ? await tokensView(user, "/account/api-tokens", options) : {}),
      },
      { status: options.status ?? 200 },
    );
  };

  const renderServiceTokens = async (req: Request, res: Response, options: TokenPageOptions = {}) => {
    const user = loaded(res, "user");
    render(
      req,
      res,
      "account/service-tokens",
      {
        title: `API tokens of ${user.username}`,
        user,
        ...(await tokensView(user, `/users/${user.id}/api-tokens`, options)),
      },
      { status: options.status ?? 200 },
    );
  };

  /** Creates a token and answers with the page showing it: never redirected, so it is never stored to show later. */
  const create = async (
    req: Request,
    res: Response,
    owner: UserDetails,
    again: typeof renderAccount,
    pageUrl: string,
  ) => {
    const values = { name: String(req.body?.name ?? ""), expiry: String(req.body?.expiry ?? "") };
    const form = parseForm(tokenFormSchema, req.body);
    if (!form.ok) return again(req, res, { status: 422, errors: form.errors, values });
    const outcome = await createApiToken(db, actorOf(res), owner, {
      name: form.data.name,
      expiresAt: expiresAtOf(form.data.expiry),
    });
    if (!outcome.ok)
      return again(req, res, { status: 422, errors: { [outcome.field]: outcome.message }, values });
    // The page's own address, so Reload shows the list again rather than posting the form again.
    res.set("HX-Replace-Url", pageUrl);
    await again(req, res, {
      status: 201,
      created: { name: outcome.value.view.name, token: outcome.value.token },
    });
  };

  const revoke = async (req: Request, res: Response, ownerId: number, back: string) => {
    const tokenId = positiveId(req.params.tokenId);
    const outcome = tokenId === null ? null : await revokeApiToken(db, actorOf(res), ownerId, tokenId);
    if (!outcome?.ok) return redirectWithError(req, res, back, "That token does not exist.");
    redirectAfterPost(
      req,
      res,
      back,
      outcome.value.alreadyRevoked
        ? `The token “${outcome.value.name}” was already revoked.`
        : `The token “${outcome.value.name}” was revoked: it no longer works.`,
    );
  };

  return {
    show: (req: Request, res: Response) => renderAccount(req, res),

    /** An internal user's own details; an external user's belong to the directory (the service refuses). */
    async updateProfile(req: Request, res: Response) {
      const body = (req.body ?? {}) as Record<string, unknown>;
      const values = Object.fromEntries(
        ["fullName", "email", "department", "phone"].map((f) => [
          f,
          typeof body[f] === "string" ? body[f] : "",
        ]),
      );
      const form = parseForm(accountSchema, req.body);
      if (!form.ok) return renderAccount(req, res, { status: 422, profile: { errors: form.errors, values } });
      const outcome = await updateAccount(db, actorOf(res), res.locals.currentUser?.id ?? 0, form.data);
      if (!outcome.ok) {
        return renderAccount(req, res, {
          status: 422,
          profile: { errors: { [outcome.field]: outcome.message }, values },
        });
      }
      redirectAfterPost(
        req,
        res,
        "/account",
        outcome.value.changed.length > 0 ? "Your details were saved." : "Nothing was changed.",
      );
    },

    async createOwnToken(req: Request, res: Response) {
      const owner = await getUser(db, res.locals.currentUser?.id ?? 0);
      if (!owner) return res.redirect(303, "/login");
      await create(req, res, owner, renderAccount, "/account");
    },

    async revokeOwnToken(req: Request, res: Response) {
      const id = res.locals.currentUser?.id;
      if (id === undefined) return res.redirect(303, "/login");
      await revoke(req, res, id, "/account");
    },

    serviceTokens: (req: Request, res: Response) => renderServiceTokens(req, res),

    async createServiceToken(req: Request, res: Response) {
      const user = loaded(res, "user");
      await create(req, res, user, renderServiceTokens, `/users/${user.id}/api-tokens`);
    },

    async revokeServiceToken(req: Request, res: Response) {
      const user = loaded(res, "user");
      await revoke(req, res, user.id, `/users/${user.id}/api-tokens`);
    },
  };
}
