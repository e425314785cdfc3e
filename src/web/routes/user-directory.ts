import type { Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import type { DirectoryLogger } from "../../ldap/client.ts";
import { listEnabledDirectories } from "../../services/directories.ts";
import {
  convertToExternal,
  convertToInternal,
  synchronizeUser,
  type UserSyncReport,
} from "../../services/directory-users.ts";
import { MIN_PASSWORD_LENGTH } from "../../services/passwords.ts";
import type { SecretBox } from "../../services/secrets.ts";
import type { UserChange } from "../../services/sync/entries.ts";
import type { UserDetails } from "../../services/users.ts";
import { redirectAfterPost } from "../flash.ts";
import { type FieldErrors, parseForm } from "../forms/form.ts";
import { passwordSchema } from "../forms/password.ts";
import { toExternalSchema } from "../forms/users.ts";
import { loaded } from "../loaders.ts";
import { render } from "../render.ts";
import { actorOf, errorsOf, redirectWithError } from "../request-helpers.ts";

export interface UserDirectoryDeps {
  db: Db;
  secretBox: SecretBox;
  directoryLogger?: DirectoryLogger;
}

/** "Synchronize now" and conversion between internal and external, for one user. */
export function userDirectoryHandlers(deps: UserDirectoryDeps) {
  const { db } = deps;
  const directoryDeps = { db, secretBox: deps.secretBox, logger: deps.directoryLogger };

  const synchronize = async (req: Request, res: Response) => {
    const user = loaded(res, "user");
    const outcome = await synchronizeUser(directoryDeps, actorOf(res), user.id);
    const back = `/users/${user.id}`;
    if (!outcome.ok) return redirectWithError(req, res, back, outcome.message);
    const report = outcome.value;
    if (report.status === "missing") {
      return redirectWithError(
        req,
        res,
        back,
        `${report.directoryName} no longer has an entry for ${user.username}, so ${user.username} ${report.newlyMissing ? "was" : "stays"} disabled. The user was not deleted and keeps its roles.`,
      );
    }
    redirectAfterPost(req, res, back, syncMessage(report));
  };

  const conversionForm = async (req: Request, res: Response) => {
    const user = loaded(res, "user");
    await renderConversion(req, res, user, 200, {}, {});
  };

  const convert = async (req: Request, res: Response) => {
    const user = loaded(res, "user");
    if (user.kind === "external") {
      const form = parseForm(passwordSchema, req.body);
      if (!form.ok) return renderConversion(req, res, user, 422, form.errors, {});
      const outcome = await convertToInternal(db, actorOf(res), user.id, form.data.password, req.sessionID);
      if (!outcome.ok) return renderConversion(req, res, user, 422, errorsOf(outcome), {});
      return redirectAfterPost(
        req,
        res,
        `/users/${user.id}`,
        `${user.username} is now an internal user and signs in with the password you set. Roles and groups were kept.`,
      );
    }
    const values = { directoryId: String(req.body?.directoryId ?? "") };
    const form = parseForm(toExternalSchema, req.body);
    if (!form.ok) return renderConversion(req, res, user, 422, form.errors, values);
    const outcome = await convertToExternal(directoryDeps, actorOf(res), user.id, form.data.directoryId);
    if (!outcome.ok) return renderConversion(req, res, user, 422, errorsOf(outcome), values);
    redirectAfterPost(
      req,
      res,
      `/users/${user.id}`,
      `${user.username} is now an external user of ${outcome.value.directoryName} and signs in with the directory password. Roles and groups were kept.`,
    );
  };

  async function renderConversion(
    req: Request,
    res: Response,
    user: UserDetails,
    status: number,
    errors: FieldErrors,
    values: Record<string, string>,
  ) {
    const directories = user.kind === "internal" ? await listEnabledDirectories(db) : [];
    render(
      req,
      res,
      "users/conversion",
      {
        title: `Convert ${user.username}`,
        user,
        directories: directories.map((d) => ({ id: d.id, name: d.name })),
        errors,
        values,
        minPasswordLength: MIN_PASSWORD_LENGTH,
      },
      { status },
    );
  }

  return { synchronize, conversionForm, convert };
}

const FIELD_NAMES: Record<string, string> = {
  username: "username",
  fullName: "full name",
  email: "email",
  department: "department",
  phone: "phone",
  dn: "DN",
  externalId: "unique id",
  enabled: "sign-in",
  missingInDirectory: "missing in directory",
};

function syncMessage(report: Extract<UserSyncReport, { status: "updated" | "unchanged" }>): string {
  const entries = Object.entries(report.changes);
  if (entries.length === 0) return `Synchronized with ${report.directoryName}: nothing had changed.`;
  const described = entries.map(([field, change]) => describeChange(field, change, report.changes));
  const relinked =
    report.foundBy === "id" ? "" : ` (found by ${report.foundBy === "dn" ? "DN" : "username"})`;
  return `Synchronized with ${report.directoryName}${relinked}: ${described.join("; ")}.`;
}

function describeChange(field: string, [from, to]: UserChange, changes: Record<string, UserChange>): string {
  const name = FIELD_NAMES[field] ?? field;
  if (field === "enabled") {
    return to
      ? "enabled again, as the directory no longer marks the account disabled"
      : "disabled, as the directory marks the account disabled";
  }
  if (field === "missingInDirectory") {
    return "enabled" in changes
      ? "the entry exists again"
      : "the entry exists again (the user stays disabled until you enable it)";
  }
  const show = (v: unknown) => (v === null || v === undefined || v === "" ? "(empty)" : `“${String(v)}”`);
  return `${name} ${show(from)} → ${show(to)}`;
}
