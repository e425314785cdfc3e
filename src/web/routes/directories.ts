import { createHmac, randomBytes } from "node:crypto";
import type { Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import { isPresetId, PRESETS } from "../../ldap/presets.ts";
import type { ConnectionTestResult } from "../../ldap/test-connection.ts";
import {
  type ConnectionSettings,
  createDirectory,
  type Directory,
  decideBindPassword,
  defaultRolesOf,
  deleteDirectory,
  deletionImpact,
  type FormTestOutcome,
  getDirectory,
  listDirectories,
  listRoleChoices,
  moveDirectory,
  recordFormTest,
  setDirectoryEnabled,
  signInGroupChoices,
  signInGroupNames,
  testConnectionSettings,
  testSavedDirectory,
  updateDirectory,
} from "../../services/directories.ts";
import type { SecretBox } from "../../services/secrets.ts";
import { type TestView, testView } from "../connection-test-view.ts";
import { type Flash, flash, redirectWhenSaved } from "../flash.ts";
import {
  applyPreset,
  type DirectoryFormValues,
  displayValues,
  formValuesOf,
  newFormValues,
  PRESET_CHOICES,
  readDirectoryForm,
  SIGN_IN_CHOICES,
  type SubmittedDirectoryForm,
  tickedGroupIds,
  validateDirectoryForm,
} from "../forms/directory-form.ts";
import type { FieldErrors } from "../forms/form.ts";
import { loaded, paramLoader } from "../loaders.ts";
import { render, wantsPartial } from "../render.ts";
import { actorOf } from "../request-helpers.ts";

export interface DirectoryRouteDeps {
  db: Db;
  secretBox: SecretBox;
}

const BASE = "/settings/directories";

/** Settings › Directories: list, add, edit, reorder, enable/disable, delete, test connection. */
declare module "express-session" {
  interface SessionData {
    /** The last test of a new directory's form (see formTestKey). */
    directoryFormTest?: FormTestOutcome & { key: string };
    /**
     * The bind password last typed in a directory form, encrypted: a form shown again (after a
     * test, or with errors) never carries it back, so the next submit of the same form, for the
     * same servers and account, uses it when the field is left blank.
     */
    directoryFormPassword?: { account: string; encrypted: string; at: number };
  }
}

export function directoryHandlers({ db, secretBox }: DirectoryRouteDeps) {
  const renderForm = formRenderer(db);
  const renderList = listRenderer(db);
  const passwords = keptPasswords(secretBox);

  return {
    load: paramLoader("directory", (id) => getDirectory(db, id), notFound),

    list(req: Request, res: Response) {
      return renderList(req, res, {});
    },

    newForm(req: Request, res: Response) {
      const preset =
        typeof req.query.preset === "string" && isPresetId(req.query.preset) ? req.query.preset : "openldap";
      return renderForm(req, res, { directory: null, values: newFormValues(preset) });
    },

    async create(req: Request, res: Response) {
      const form = passwords.read(req, null);
      const roleChoices = await listRoleChoices(db);
      const checked = validateDirectoryForm(form, { roleIds: new Set(roleChoices.map((r) => r.id)) });
      const retype = form.bindPassword !== "";
      if (!checked.ok)
        return renderForm(req, res, { directory: null, values: form.values, errors: checked.errors, retype });
      const outcome = await createDirectory(db, secretBox, actorOf(res), checked.settings);
      if (!outcome.ok) {
        const errors = { [outcome.field]: outcome.message };
        return renderForm(req, res, { directory: null, values: form.values, errors, retype });
      }
      req.log.info({ directoryId: outcome.value.id }, "directory created");
      delete req.session.directoryFormPassword;
      // The test the administrator just ran on these very settings is the directory's last test.
      const tested = req.session.directoryFormTest;
      delete req.session.directoryFormTest;
      const fresh =
        tested !== undefined &&
        Date.now() - tested.at < FORM_TEST_KEPT_MS &&
        tested.key === formTestKey(checked.settings, checked.settings.bindPassword);
      const recorded = fresh ? await recordFormTest(db, outcome.value.id, tested) : null;
      redirectToList(
        req,
        res,
        "success",
        recorded
          ? `Added the directory “${outcome.value.name}”. Its last test: ${lastTestOf(recorded)}.`
          : `Added the directory “${outcome.value.name}”. Test its connection to see what it holds.`,
      );
    },

    /** The form again, with a preset's mapping filled in. */
    async applyPreset(req: Request, res: Response) {
      const directory = await directoryOfForm(db, req.body);
      if (directory === undefined) return notFound(req, res);
      const form = passwords.read(req, directory);
      const preset = isPresetId(form.values.preset) ? form.values.preset : "openldap";
      await renderForm(req, res, {
        directory,
        values: applyPreset(form.values, preset),
        presetApplied: PRESETS[preset].label,
        retype: form.bindPassword !== "",
        partial: "directories/_preset-applied",
      });
    },

    /** Testing the settings in the form, saved or not. */
    async testSettings(req: Request, res: Response) {
      const directory = await directoryOfForm(db, req.body);
      if (directory === undefined) return notFound(req, res);
      const form = passwords.read(req, directory);
      const retype = form.bindPassword !== "";
      const checked = validateDirectoryForm(form, { roleIds: new Set(), forTest: true });
      const decision = checked.ok ? decideBindPassword(directory, checked.settings, secretBox) : null;
      if (!checked.ok || !decision?.ok) {
        const errors = !checked.ok
          ? checked.errors
          : { bindPassword: decision?.ok === false ? decision.message : "" };
        // htmx asked for the result region; the form with its errors replaces the whole form instead,
        // and the result region says why nothing was tested.
        return renderForm(req, res, {
          directory,
          values: form.values,
          errors,
          retype,
          test: notTested(errors),
          partial: "directories/_directory-form-replacement",
        });
      }
      const result = await testConnectionSettings(checked.settings, decision.password, req.log);
      logTest(req, directory?.id ?? null, result, false);
      if (directory === null) {
        // Kept for "Add directory": a keyed digest of what was tested, never the password itself.
        req.session.directoryFormTest = {
          key: formTestKey(checked.settings, decision.password),
          ok: result.ok,
          usersCount: result.usersCount ?? null,
          groupsCount: result.groupsCount ?? null,
          at: Date.now(),
        };
      }
      await renderForm(req, res, {
        directory,
        values: form.values,
        test: testView(result, { saved: false, secret: decision.password }),
        retype,
        partial: "directories/_connection-test",
      });
    },

    show(_req: Request, res: Response) {
      res.redirect(303, `${BASE}/${loaded(res, "directory").id}/edit`);
    },

    /**
     * The form. `?groups=` narrows the imported groups offered for sign-in (those chosen always
     * show); htmx then asks for the sign-in section alone, sending the choices not saved yet.
     */
    async edit(req: Request, res: Response) {
      const directory = loaded(res, "directory");
      const stored = formValuesOf(directory, await defaultRolesOf(db, directory.id));
      const search = req.query.groups;
      if (typeof search !== "string") return renderForm(req, res, { directory, values: stored });
      const { signInPolicy, signInGroupIds } = readDirectoryForm(req.query, directory).values;
      await renderForm(req, res, {
        directory,
        values: { ...stored, signInPolicy, signInGroupIds },
        groupSearch: search.trim().slice(0, 200),
        partial: "directories/_sign-in-fields",
      });
    },

    async update(req: Request, res: Response) {
      const directory = loaded(res, "directory");
      const form = passwords.read(req, directory);
      const roleChoices = await listRoleChoices(db);
      const checked = validateDirectoryForm(form, { roleIds: new Set(roleChoices.map((r) => r.id)) });
      const retype = form.bindPassword !== "";
      if (!checked.ok)
        return renderForm(req, res, { directory, values: form.values, errors: checked.errors, retype });
      const outcome = await updateDirectory(db, secretBox, actorOf(res), directory.id, checked.settings);
      if (!outcome.ok) {
        const errors = { [outcome.field]: outcome.message };
        return renderForm(req, res, { directory, values: form.values, errors, retype });
      }
      req.log.info({ directoryId: directory.id }, "directory updated");
      delete req.session.directoryFormPassword;
      redirectToList(req, res, "success", `Saved the directory “${outcome.value.name}”.`);
    },

    /** Testing the saved directory: the result is shown in the list. */
    async testSaved(req: Request, res: Response) {
      const tested = await testSavedDirectory(
        db,
        secretBox,
        actorOf(res),
        loaded(res, "directory").id,
        req.log,
      );
      if (!tested) return notFound(req, res);
      logTest(req, tested.directory.id, tested.result, true);
      await renderList(req, res, {
        test: testView(tested.result, { saved: true, directoryName: tested.directory.name }),
      });
    },

    async move(req: Request, res: Response) {
      const direction = req.body?.direction;
      if (direction !== "up" && direction !== "down") return badRequest(req, res);
      const outcome = await moveDirectory(db, actorOf(res), loaded(res, "directory").id, direction);
      if (!outcome.ok) return refused(req, res, renderList, outcome.message);
      const { directory, place, moved } = outcome.value;
      const message = moved
        ? `Moved “${directory.name}” ${direction}: it is now number ${place} in the sign-in order.`
        : `“${directory.name}” is already ${direction === "up" ? "first" : "last"}.`;
      if (!wantsPartial(req)) return redirectToList(req, res, "success", message);
      const control = focusAfterMove(direction, place, (await listDirectories(db)).length);
      await renderList(req, res, { notice: message, focus: { id: directory.id, control } });
    },

    async setEnabled(req: Request, res: Response) {
      const enabled = req.body?.enabled;
      if (enabled !== "true" && enabled !== "false") return badRequest(req, res);
      const outcome = await setDirectoryEnabled(
        db,
        actorOf(res),
        loaded(res, "directory").id,
        enabled === "true",
      );
      if (!outcome.ok) return refused(req, res, renderList, outcome.message);
      const { directory } = outcome.value;
      const message = directory.enabled
        ? `Enabled “${directory.name}”: its users can sign in again.`
        : `Disabled “${directory.name}”: its users can't sign in until it is enabled again. You can still import from it.`;
      if (!wantsPartial(req)) return redirectToList(req, res, "success", message);
      await renderList(req, res, { notice: message, focus: { id: directory.id, control: "toggle" } });
    },

    async deleteForm(req: Request, res: Response) {
      const directory = loaded(res, "directory");
      const impact = await deletionImpact(db, directory.id);
      render(req, res, "directories/delete", {
        title: `Delete ${directory.name}`,
        directory,
        impact,
        errors: {},
      });
    },

    async destroy(req: Request, res: Response) {
      const directory = loaded(res, "directory");
      const outcome = await deleteDirectory(db, actorOf(res), directory.id);
      if (!outcome.ok) {
        const impact = await deletionImpact(db, directory.id);
        const data = {
          title: `Delete ${directory.name}`,
          directory,
          impact,
          errors: { form: outcome.message },
        };
        return render(req, res, "directories/delete", data, { status: 422 });
      }
      const { usersDisabled } = outcome.value;
      req.log.info({ directoryId: directory.id, usersDisabled }, "directory deleted");
      const people =
        usersDisabled === 0
          ? ""
          : ` ${usersDisabled} external user${usersDisabled === 1 ? " was" : "s were"} disabled and keep${usersDisabled === 1 ? "s" : ""} their roles.`;
      redirectToList(req, res, "success", `Deleted the directory “${directory.name}”.${people}`);
    },
  };
}

// ——— Loading ———

/** The directory a submitted form edits: null for a new one, undefined when it no longer exists. */
async function directoryOfForm(db: Db, body: unknown): Promise<Directory | null | undefined> {
  const raw = (body as Record<string, unknown> | undefined)?.directoryId;
  if (raw === undefined || raw === "") return null;
  if (typeof raw !== "string" || !/^[1-9]\d{0,8}$/.test(raw)) return undefined;
  return (await getDirectory(db, Number(raw))) ?? undefined;
}

// ——— Rendering ———

interface FormState {
  directory: Directory | null;
  values: DirectoryFormValues;
  errors?: FieldErrors;
  /** A password was typed: it is not sent back, so the form asks for it again. */
  retype?: boolean;
  test?: TestView;
  presetApplied?: string;
  partial?: string;
  /** Narrows the imported groups offered for the sign-in rule. */
  groupSearch?: string;
}

/** The result region when the form could not be tested: each field to correct, linked. */
function notTested(errors: FieldErrors): TestView & { problems: { field: string; message: string }[] } {
  return {
    ok: false,
    heading: "The connection was not tested",
    summary: "Correct the form first: Roster tests only settings it can read.",
    steps: [],
    notSaved: true,
    problems: Object.entries(errors).map(([field, message]) => ({ field, message })),
  };
}

function formRenderer(db: Db) {
  return async (req: Request, res: Response, state: FormState) => {
    const { directory, errors = {} } = state;
    const roleChoices = await listRoleChoices(db);
    const groupSearch = state.groupSearch ?? "";
    const signInGroups = await signInGroupChoices(db, directory?.id ?? null, {
      chosen: tickedGroupIds(state.values),
      search: groupSearch,
    });
    const heading = directory ? `Edit the directory “${directory.name}”` : "Add a directory";
    render(
      req,
      res,
      "directories/form",
      {
        title: directory ? `Edit ${directory.name}` : "Add a directory",
        heading,
        directory,
        action: directory ? `${BASE}/${directory.id}` : BASE,
        values: displayValues(state.values),
        errors,
        roleChoices,
        presetChoices: PRESET_CHOICES,
        signInChoices: SIGN_IN_CHOICES,
        signInGroups,
        groupSearch,
        passwordHint: passwordHint(directory, state.retype ?? false),
        lastTestText: directory ? lastTestOf(directory) : "",
        test: state.test ?? null,
        presetApplied: state.presetApplied ?? null,
      },
      {
        status: Object.keys(errors).length > 0 ? 422 : 200,
        partial: state.partial ?? "directories/_directory-form",
      },
    );
  };
}

function passwordHint(directory: Directory | null, retype: boolean): string {
  const stored = Boolean(directory?.bindPasswordEncrypted);
  if (retype) {
    return "Kept — the password you typed is held, encrypted, for this form and never sent back to the browser. Leave blank to use it, or type to replace it.";
  }
  if (stored) return "Set — leave blank to keep it.";
  return "Stored encrypted, and never shown again.";
}

interface ListState {
  notice?: string;
  noticeKind?: "success" | "error";
  focus?: { id: number; control: "move-up" | "move-down" | "toggle" };
  test?: TestView;
}

function listRenderer(db: Db) {
  return async (req: Request, res: Response, state: ListState) => {
    const directories = await listDirectories(db);
    const signInText = new Map<number, string>();
    for (const directory of directories) signInText.set(directory.id, await signInOf(db, directory));
    render(
      req,
      res,
      "directories/index",
      {
        title: "Directories",
        directories,
        lastTestOf,
        signInOf: (directory: Directory) => signInText.get(directory.id) ?? "",
        notice: state.notice ?? null,
        noticeKind: state.noticeKind ?? "success",
        focus: state.focus ?? null,
        test: state.test ?? null,
      },
      { partial: "directories/_directory-list" },
    );
  };
}

/** A refused change: said in the list for htmx, or flashed after a redirect without it. */
function refused(req: Request, res: Response, list: ReturnType<typeof listRenderer>, message: string) {
  if (wantsPartial(req)) return list(req, res, { notice: message, noticeKind: "error" });
  return redirectToList(req, res, "error", message);
}

/** The same button keeps focus after a move, unless the directory reached the end it moved towards. */
function focusAfterMove(direction: "up" | "down", place: number, count: number): "move-up" | "move-down" {
  if (direction === "up") return place === 1 ? "move-down" : "move-up";
  return place === count ? "move-up" : "move-down";
}

/** Flash + 303 to the list (sent once the session holding the message is saved). */
function redirectToList(req: Request, res: Response, kind: Flash["kind"], message: string): void {
  flash(req, kind, message);
  redirectWhenSaved(req, res, BASE);
}

const numberFormat = new Intl.NumberFormat("en");

/** Who may sign in through the directory, in the words of the list. */
async function signInOf(db: Db, directory: Directory): Promise<string> {
  if (directory.signInPolicy === "imported") return "Only imported users";
  if (directory.signInPolicy === "anyone") return "Anyone matching the user filter";
  const names = await signInGroupNames(db, directory);
  if (names.length === 0) return "Members of chosen groups: none is left, so nobody";
  const shown = names.slice(0, 3).join(", ");
  return `Members of ${shown}${names.length > 3 ? ` and ${names.length - 3} more` : ""}`;
}

/** How long a test of the form's settings counts for the directory added with them. */
const FORM_TEST_KEPT_MS = 30 * 60_000;

/**
 * The directory form as submitted, with the password typed earlier in the same form when the field
 * came back blank. A typed password is kept (encrypted, in the session) for the form's next submit;
 * it is used only for the same directory, servers and bind account, within FORM_TEST_KEPT_MS.
 */
function keptPasswords(secretBox: SecretBox) {
  const accountOf = (directory: Directory | null, values: DirectoryFormValues) =>
    createHmac("sha256", FORM_TEST_SECRET)
      .update(JSON.stringify([directory?.id ?? null, values.urls.trim(), values.bindDn.trim().toLowerCase()]))
      .digest("base64url");
  return {
    read(req: Request, directory: Directory | null): SubmittedDirectoryForm {
      const form = readDirectoryForm(req.body, directory);
      const account = accountOf(directory, form.values);
      if (form.bindPassword !== "") {
        const encrypted = secretBox.encrypt(form.bindPassword);
        req.session.directoryFormPassword = { account, encrypted, at: Date.now() };
        return form;
      }
      const kept = req.session.directoryFormPassword;
      if (!kept || kept.account !== account || Date.now() - kept.at > FORM_TEST_KEPT_MS) return form;
      try {
        return { ...form, bindPassword: secretBox.decrypt(kept.encrypted) };
      } catch {
        return form; // kept under another key (a restart with a new one): the field asks again
      }
    },
  };
}
/** This process's key for the digests below: a digest from elsewhere matches nothing (no record, no harm). */
const FORM_TEST_SECRET = randomBytes(32);

/** A digest of the settings a test used, the password included, keyed so it reveals nothing. */
function formTestKey(settings: ConnectionSettings, password: string | null): string {
  const connection = {
    urls: settings.urls,
    startTls: settings.startTls,
    caCertPem: settings.caCertPem,
    verifyCertificate: settings.verifyCertificate,
    connectTimeoutMs: settings.connectTimeoutMs,
    operationTimeoutMs: settings.operationTimeoutMs,
    bindMode: settings.bindMode,
    bindDn: settings.bindDn,
    baseDn: settings.baseDn,
    mapping: settings.mapping,
  };
  return createHmac("sha256", FORM_TEST_SECRET)
    .update(JSON.stringify(connection))
    .update("\u0000")
    .update(password ?? "")
    .digest("base64url");
}

export function lastTestOf(directory: Directory): string {
  if (!directory.lastTestedAt) return "Not tested yet";
  const when = `${directory.lastTestedAt.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  if (!directory.lastTestOk) return `Failed (tested ${when})`;
  const people = numberFormat.format(directory.lastUserCount ?? 0);
  const teams = numberFormat.format(directory.lastGroupCount ?? 0);
  const plural = (n: number | null, word: string) => `${word}${n === 1 ? "" : "s"}`;
  return `Works: ${people} ${plural(directory.lastUserCount, "user")}, ${teams} ${plural(directory.lastGroupCount, "group")} (tested ${when})`;
}

function logTest(req: Request, directoryId: number | null, result: ConnectionTestResult, saved: boolean) {
  const failed = result.steps.find((step) => !step.ok);
  req.log.info(
    {
      directoryId,
      saved,
      ok: result.ok,
      serverUrl: result.serverUrl,
      users: result.usersCount,
      groups: result.groupsCount,
      ...(failed
        ? { failedStep: failed.step, reason: failed.error?.kind, ldapCode: failed.error?.ldapCode }
        : {}),
    },
    "directory connection tested",
  );
}

function notFound(req: Request, res: Response): void {
  render(
    req,
    res,
    "errors/error",
    {
      title: "Directory not found",
      heading: "Directory not found",
      message: "There is no such directory: it may have been deleted. Go back to Settings › Directories.",
    },
    { status: 404 },
  );
}

function badRequest(req: Request, res: Response): void {
  render(
    req,
    res,
    "errors/error",
    {
      title: "That request could not be handled",
      heading: "That request could not be handled",
      message: "Reload the page and try again.",
    },
    { status: 400 },
  );
}
