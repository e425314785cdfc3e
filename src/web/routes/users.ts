import type { NextFunction, Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import { MIN_PASSWORD_LENGTH } from "../../services/passwords.ts";
import {
  decodeCursor,
  encodeCursor,
  exportEntries,
  formatCount,
  LIST_FILTERS,
  LIST_SORTS,
  type ListFilter,
  type ListPage,
  type ListSort,
  listEntries,
  PAGE_SIZE,
  PAGE_SIZES,
  roundEstimate,
  SORT_COLUMNS,
  type SortColumn,
  sortColumnOf,
  totalOf,
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
import { csvFilename, streamCsv } from "../csv.ts";
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
      const position = pagePosition(req);
      const page = await listEntries(db, {
        filter: state.filter,
        search: state.q,
        sort: state.sort,
        after: position.after,
        before: position.before,
        end: position.end,
        pageSize: state.size,
      });
      const view = listView(state, page, position);
      const focusStatus = linkIsGone(req, {
        "page-first": view.pagination.firstHref !== null,
        "page-previous": view.pagination.previousHref !== null,
        "page-next": view.pagination.nextHref !== null,
        "page-last": view.pagination.lastHref !== null,
        ...Object.fromEntries(SORT_COLUMNS.map((c) => [`sort-${c}`, page.entries.length > 0])),
      });
      render(
        req,
        res,
        "users/index",
        { title: "Users and groups", ...view, focusStatus, ...viewHelpers },
        { partial: "users/_user-list" },
      );
    },

    /** The list as CSV: every row the filter and search match, in the list's order, streamed. */
    async exportCsv(req: Request, res: Response) {
      const state = listState(req);
      const rows = exportEntries(db, { filter: state.filter, search: state.q, sort: state.sort });
      await streamCsv(res, csvFilename("users", new Date()), CSV_COLUMNS, csvBatches(rows));
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
  size: number;
  /** Without JavaScript, "Select all" reloads the page with every user ticked. */
  selectAll: boolean;
}

function listState(req: Request): ListState {
  const filter = LIST_FILTERS.find((f) => f === req.query.filter) ?? "all";
  const sort = LIST_SORTS.find((s) => s === req.query.sort) ?? "name";
  const size = PAGE_SIZES.find((n) => String(n) === req.query.size) ?? PAGE_SIZE;
  return { filter, q: queryText(req.query.q), sort, size, selectAll: req.query.select === "all" };
}

/** Where the page lies: after or before a row, or at the end; and its number when the link knew it. */
interface PagePosition {
  after: ReturnType<typeof decodeCursor>;
  before: ReturnType<typeof decodeCursor>;
  end: boolean;
  number: number | null;
}

function pagePosition(req: Request): PagePosition {
  const after = decodeCursor(req.query.after);
  const before = after ? null : decodeCursor(req.query.before);
  const end = !after && !before && req.query.at === "end";
  const raw =
    typeof req.query.page === "string" && /^[1-9]\d{0,6}$/.test(req.query.page) ? req.query.page : "";
  const number = after || before ? (raw ? Number(raw) : null) : end ? null : 1;
  return { after, before, end, number };
}

interface PageLink {
  after?: string;
  before?: string;
  end?: boolean;
  page?: number | null;
  selectAll?: boolean;
}

/** The list's address for a state; defaults are left out so URLs stay short. */
export function listHref(state: ListState, link: PageLink = {}, path = "/users"): string {
  const params = new URLSearchParams();
  if (state.filter !== "all") params.set("filter", state.filter);
  if (state.q) params.set("q", state.q);
  if (state.sort !== "name") params.set("sort", state.sort);
  if (state.size !== PAGE_SIZE) params.set("size", String(state.size));
  if (link.after) params.set("after", link.after);
  if (link.before) params.set("before", link.before);
  if (link.end) params.set("at", "end");
  if (link.page && (link.after || link.before)) params.set("page", String(link.page));
  if (link.selectAll) params.set("select", "all");
  const query = params.toString();
  return query ? `${path}?${query}` : path;
}

const SORT_LABELS: Record<SortColumn, { label: string; up: string; down: string }> = {
  name: { label: "Name", up: "A to Z", down: "Z to A" },
  kind: { label: "Kind", up: "external first", down: "internal first" },
  directory: { label: "Directory", up: "A to Z", down: "Z to A" },
  status: { label: "Sign-in", up: "disabled first", down: "enabled first" },
  activity: { label: "Last activity", up: "oldest first", down: "newest first" },
};

/** The column headers' links: the current column turns around, another starts in its usual direction. */
function sortLinks(state: ListState) {
  const current = sortColumnOf(state.sort);
  const descending = state.sort.startsWith("-");
  return SORT_COLUMNS.map((column) => {
    const labels = SORT_LABELS[column];
    const isCurrent = column === current;
    const nextSort = (
      isCurrent ? (descending ? column : `-${column}`) : column === "activity" ? "-activity" : column
    ) as ListSort;
    return {
      column,
      label: labels.label,
      current: isCurrent,
      ariaSort: isCurrent ? (descending ? "descending" : "ascending") : null,
      arrow: isCurrent ? (descending ? "▼" : "▲") : "",
      description: isCurrent
        ? `(${descending ? labels.down : labels.up}; sort ${descending ? labels.up : labels.down})`
        : `(sort ${nextSort.startsWith("-") ? labels.down : labels.up})`,
      href: listHref({ ...state, sort: nextSort, selectAll: false }),
      order: `by ${labels.label.toLowerCase()}, ${descending ? labels.down : labels.up}`,
    };
  });
}

function listView(state: ListState, page: ListPage, position: PagePosition) {
  const { total, atLeast, about } = totalOf(page.counts, state.filter);
  // An estimated count gives the pages' number roughly; a lower bound, not at all.
  const pages = atLeast
    ? null
    : Math.max(1, about ? roundEstimate(total / state.size) : Math.ceil(total / state.size));
  const pagesText = pages === null ? "many" : `${about ? "about " : ""}${pages.toLocaleString("en")}`;
  // The last page's number is known only when the count is exact.
  const number = position.end ? (about ? null : pages) : position.number;
  const neighbour = (offset: number) => (number === null ? null : number + offset);
  const sorts = sortLinks(state);
  const pagination = {
    firstHref: page.previous ? listHref(state) : null,
    previousHref: page.previous
      ? listHref(state, { before: encodeCursor(page.previous), page: neighbour(-1) })
      : null,
    nextHref: page.next ? listHref(state, { after: encodeCursor(page.next), page: neighbour(1) }) : null,
    // The end is a place only when the count is known: a lower bound doesn't say where it is.
    lastHref: page.next && pages !== null ? listHref(state, { end: true }) : null,
    pageText:
      !page.previous && !page.next
        ? ""
        : number !== null
          ? `Page ${number.toLocaleString("en")} of ${pagesText}`
          : pages !== null
            ? `${capitalized(pagesText)} pages`
            : "",
  };
  const here: PageLink = {
    after: position.after ? encodeCursor(position.after) : undefined,
    before: position.before ? encodeCursor(position.before) : undefined,
    end: position.end,
    page: position.number,
  };
  return {
    state,
    page,
    currentHref: listHref({ ...state, selectAll: false }, here),
    selectAllHref: listHref(state, { ...here, selectAll: true }),
    unselectHref: listHref({ ...state, selectAll: false }, here),
    exportHref: listHref({ ...state, size: PAGE_SIZE, selectAll: false }, {}, "/users.csv"),
    filters: LIST_FILTERS.map((filter) => ({
      filter,
      label: FILTER_LABELS[filter],
      count: formatCount(page.counts, filter),
      href: listHref({ ...state, filter, selectAll: false }),
      current: filter === state.filter,
    })),
    sorts,
    sortOrder: sorts.find((s) => s.current)?.order ?? "",
    pagination,
    pageSizes: PAGE_SIZES,
    total: page.counts[state.filter],
    totalText: formatCount(page.counts, state.filter),
    statusCount: capitalized(formatCount(page.counts, state.filter)),
    filterLabel: FILTER_LABELS[state.filter],
  };
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

const CSV_COLUMNS = [
  "Type",
  "Name",
  "Full name or description",
  "Email",
  "Kind",
  "Directory",
  "Sign-in",
  "Missing in directory",
  "Last activity (UTC)",
];

async function* csvBatches(batches: ReturnType<typeof exportEntries>): AsyncGenerator<string[][]> {
  for await (const batch of batches) {
    yield batch.map((e) => [
      e.type,
      e.name,
      e.detail,
      e.email,
      e.kind,
      e.directoryName ?? (e.kind === "external" ? "(deleted directory)" : ""),
      e.enabled === null ? "" : e.enabled ? "enabled" : "disabled",
      e.missingInDirectory ? "yes" : "no",
      e.lastActivityAt ? e.lastActivityAt.toISOString() : "",
    ]);
  }
}
