import type { NextFunction, Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import { MIN_PASSWORD_LENGTH } from "../../services/passwords.ts";
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
import { redirectAfterPost } from "../flash.ts";
import { type FieldErrors, parseForm, renderInvalid } from "../forms/form.ts";
import { passwordSchema } from "../forms/password.ts";
import { accountSchema, newUserSchema, selectionSchema } from "../forms/users.ts";
import { loaded, paramLoader } from "../loaders.ts";
import { render } from "../render.ts";
import {
  actorOf,
  errorsOf,
  linkIsGone,
  manyIds,
  queryText,
  redirectWithError,
  safeListHref,
  viewHelpers,
} from "../request-helpers.ts";
import { assignmentHandlers, loadAssignmentsView } from "./roles.ts";

const FILTER_LABELS: Record<ListFilter, string> = {
  all: "All",
  "internal-users": "Internal users",
  "external-users": "External users",
  "internal-groups": "Internal groups",
  "external-groups": "External groups",
};

export interface UsersRouteDeps {
  db: Db;
}

/** Users: the list with its bulk actions, one user's page, new user, password reset, role assignments. */
export function userHandlers({ db }: UsersRouteDeps) {
  const assignments = assignmentHandlers({
    db,
    subjectOf: (res) => {
      const user = loaded(res, "user");
      return { type: "user", id: user.id, name: user.username, path: `/users/${user.id}` };
    },
    renderInvalid: (req, res, errors, values) =>
      renderDetails(req, res, loaded(res, "user"), 422, errors, values),
  });

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

  return {
    load: paramLoader("user", (id) => getUser(db, id)),

    async list(req: Request, res: Response) {
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
        { partial: "users/_user-list" },
      );
    },

    newForm(req: Request, res: Response) {
      renderNewUser(req, res, 200, {}, {});
    },

    async create(req: Request, res: Response) {
      const values = pick(req.body, ["username", "fullName", "email", "department", "phone"]);
      const form = parseForm(newUserSchema, req.body);
      if (!form.ok) return renderNewUser(req, res, 422, form.errors, values);
      const outcome = await createInternalUser(db, actorOf(res), form.data);
      if (!outcome.ok) return renderNewUser(req, res, 422, errorsOf(outcome), values);
      redirectAfterPost(
        req,
        res,
        `/users/${outcome.value.id}`,
        `User ${outcome.value.username} was created.`,
      );
    },

    /** Bulk actions on the users selected in the list. */
    async changeSelection(req: Request, res: Response) {
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
    },

    async show(req: Request, res: Response) {
      await renderDetails(req, res, loaded(res, "user"), 200, {}, {});
    },

    async update(req: Request, res: Response) {
      const user = loaded(res, "user");
      const values = pick(req.body, ["fullName", "email", "department", "phone"]);
      const form = parseForm(accountSchema, req.body);
      if (!form.ok) return renderDetails(req, res, user, 422, form.errors, values);
      const outcome = await updateAccount(db, actorOf(res), user.id, form.data);
      if (!outcome.ok) return renderDetails(req, res, user, 422, errorsOf(outcome), values);
      const message =
        outcome.value.changed.length > 0 ? `${user.username}'s details were saved.` : "Nothing was changed.";
      redirectAfterPost(req, res, `/users/${user.id}`, message);
    },

    async setLoginStatus(req: Request, res: Response, next: NextFunction) {
      const user = loaded(res, "user");
      const enabled = req.body?.status === "enabled";
      if (!enabled && req.body?.status !== "disabled") return next();
      const outcome = await setLoginEnabled(db, actorOf(res), [user.id], enabled);
      if (!outcome.ok) return redirectWithError(req, res, `/users/${user.id}`, outcome.message);
      redirectAfterPost(req, res, `/users/${user.id}`, enableMessage(outcome.value, enabled));
    },

    passwordForm(req: Request, res: Response) {
      renderPassword(req, res, loaded(res, "user"), 200, {});
    },

    async setPassword(req: Request, res: Response) {
      const user = loaded(res, "user");
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
    },

    addRole: assignments.create,
    removeRole: assignments.destroy,
  };
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
