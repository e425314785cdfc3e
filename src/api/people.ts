/** Users, groups, roles and role assignments, and the audit log: the Users application's API. */
import { z } from "zod";
import {
  AUDIT_PAGE_SIZE,
  decodeAuditCursor,
  encodeAuditCursor,
  listAuditEntries,
} from "../services/audit-log.ts";
import {
  convertToExternal,
  convertToInternal,
  synchronizeGroup,
  synchronizeUser,
} from "../services/directory-users.ts";
import { type GroupDetails, getGroup, membersOf } from "../services/groups.ts";
import type { Outcome } from "../services/guards.ts";
import { PERMISSIONS } from "../services/permissions.ts";
import {
  addAssignment,
  assignmentsOf,
  copyAssignments,
  getRole,
  holdersOf,
  listRoles,
  parseSubject,
  removeAssignment,
  type Subject,
} from "../services/roles.ts";
import { decodeCursor, encodeCursor, type ListScope, listEntries } from "../services/user-list.ts";
import { getUser, groupsOfUser, setLoginEnabled, type UserDetails } from "../services/users.ts";
import { passwordSchema } from "../web/forms/password.ts";
import { assignmentSchema } from "../web/forms/roles.ts";
import { toExternalSchema } from "../web/forms/users.ts";
import type { ApiDeps } from "./deps.ts";
import { cursorField, limitField, pageSchema, sendPage } from "./paging.ts";
import { ApiProblem, invalid, notFound, problemSchema } from "./problem.ts";
import { type ApiRoute, idParam, MAX_ID, route } from "./registry.ts";

const common = {
  401: { description: "No valid API token or session.", schema: problemSchema },
  403: { description: "The account lacks the permission.", schema: problemSchema },
};
const missing = (what: string) => ({ 404: { description: `No such ${what}.`, schema: problemSchema } });
const refused = {
  409: {
    description: "Refused as it stands (e.g. it would leave nobody who can manage users).",
    schema: problemSchema,
  },
  422: { description: "Invalid input.", schema: problemSchema },
};

/** A service's refusal: beside its field (422), or a conflict with the state of things (409). */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  if (outcome.field !== "form") throw invalid({ [outcome.field]: outcome.message }, outcome.message);
  throw new ApiProblem(409, outcome.message);
}

const listEntrySchema = z
  .object({
    type: z.enum(["user", "group"]),
    id: z.number().int(),
    name: z.string(),
    detail: z.string().describe("A user's full name, a group's description."),
    email: z.string(),
    kind: z.enum(["internal", "external"]),
    directoryName: z.string().nullable(),
    enabled: z.boolean().nullable(),
    missingInDirectory: z.boolean(),
    lastActivityAt: z.string().nullable(),
  })
  .meta({ id: "ListEntry" });

export const assignmentJsonSchema = z
  .object({
    id: z.number().int(),
    role: z.object({ id: z.number().int(), name: z.string(), predefined: z.boolean() }),
    scope: z.string().describe("Empty for a global assignment, else a resource such as `project:42`."),
    viaGroup: z
      .object({ id: z.number().int(), name: z.string() })
      .nullable()
      .describe("Set when held through a group (directly or through subgroups)."),
  })
  .meta({ id: "RoleAssignment" });

export const userSchema = z
  .object({
    id: z.number().int(),
    username: z.string(),
    kind: z.enum(["internal", "external"]),
    fullName: z.string(),
    email: z.string(),
    department: z.string(),
    phone: z.string(),
    enabled: z.boolean(),
    disabledByDirectory: z.boolean(),
    directory: z.object({ id: z.number().int(), name: z.string().nullable() }).nullable(),
    dn: z.string().nullable(),
    missingInDirectory: z.boolean(),
    lastSyncedAt: z.string().nullable(),
    lastLoginAt: z.string().nullable(),
    createdAt: z.string(),
    groups: z.array(
      z.object({ id: z.number().int(), name: z.string(), kind: z.enum(["internal", "external"]) }),
    ),
    roleAssignments: z.array(assignmentJsonSchema),
  })
  .meta({ id: "User" });

const groupSchema = z
  .object({
    id: z.number().int(),
    name: z.string(),
    kind: z.enum(["internal", "external"]),
    description: z.string(),
    directory: z.object({ id: z.number().int(), name: z.string().nullable() }).nullable(),
    dn: z.string().nullable(),
    missingInDirectory: z.boolean(),
    lastSyncedAt: z.string().nullable(),
    memberCount: z.number().int(),
    roleAssignments: z.array(assignmentJsonSchema),
  })
  .meta({ id: "Group" });

const roleSchema = z
  .object({
    id: z.number().int(),
    key: z.string().nullable(),
    name: z.string(),
    description: z.string(),
    predefined: z.boolean(),
    permissions: z.array(z.string()),
    assignmentCount: z.number().int().optional(),
  })
  .meta({ id: "Role" });

const auditEntrySchema = z
  .object({
    id: z.number().int(),
    at: z.string(),
    actor: z.string(),
    action: z.string(),
    actionLabel: z.string(),
    target: z.object({ type: z.string(), id: z.string(), name: z.string() }),
    details: z.record(z.string(), z.unknown()),
  })
  .meta({ id: "AuditEntry" });

const iso = (d: Date | null) => d?.toISOString() ?? null;

const day = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, "Give a day as YYYY-MM-DD.")
  .refine(
    (value) =>
      !Number.isNaN(Date.parse(`${value}T00:00:00Z`)) &&
      new Date(`${value}T00:00:00Z`).toISOString().startsWith(value),
    "Give a day that exists, as YYYY-MM-DD.",
  );

export async function userJson(deps: ApiDeps, user: UserDetails): Promise<z.infer<typeof userSchema>> {
  const [groups, assignments] = await Promise.all([
    groupsOfUser(deps.db, user.id),
    assignmentsOf(deps.db, { type: "user", id: user.id }),
  ]);
  return {
    id: user.id,
    username: user.username,
    kind: user.kind,
    fullName: user.fullName,
    email: user.email,
    department: user.department,
    phone: user.phone,
    enabled: user.enabled,
    disabledByDirectory: user.disabledByDirectory,
    directory: user.directoryId === null ? null : { id: user.directoryId, name: user.directoryName },
    dn: user.dn,
    missingInDirectory: user.missingInDirectory,
    lastSyncedAt: iso(user.lastSyncedAt),
    lastLoginAt: iso(user.lastLoginAt),
    createdAt: user.createdAt.toISOString(),
    groups,
    roleAssignments: assignments.map(assignmentJson),
  };
}

function assignmentJson(a: Awaited<ReturnType<typeof assignmentsOf>>[number]) {
  return {
    id: a.id,
    role: { id: a.roleId, name: a.roleName, predefined: a.predefined },
    scope: a.scope,
    viaGroup: a.viaGroup,
  };
}

async function groupJson(deps: ApiDeps, group: GroupDetails): Promise<z.infer<typeof groupSchema>> {
  const [members, assignments] = await Promise.all([
    membersOf(deps.db, group.id, { limit: 1 }),
    assignmentsOf(deps.db, { type: "group", id: group.id }),
  ]);
  return {
    id: group.id,
    name: group.name,
    kind: group.kind,
    description: group.description,
    directory: group.directoryId === null ? null : { id: group.directoryId, name: group.directoryName },
    dn: group.dn,
    missingInDirectory: group.missingInDirectory,
    lastSyncedAt: iso(group.lastSyncedAt),
    memberCount: members.total,
    roleAssignments: assignments.map(assignmentJson),
  };
}

function listQuery(filters: readonly [string, ...string[]]) {
  return z.object({
    filter: z.enum(filters).default(filters[0]).describe("Which kind to list."),
    q: z
      .string()
      .trim()
      .max(200, "Use at most 200 characters.")
      .default("")
      .describe("Case-insensitive search of names, full names and emails, as on the Users page."),
    sort: z.enum(["name", "-name"]).default("name"),
    limit: limitField,
    cursor: cursorField,
  });
}

const userParams = z.object({ userId: idParam });
const groupParams = z.object({ groupId: idParam });
const syncResultSchema = z.object({ status: z.string(), detail: z.record(z.string(), z.unknown()) });

export function peopleRoutes(deps: ApiDeps): ApiRoute[] {
  const { db } = deps;
  const directoryDeps = { db, secretBox: deps.secretBox, logger: deps.directoryLogger };
  const loadUser = async (id: number) => (await getUser(db, id)) ?? Promise.reject(notFound("user"));
  const loadGroup = async (id: number) => (await getGroup(db, id)) ?? Promise.reject(notFound("group"));

  const list =
    (scopes: Record<string, ListScope>) =>
    async ({
      req,
      res,
      query,
    }: Parameters<ApiRoute["handler"]>[0] & { query: z.infer<ReturnType<typeof listQuery>> }) => {
      const after = query.cursor ? decodeCursor(query.cursor) : null;
      if (query.cursor && !after) throw invalid({ cursor: "This cursor is not one Roster gave." });
      const page = await listEntries(db, {
        filter: scopes[query.filter] ?? "all",
        search: query.q,
        sort: query.sort,
        after,
        pageSize: query.limit,
      });
      const items = page.entries.map((e) => ({ ...e, lastActivityAt: iso(e.lastActivityAt) }));
      return { body: sendPage(req, res, items, page.next ? encodeCursor(page.next) : null) };
    };

  const assignmentRoutes = (type: "user" | "group"): ApiRoute[] => {
    const params = type === "user" ? userParams : groupParams;
    const subjectOf = async (p: { userId?: number; groupId?: number }): Promise<Subject> => {
      if (type === "user") return { type, id: (await loadUser(p.userId ?? 0)).id };
      return { type, id: (await loadGroup(p.groupId ?? 0)).id };
    };
    const base = type === "user" ? "/users/{userId}" : "/groups/{groupId}";
    const tag = type === "user" ? "Users" : "Groups";
    return [
      route({
        method: "post",
        path: `${base}/role-assignments`,
        operationId: `add${type === "user" ? "User" : "Group"}RoleAssignment`,
        summary: `Give the ${type} a role, globally or for a scope`,
        tag,
        permission: PERMISSIONS.manageUsers,
        params,
        body: assignmentSchema
          .extend({ roleId: assignmentSchema.shape.roleId.max(MAX_ID, "Choose a role.") })
          .meta({ id: "NewRoleAssignment" }),
        responses: {
          201: { description: "Given.", schema: z.object({ created: z.literal(true), role: z.string() }) },
          200: {
            description: "The subject had it already.",
            schema: z.object({ created: z.literal(false), role: z.string() }),
          },
          ...common,
          ...missing(type),
          ...refused,
        },
        handler: async ({ params: p, body, actor }) => {
          const subject = await subjectOf(p);
          const done = unwrap(await addAssignment(db, actor, subject, body));
          return { status: done.created ? 201 : 200, body: { created: done.created, role: done.roleName } };
        },
      }),
      route({
        method: "delete",
        path: `${base}/role-assignments/{assignmentId}`,
        operationId: `remove${type === "user" ? "User" : "Group"}RoleAssignment`,
        summary: `Remove one of the ${type}'s own role assignments`,
        tag,
        permission: PERMISSIONS.manageUsers,
        params: params.extend({ assignmentId: idParam }),
        responses: {
          204: { description: "Removed." },
          ...common,
          404: { description: `No such ${type}, or it has no such assignment.`, schema: problemSchema },
          409: refused[409],
        },
        handler: async ({ params: p, actor }) => {
          const subject = await subjectOf(p);
          const outcome = await removeAssignment(db, actor, subject, p.assignmentId);
          if (!outcome.ok && outcome.message.startsWith("That role assignment"))
            throw new ApiProblem(404, outcome.message);
          unwrap(outcome);
          return { status: 204 };
        },
      }),
    ];
  };

  return [
    route({
      method: "get",
      path: "/users",
      operationId: "listUsers",
      summary: "List and search users, as the Users page does",
      tag: "Users",
      permission: PERMISSIONS.manageUsers,
      query: listQuery(["all", "internal", "external"]),
      responses: {
        200: { description: "A page of users.", schema: pageSchema(listEntrySchema) },
        ...common,
        422: refused[422],
      },
      handler: list({ all: "users", internal: "internal-users", external: "external-users" }),
    }),
    route({
      method: "get",
      path: "/users/{userId}",
      operationId: "getUser",
      summary: "Get a user with its groups and role assignments",
      tag: "Users",
      permission: PERMISSIONS.manageUsers,
      params: userParams,
      responses: { 200: { description: "The user.", schema: userSchema }, ...common, ...missing("user") },
      handler: async ({ params }) => ({ body: await userJson(deps, await loadUser(params.userId)) }),
    }),
    route({
      method: "post",
      path: "/users/{userId}/login-status",
      operationId: "setUserLoginStatus",
      summary: "Enable or disable a user's sign-in",
      description: "Refused (409) for your own account, or when nobody could manage users afterwards.",
      tag: "Users",
      permission: PERMISSIONS.manageUsers,
      params: userParams,
      body: z
        .object({ enabled: z.boolean({ message: "Say whether the user may sign in: true or false." }) })
        .meta({ id: "LoginStatus" }),
      responses: {
        200: { description: "The user as it is now.", schema: userSchema },
        ...common,
        ...missing("user"),
        ...refused,
      },
      handler: async ({ params, body, actor }) => {
        const user = await loadUser(params.userId);
        unwrap(await setLoginEnabled(db, actor, [user.id], body.enabled));
        return { body: await userJson(deps, await loadUser(user.id)) };
      },
    }),
    route({
      method: "post",
      path: "/users/{userId}/conversion",
      operationId: "convertUser",
      summary: "Convert a user: external → internal (a password), internal → external (a directory)",
      description:
        "An external user becomes internal with the password given (`password` and `passwordConfirmation`); an internal one becomes external of the directory given (`directoryId`), linked to the entry with its username. Roles and groups are kept.",
      tag: "Users",
      permission: PERMISSIONS.manageUsers,
      params: userParams,
      body: z.union([passwordSchema, toExternalSchema]).meta({ id: "Conversion" }),
      responses: {
        200: { description: "The user as it is now.", schema: userSchema },
        ...common,
        ...missing("user"),
        ...refused,
      },
      handler: async ({ req, params, actor }) => {
        const user = await loadUser(params.userId);
        if (user.kind === "external") {
          const form = passwordSchema.safeParse(req.body ?? {});
          if (!form.success)
            throw invalid(Object.fromEntries(form.error.issues.map((i) => [i.path.join("."), i.message])));
          unwrap(await convertToInternal(db, actor, user.id, form.data.password));
        } else {
          const form = toExternalSchema
            .extend({ directoryId: toExternalSchema.shape.directoryId.max(MAX_ID, "Choose a directory.") })
            .safeParse(req.body ?? {});
          if (!form.success)
            throw invalid({ directoryId: form.error.issues[0]?.message ?? "Choose a directory." });
          unwrap(await convertToExternal(directoryDeps, actor, user.id, form.data.directoryId));
        }
        return { body: await userJson(deps, await loadUser(user.id)) };
      },
    }),
    route({
      method: "post",
      path: "/users/{userId}/synchronizations",
      operationId: "synchronizeUser",
      summary: "Synchronize an external user with its directory now",
      tag: "Users",
      permission: PERMISSIONS.manageUsers,
      params: userParams,
      responses: {
        200: { description: "What changed.", schema: syncResultSchema },
        ...common,
        ...missing("user"),
        ...refused,
      },
      handler: async ({ params, actor }) => {
        const user = await loadUser(params.userId);
        const report = unwrap(await synchronizeUser(directoryDeps, actor, user.id));
        const { status, ...detail } = report;
        return { body: { status, detail } };
      },
    }),
    ...assignmentRoutes("user"),
    route({
      method: "post",
      path: "/role-copies",
      operationId: "copyRoles",
      summary: "Copy a user's or group's own role assignments onto users",
      description: "Adds the assignments the targets lack; never duplicates or removes one.",
      tag: "Roles",
      permission: PERMISSIONS.manageUsers,
      body: z
        .object({
          from: z.string().describe("`user:12` or `group:3`."),
          to: z
            .array(z.number().int().positive().max(MAX_ID, "There is no user with this id."))
            .min(1, "Choose at least one user to copy to.")
            .max(500),
        })
        .meta({ id: "RoleCopy" }),
      responses: {
        200: {
          description: "What was copied.",
          schema: z.object({
            source: z.string(),
            copied: z.number().int(),
            added: z.number().int(),
            alreadyPresent: z.number().int(),
            targets: z.number().int(),
          }),
        },
        ...common,
        ...refused,
      },
      handler: async ({ body, actor }) => {
        const source = parseSubject(body.from);
        if (!source) throw invalid({ from: "Name the source as user:<id> or group:<id>." });
        return { body: unwrap(await copyAssignments(db, actor, source, body.to)) };
      },
    }),
    route({
      method: "get",
      path: "/groups",
      operationId: "listGroups",
      summary: "List and search groups",
      tag: "Groups",
      permission: PERMISSIONS.manageUsers,
      query: listQuery(["all", "internal", "external"]),
      responses: {
        200: { description: "A page of groups.", schema: pageSchema(listEntrySchema) },
        ...common,
        422: refused[422],
      },
      handler: list({ all: "groups", internal: "internal-groups", external: "external-groups" }),
    }),
    route({
      method: "get",
      path: "/groups/{groupId}",
      operationId: "getGroup",
      summary: "Get a group with its member count and role assignments",
      tag: "Groups",
      permission: PERMISSIONS.manageUsers,
      params: groupParams,
      responses: { 200: { description: "The group.", schema: groupSchema }, ...common, ...missing("group") },
      handler: async ({ params }) => ({ body: await groupJson(deps, await loadGroup(params.groupId)) }),
    }),
    route({
      method: "post",
      path: "/groups/{groupId}/synchronizations",
      operationId: "synchronizeGroup",
      summary: "Synchronize an external group, its members and subgroups, now",
      tag: "Groups",
      permission: PERMISSIONS.manageUsers,
      params: groupParams,
      responses: {
        200: { description: "What changed.", schema: syncResultSchema },
        ...common,
        ...missing("group"),
        ...refused,
      },
      handler: async ({ params, actor }) => {
        const group = await loadGroup(params.groupId);
        const report = unwrap(await synchronizeGroup(directoryDeps, actor, group.id));
        const { status, ...detail } = report;
        return { body: { status, detail } };
      },
    }),
    ...assignmentRoutes("group"),
    route({
      method: "get",
      path: "/roles",
      operationId: "listRoles",
      summary: "List roles with how many assignments each has",
      tag: "Roles",
      permission: PERMISSIONS.manageUsers,
      responses: {
        200: { description: "Every role.", schema: z.object({ items: z.array(roleSchema) }) },
        ...common,
      },
      handler: async () => ({
        body: {
          items: (await listRoles(db)).map((r) => ({
            id: r.id,
            key: r.key,
            name: r.name,
            description: r.description,
            predefined: r.predefined,
            permissions: r.permissions,
            assignmentCount: r.assignmentCount,
          })),
        },
      }),
    }),
    route({
      method: "get",
      path: "/roles/{roleId}",
      operationId: "getRole",
      summary: "Get a role and who holds it",
      tag: "Roles",
      permission: PERMISSIONS.manageUsers,
      params: z.object({ roleId: idParam }),
      responses: {
        200: {
          description: "The role and its first 100 holders.",
          schema: roleSchema.extend({
            holders: z.array(
              z.object({
                assignmentId: z.number().int(),
                subject: z.object({ type: z.enum(["user", "group"]), id: z.number().int() }),
                name: z.string(),
                scope: z.string(),
              }),
            ),
            holderCount: z.number().int(),
          }),
        },
        ...common,
        ...missing("role"),
      },
      handler: async ({ params }) => {
        const role = await getRole(db, params.roleId);
        if (!role) throw notFound("role");
        const { holders, total } = await holdersOf(db, role.id);
        const { createdAt: _c, updatedAt: _u, ...fields } = role;
        return { body: { ...fields, holders, holderCount: total } };
      },
    }),
    route({
      method: "get",
      path: "/audit-log",
      operationId: "listAuditLog",
      summary: "The audit log, newest first",
      tag: "Audit log",
      permission: PERMISSIONS.manageUsers,
      query: z.object({
        actor: z.string().trim().max(200).default("").describe("Who acted (a username)."),
        target: z
          .string()
          .trim()
          .max(200)
          .default("")
          .describe("`user:12`, `group:3`, `directory:1`… or a name."),
        action: z.string().trim().max(100).default("").describe("An action such as `user.disable`."),
        from: day.optional().describe("Only entries on or after this day (YYYY-MM-DD, UTC)."),
        to: day.optional().describe("Only entries on or before this day (YYYY-MM-DD, UTC)."),
        limit: limitField.default(AUDIT_PAGE_SIZE),
        cursor: cursorField,
      }),
      responses: {
        200: { description: "A page of entries.", schema: pageSchema(auditEntrySchema) },
        ...common,
        422: refused[422],
      },
      handler: async ({ req, res, query }) => {
        const before = query.cursor ? decodeAuditCursor(query.cursor) : null;
        if (query.cursor && !before) throw invalid({ cursor: "This cursor is not one Roster gave." });
        const page = await listAuditEntries(db, query, before, query.limit);
        const items = page.entries.map((e) => ({
          id: e.id,
          at: e.at.toISOString(),
          actor: e.actorName,
          action: e.action,
          actionLabel: e.actionLabel,
          target: { type: e.targetType, id: e.targetId, name: e.targetName },
          details: e.details,
        }));
        return { body: sendPage(req, res, items, page.next ? encodeAuditCursor(page.next) : null) };
      },
    }),
  ];
}
