import type { NextFunction, Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import { ALL_PERMISSIONS } from "../../services/permissions.ts";
import {
  addAssignment,
  assignmentCounts,
  assignmentsOf,
  copyAssignments,
  createRole,
  deleteRole,
  getRole,
  holdersOf,
  listRoles,
  PERMISSION_LABELS,
  parseSubject,
  type Role,
  removeAssignment,
  type Subject,
  updateRole,
} from "../../services/roles.ts";
import { decodeCursor, encodeCursor, listEntries, totalOf } from "../../services/user-list.ts";
import { usersByIds } from "../../services/users.ts";
import { redirectAfterPost } from "../flash.ts";
import { type FieldErrors, parseForm, renderInvalid } from "../forms/form.ts";
import { assignmentSchema, roleSchema } from "../forms/roles.ts";
import { loaded, paramLoader } from "../loaders.ts";
import { render } from "../render.ts";
import {
  actorOf,
  errorsOf,
  idParam,
  linkIsGone,
  manyIds,
  queryText,
  redirectWithError,
  viewHelpers,
} from "../request-helpers.ts";

/** How many users and groups the copy form offers at a time. */
const COPY_PAGE_SIZE = 20;

/** Roles: the list, new role, one role's page, delete; copying assignments onto users. */
export function roleHandlers({ db }: { db: Db }) {
  async function renderCopy(
    req: Request,
    res: Response,
    status: number,
    errors: FieldErrors,
    chosen: unknown,
  ) {
    const source = req.method === "GET" ? req.query : req.body;
    const targets = await usersByIds(db, manyIds(source?.to));
    const q = queryText(source?.q);
    const after = decodeCursor(source?.after);
    const before = after ? null : decodeCursor(source?.before);
    const rawPage = typeof source?.page === "string" && /^[1-9]\d{0,6}$/.test(source.page) ? source.page : "";
    const number = after || before ? (rawPage ? Number(rawPage) : null) : 1;
    const page = await listEntries(db, {
      filter: "all",
      search: q,
      sort: "name",
      after,
      before,
      pageSize: COPY_PAGE_SIZE,
    });
    const counts = await assignmentCounts(db, page.entries);
    const { total, atLeast, about } = totalOf(page.counts, "all");
    const pages = atLeast ? null : Math.max(1, Math.ceil(total / COPY_PAGE_SIZE));
    const href = (link: { after?: string; before?: string; page?: number | null } = {}) => {
      const params = new URLSearchParams();
      for (const t of targets) params.append("to", String(t.id));
      if (q) params.set("q", q);
      if (link.after) params.set("after", link.after);
      if (link.before) params.set("before", link.before);
      if (link.page && (link.after || link.before)) params.set("page", String(link.page));
      return `/role-copies/new?${params}`;
    };
    const near = (offset: number) => (number === null ? null : number + offset);
    const pagination = {
      firstHref: page.previous ? href() : null,
      previousHref: page.previous ? href({ before: encodeCursor(page.previous), page: near(-1) }) : null,
      nextHref: page.next ? href({ after: encodeCursor(page.next), page: near(1) }) : null,
      pageText:
        !page.previous && !page.next
          ? ""
          : number !== null
            ? `Page ${number} of ${pages === null ? "many" : `${about ? "about " : ""}${pages.toLocaleString("en")}`}`
            : "",
    };
    const data = {
      title: "Copy roles and assignments",
      targets,
      q,
      sources: page.entries.map((e) => ({
        ...e,
        assignments: counts.get(`${e.type}:${e.id}`) ?? 0,
        isTarget: e.type === "user" && targets.some((target) => target.id === e.id),
      })),
      total,
      totalText: `${about ? "About " : ""}${total.toLocaleString("en")}${atLeast ? "+" : ""}`,
      pagination,
      // The page link pressed (with htmx) is gone from the new page: focus the status, not the page's top.
      focusStatus: linkIsGone(req, {
        "sources-first": pagination.firstHref !== null,
        "sources-previous": pagination.previousHref !== null,
        "sources-next": pagination.nextHref !== null,
      }),
      chosen: typeof chosen === "string" ? chosen : "",
      errors,
      ...viewHelpers,
    };
    if (status === 422)
      return renderInvalid(req, res, "roles/copy", { ...data, values: {} }, "roles/_copy-sources");
    render(req, res, "roles/copy", data, { status, partial: "roles/_copy-sources" });
  }

  return {
    load: paramLoader("role", (id) => getRole(db, id)),

    async list(req: Request, res: Response) {
      render(req, res, "roles/index", {
        title: "Roles",
        roles: await listRoles(db),
        permissionLabels: PERMISSION_LABELS,
      });
    },

    newForm(req: Request, res: Response) {
      renderRoleForm(req, res, null, 200, {}, { name: "", description: "", permissions: [] });
    },

    async create(req: Request, res: Response) {
      const values = roleValues(req.body);
      const form = parseForm(roleSchema, req.body);
      if (!form.ok) return renderRoleForm(req, res, null, 422, form.errors, values);
      const outcome = await createRole(db, actorOf(res), form.data);
      if (!outcome.ok) return renderRoleForm(req, res, null, 422, errorsOf(outcome), values);
      redirectAfterPost(
        req,
        res,
        `/roles/${outcome.value.id}`,
        `The role ${outcome.value.name} was created.`,
      );
    },

    async show(req: Request, res: Response) {
      const role = loaded(res, "role");
      await renderRole(db, req, res, role, 200, {}, roleValues(role));
    },

    async update(req: Request, res: Response) {
      const role = loaded(res, "role");
      if (role.predefined)
        return redirectWithError(req, res, `/roles/${role.id}`, "Predefined roles can't be changed.");
      const values = roleValues(req.body);
      const form = parseForm(roleSchema, req.body);
      if (!form.ok) return renderRole(db, req, res, role, 422, form.errors, values);
      const outcome = await updateRole(db, actorOf(res), role.id, form.data);
      if (!outcome.ok) return renderRole(db, req, res, role, 422, errorsOf(outcome), values);
      redirectAfterPost(req, res, `/roles/${role.id}`, `The role ${outcome.value.name} was saved.`);
    },

    async destroy(req: Request, res: Response) {
      const role = loaded(res, "role");
      const outcome = await deleteRole(db, actorOf(res), role.id);
      if (!outcome.ok) return redirectWithError(req, res, `/roles/${role.id}`, outcome.message);
      redirectAfterPost(req, res, "/roles", `The role ${role.name} was deleted.`);
    },

    /** Copying role assignments from a user or group onto users. */
    async copyForm(req: Request, res: Response) {
      await renderCopy(req, res, 200, {}, req.query.from);
    },

    async copy(req: Request, res: Response) {
      const source = parseSubject(req.body?.from);
      const targets = manyIds(req.body?.to);
      if (!source)
        return renderCopy(req, res, 422, { from: "Choose the user or group to copy from." }, req.body?.from);
      if (targets.length === 0)
        return renderCopy(req, res, 422, { to: "Choose at least one user to copy to." }, req.body?.from);
      const outcome = await copyAssignments(db, actorOf(res), source, targets);
      if (!outcome.ok) return renderCopy(req, res, 422, errorsOf(outcome), req.body?.from);
      const result = outcome.value;
      const to = result.targets === 1 ? "1 user" : `${result.targets} users`;
      const message =
        result.copied === 0
          ? `${result.source} has no role assignments of its own: nothing was copied.`
          : `Copied ${result.copied} role assignment${result.copied === 1 ? "" : "s"} from ${result.source} to ${to}: ${result.added} added, ${result.alreadyPresent} already there.`;
      redirectAfterPost(req, res, targets.length === 1 ? `/users/${targets[0]}` : "/users", message);
    },
  };
}

function roleValues(source: unknown) {
  const body = (source ?? {}) as Record<string, unknown>;
  const permissions = body.permissions;
  return {
    name: typeof body.name === "string" ? body.name : "",
    description: typeof body.description === "string" ? body.description : "",
    permissions: Array.isArray(permissions)
      ? permissions
      : typeof permissions === "string"
        ? [permissions]
        : [],
  };
}

function renderRoleForm(
  req: Request,
  res: Response,
  role: Role | null,
  status: number,
  errors: FieldErrors,
  values: ReturnType<typeof roleValues>,
) {
  render(
    req,
    res,
    "roles/new",
    {
      title: "New role",
      role,
      errors,
      values,
      allPermissions: ALL_PERMISSIONS,
      permissionLabels: PERMISSION_LABELS,
    },
    { status },
  );
}

async function renderRole(
  db: Db,
  req: Request,
  res: Response,
  role: Role,
  status: number,
  errors: FieldErrors,
  values: ReturnType<typeof roleValues>,
) {
  const holders = await holdersOf(db, role.id);
  render(
    req,
    res,
    "roles/show",
    {
      title: role.name,
      role,
      ...holders,
      errors,
      values,
      allPermissions: ALL_PERMISSIONS,
      permissionLabels: PERMISSION_LABELS,
    },
    { status },
  );
}

// ——— Role assignments of a user or a group (the users and groups handlers use these) ———

/** The user or group whose page the assignment forms are on, and where that page is. */
type AssignmentSubject = Subject & { name: string; path: string };

export interface AssignmentDeps {
  db: Db;
  /** The subject the route's loader put in place. */
  subjectOf(res: Response): AssignmentSubject;
  /** Re-renders the subject's page with 422 and the errors beside the assignment form. */
  renderInvalid(
    req: Request,
    res: Response,
    errors: FieldErrors,
    values: Record<string, unknown>,
  ): Promise<void>;
}

export function assignmentHandlers({ db, subjectOf, renderInvalid }: AssignmentDeps) {
  return {
    async create(req: Request, res: Response) {
      const subject = subjectOf(res);
      const values = { roleId: req.body?.roleId ?? "", scope: req.body?.scope ?? "" };
      const form = parseForm(assignmentSchema, req.body);
      if (!form.ok) return renderInvalid(req, res, form.errors, values);
      const outcome = await addAssignment(
        db,
        actorOf(res),
        { type: subject.type, id: subject.id },
        form.data,
      );
      if (!outcome.ok) return renderInvalid(req, res, errorsOf(outcome), values);
      const scope = form.data.scope ? ` for ${form.data.scope}` : "";
      const message = outcome.value.created
        ? `${subject.name} now has the role ${outcome.value.roleName}${scope}.`
        : `${subject.name} already had the role ${outcome.value.roleName}${scope}.`;
      redirectAfterPost(req, res, `${subject.path}#roles`, message);
    },

    async destroy(req: Request, res: Response, next: NextFunction) {
      const subject = subjectOf(res);
      const assignmentId = idParam(req, "assignmentId");
      if (assignmentId === null) return next();
      const outcome = await removeAssignment(
        db,
        actorOf(res),
        { type: subject.type, id: subject.id },
        assignmentId,
      );
      if (!outcome.ok) return redirectWithError(req, res, `${subject.path}#roles`, outcome.message);
      const scope = outcome.value.scope ? ` for ${outcome.value.scope}` : "";
      redirectAfterPost(
        req,
        res,
        `${subject.path}#roles`,
        `${subject.name} no longer has the role ${outcome.value.roleName}${scope}.`,
      );
    },
  };
}

/** What the role-assignments section of a user's or group's page shows. */
export async function loadAssignmentsView(db: Db, subject: Subject, pagePath: string) {
  const [assignments, roles] = await Promise.all([assignmentsOf(db, subject), listRoles(db)]);
  return {
    assignments,
    roleOptions: roles.map((r) => ({ id: r.id, name: r.name })),
    assignmentsPath: `${pagePath}/role-assignments`,
    subjectType: subject.type,
  };
}
