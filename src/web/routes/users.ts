import { type Request, type Response, Router } from "express";
import { z } from "zod";
import type { Db } from "../../db/client.ts";
import { usernameProblem } from "../../services/names.ts";
import { MIN_PASSWORD_LENGTH } from "../../services/passwords.ts";
import { PERMISSIONS } from "../../services/permissions.ts";
import {
  decodeCursor,
  encodeCursor,
  formatCount,
  LIST_FILTERS,
  LIST_SORTS,
  type ListFilter,
  type ListPage,
  type ListSort,
  listEntries,
} from "../../services/user-list.ts";
import {
  createInternalUser,
  getUser,
  groupsOfUser,
  resetPassword,
  setLoginEnabled,
  type UserDetails,
  updateAccount,
} from "../../services/users.ts";
import { requirePermission } from "../auth-middleware.ts";
import { redirectAfterPost } from "../flash.ts";
import { type FieldErrors, parseForm, renderInvalid } from "../forms.ts";
import { render } from "../render.ts";
import {
  actorOf,
  errorsOf,
  idParam,
  linkIsGone,
  manyIds,
  queryText,
  redirectWithError,
  safeListHref,
  viewHelpers,
} from "../request-helpers.ts";
import { type AssignmentRouteDeps, assignmentRoutes, loadAssignmentsView } from "./roles.ts";
import { type UserDirectoryDeps, userDirectoryRoutes } from "./user-directory.ts";

const FILTER_LABELS: Record<ListFilter, string> = {
  all: "All",
  "internal-users": "Internal users",
  "external-users": "External users",
  "internal-groups": "Internal groups",
  "external-groups": "External groups",
};

const optionalText = (max: number) =>
  z.string().trim().max(max, `Use at most ${max} characters.`).default("");

const accountSchema = z.object({
  fullName: optionalText(200),
  email: z.union([z.literal(""), z.email("Enter an email address like name@example.com.")]).default(""),
  department: optionalText(200),
  phone: optionalText(64),
});

const passwordFields = {
  password: z
    .string()
    .min(MIN_PASSWORD_LENGTH, `Use at least ${MIN_PASSWORD_LENGTH} characters.`)
    .max(1024, "Use at most 1024 characters."),
  passwordConfirmation: z.string(),
};

const passwordsMatch = {
  check: (v: { password: string; passwordConfirmation: string }) => v.password === v.passwordConfirmation,
  params: { path: ["passwordConfirmation"], message: "The passwords don't match." },
};

export const passwordSchema = z.object(passwordFields).refine(passwordsMatch.check, passwordsMatch.params);

const newUserSchema = accountSchema
  .extend({
    username: z.string().superRefine((value, ctx) => {
      const problem = usernameProblem(value);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
    ...passwordFields,
  })
  .refine(passwordsMatch.check, passwordsMatch.params);

const selectionSchema = z.object({
  action: z.enum(["enable", "disable", "add-to-group", "copy-roles"], { message: "Choose an action." }),
});

export type UsersRouteDeps = { db: Db } & UserDirectoryDeps;

export function usersRoutes(deps: UsersRouteDeps): Router {
  const { db } = deps;
  const router = Router();
  router.use("/users", requirePermission(PERMISSIONS.manageUsers));

  router.get("/users", async (req, res) => {
    const state = listState(req);
    const page = await listEntries(db, {
      filter: state.filter,
      search: state.q,
      sort: state.sort,
      after: decodeCursor(req.query.after),
      before: decodeCursor(req.query.before),
    });
    const view = listView(state, page);
    const focusStatus = linkIsGone(req, {
      "page-next": view.nextHref !== null,
      "page-previous": view.previousHref !== null,
      "sort-name": page.entries.length > 0,
    });
    render(
      req,
      res,
      "users/index",
      { title: "Users and groups", ...view, focusStatus, ...viewHelpers },
      {
        partial: "users/_user-list",
      },
    );
  });

  router.get("/users/new", (req, res) => {
    renderNewUser(req, res, 200, {}, {});
  });

  router.post("/users", async (req, res) => {
    const values = pick(req.body, ["username", "fullName", "email", "department", "phone"]);
    const form = parseForm(newUserSchema, req.body);
    if (!form.ok) return renderNewUser(req, res, 422, form.errors, values);
    const outcome = await createInternalUser(db, actorOf(res), form.data);
    if (!outcome.ok) return renderNewUser(req, res, 422, errorsOf(outcome), values);
    redirectAfterPost(req, res, `/users/${outcome.value.id}`, `User ${outcome.value.username} was created.`);
  });

  // Bulk actions on the users selected in the list.
  router.post("/users/selection", async (req, res) => {
    const back = safeListHref(req.body?.returnTo);
    const ids = manyIds(req.body?.user);
    const form = parseForm(selectionSchema, req.body);
    if (!form.ok) return redirectWithError(req, res, back, "Choose what to do with the selected users.");
    if (ids.length === 0) return redirectWithError(req, res, back, "Select at least one user first.");
    const query = ids.map((id) => `user=${id}`).join("&");
    if (form.data.action === "add-to-group") return res.redirect(303, `/group-memberships/new?${query}`);
    if (form.data.action === "copy-roles")
      return res.redirect(303, `/role-copies/new?${query.replaceAll("user=", "to=")}`);
    const enabled = form.data.action === "enable";
    const outcome = await setLoginEnabled(db, actorOf(res), ids, enabled);
    if (!outcome.ok) return redirectWithError(req, res, back, outcome.message);
    redirectAfterPost(req, res, back, enableMessage(outcome.value, enabled));
  });

  router.get("/users/:id", async (req, res, next) => {
    const user = await loadUser(req);
    if (!user) return next();
    await renderDetails(req, res, user, 200, {}, {});
  });

  router.post("/users/:id", async (req, res, next) => {
    const user = await loadUser(req);
    if (!user) return next();
    const values = pick(req.body, ["fullName", "email", "department", "phone"]);
    const form = parseForm(accountSchema, req.body);
    if (!form.ok) return renderDetails(req, res, user, 422, form.errors, values);
    const outcome = await updateAccount(db, actorOf(res), user.id, form.data);
    if (!outcome.ok) return renderDetails(req, res, user, 422, errorsOf(outcome), values);
    const message =
      outcome.value.changed.length > 0 ? `${user.username}'s details were saved.` : "Nothing was changed.";
    redirectAfterPost(req, res, `/users/${user.id}`, message);
  });

  router.post("/users/:id/login-status", async (req, res, next) => {
    const user = await loadUser(req);
    if (!user) return next();
    const enabled = req.body?.status === "enabled";
    if (!enabled && req.body?.status !== "disabled") return next();
    const outcome = await setLoginEnabled(db, actorOf(res), [user.id], enabled);
    if (!outcome.ok) return redirectWithError(req, res, `/users/${user.id}`, outcome.message);
    redirectAfterPost(req, res, `/users/${user.id}`, enableMessage(outcome.value, enabled));
  });

  router.get("/users/:id/password", async (req, res, next) => {
    const user = await loadUser(req);
    if (!user) return next();
    renderPassword(req, res, user, 200, {});
  });

  router.post("/users/:id/password", async (req, res, next) => {
    const user = await loadUser(req);
    if (!user) return next();
    const form = parseForm(passwordSchema, req.body);
    if (!form.ok) return renderPassword(req, res, user, 422, form.errors);
    const outcome = await resetPassword(db, actorOf(res), user.id, form.data.password, req.sessionID);
    if (!outcome.ok) return renderPassword(req, res, user, 422, errorsOf(outcome));
    redirectAfterPost(
      req,
      res,
      `/users/${user.id}`,
      `${user.username}'s password was changed. Their other sessions were signed out.`,
    );
  });

  const assignments: AssignmentRouteDeps = {
    db,
    subjectType: "user",
    basePath: "/users",
    load: async (id) => {
      const user = await getUser(db, id);
      return user ? { id: user.id, name: user.username } : null;
    },
    renderInvalid: async (req, res, id, errors, values) => {
      const user = await getUser(db, id);
      if (user) await renderDetails(req, res, user, 422, errors, values);
    },
  };
  router.use(assignmentRoutes(assignments));
  router.use(userDirectoryRoutes(deps));

  async function loadUser(req: Request): Promise<UserDetails | null> {
    const id = idParam(req);
    return id === null ? null : getUser(db, id);
  }

  async function renderDetails(
    req: Request,
    res: Response,
    user: UserDetails,
    status: number,
    errors: FieldErrors,
    values: Record<string, unknown>,
  ): Promise<void> {
    const [memberOf, assignmentsView] = await Promise.all([
      groupsOfUser(db, user.id),
      loadAssignmentsView(db, { type: "user", id: user.id }, `/users/${user.id}`),
    ]);
    const data = {
      title: user.username,
      user,
      memberOf,
      ...assignmentsView,
      errors,
      values: { ...accountValuesOf(user), ...values },
      isSelf: res.locals.currentUser?.id === user.id,
      ...viewHelpers,
    };
    if (status === 422) return renderInvalid(req, res, "users/show", data);
    render(req, res, "users/show", data, { status });
  }

  return router;
}

function accountValuesOf(user: UserDetails) {
  return { fullName: user.fullName, email: user.email, department: user.department, phone: user.phone };
}

function renderNewUser(
  req: Request,
  res: Response,
  status: number,
  errors: FieldErrors,
  values: Record<string, unknown>,
): void {
  render(
    req,
    res,
    "users/new",
    { title: "New user", errors, values, minPasswordLength: MIN_PASSWORD_LENGTH },
    { status },
  );
}

function renderPassword(req: Request, res: Response, user: UserDetails, status: number, errors: FieldErrors) {
  render(
    req,
    res,
    "users/password",
    { title: `Reset ${user.username}'s password`, user, errors, minPasswordLength: MIN_PASSWORD_LENGTH },
    { status },
  );
}

function enableMessage(result: { changed: string[]; unchanged: string[] }, enabled: boolean): string {
  const verb = enabled ? "enabled" : "disabled";
  const names = (list: string[]) => (list.length <= 3 ? list.join(", ") : `${list.length} users`);
  const parts: string[] = [];
  if (result.changed.length > 0) {
    parts.push(`${names(result.changed)} ${result.changed.length === 1 ? "was" : "were"} ${verb}.`);
  }
  if (result.unchanged.length > 0) {
    parts.push(
      `${names(result.unchanged)} ${result.unchanged.length === 1 ? "was" : "were"} already ${verb}.`,
    );
  }
  return parts.join(" ");
}

function pick(body: unknown, fields: string[]): Record<string, string> {
  const source = (body ?? {}) as Record<string, unknown>;
  return Object.fromEntries(fields.map((f) => [f, typeof source[f] === "string" ? source[f] : ""]));
}

interface ListState {
  filter: ListFilter;
  q: string;
  sort: ListSort;
}

function listState(req: Request): ListState {
  const filter = LIST_FILTERS.find((f) => f === req.query.filter) ?? "all";
  const sort = LIST_SORTS.find((s) => s === req.query.sort) ?? "name";
  return { filter, q: queryText(req.query.q), sort };
}

/** The list's address for a state; defaults are left out so URLs stay short. */
export function listHref(state: ListState, page: { after?: string; before?: string } = {}): string {
  const params = new URLSearchParams();
  if (state.filter !== "all") params.set("filter", state.filter);
  if (state.q) params.set("q", state.q);
  if (state.sort !== "name") params.set("sort", state.sort);
  if (page.after) params.set("after", page.after);
  if (page.before) params.set("before", page.before);
  const query = params.toString();
  return query ? `/users?${query}` : "/users";
}

function listView(state: ListState, page: ListPage) {
  const currentHref = listHref(state);
  return {
    state,
    page,
    currentHref,
    filters: LIST_FILTERS.map((filter) => ({
      filter,
      label: FILTER_LABELS[filter],
      count: formatCount(page.counts, filter),
      href: listHref({ ...state, filter }),
      current: filter === state.filter,
    })),
    sortHref: listHref({ ...state, sort: state.sort === "name" ? "-name" : "name" }),
    nextHref: page.next ? listHref(state, { after: encodeCursor(page.next) }) : null,
    previousHref: page.previous ? listHref(state, { before: encodeCursor(page.previous) }) : null,
    total: page.counts[state.filter],
    totalText: formatCount(page.counts, state.filter),
    filterLabel: FILTER_LABELS[state.filter],
  };
}
