/** Directories: list, get (never the password), test connection, and search (an import's dry run). */
import { z } from "zod";
import {
  type Directory,
  getDirectory,
  listDirectories,
  testSavedDirectory,
} from "../services/directories.ts";
import { searchDirectory } from "../services/import/search.ts";
import { IMPORT_KINDS, type ImportKind } from "../services/import/types.ts";
import { PERMISSIONS } from "../services/permissions.ts";
import type { ApiDeps } from "./deps.ts";
import { cursorField, decodeOffset, encodeOffset, limitField, pageSchema, sendPage } from "./paging.ts";
import { ApiProblem, invalid, notFound, problemSchema } from "./problem.ts";
import { type ApiRoute, idParam, route } from "./registry.ts";

const MAX_QUERY_LENGTH = 1000;

export const directorySchema = z
  .object({
    id: z.number().int(),
    name: z.string(),
    position: z.number().int(),
    enabled: z.boolean(),
    preset: z.string(),
    urls: z.array(z.string()),
    startTls: z.boolean(),
    verifyCertificate: z.boolean(),
    hasCaCertificate: z.boolean(),
    connectTimeoutMs: z.number().int(),
    operationTimeoutMs: z.number().int(),
    bindDn: z.string().nullable().describe("Null: anonymous bind. The password is never returned."),
    hasBindPassword: z.boolean(),
    baseDn: z.string(),
    userBase: z.string().nullable(),
    userFilter: z.string(),
    userScope: z.enum(["sub", "one"]),
    groupBase: z.string().nullable(),
    groupFilter: z.string(),
    groupScope: z.enum(["sub", "one"]),
    mapping: z.record(z.string(), z.string()),
    pageSize: z.number().int(),
    syncIntervalMinutes: z.number().int().nullable(),
    nextSyncAt: z.string().nullable(),
    signInPolicy: z.enum(["imported", "groups", "anyone"]),
    lastTest: z
      .object({
        at: z.string(),
        ok: z.boolean().nullable(),
        users: z.number().int().nullable(),
        groups: z.number().int().nullable(),
      })
      .nullable(),
  })
  .meta({ id: "Directory" });

export function directoryJson(d: Directory): z.infer<typeof directorySchema> {
  return {
    id: d.id,
    name: d.name,
    position: d.position,
    enabled: d.enabled,
    preset: d.preset,
    urls: d.urls,
    startTls: d.startTls,
    verifyCertificate: d.verifyCertificate,
    hasCaCertificate: Boolean(d.caCertPem),
    connectTimeoutMs: d.connectTimeoutMs,
    operationTimeoutMs: d.operationTimeoutMs,
    bindDn: d.bindDn,
    hasBindPassword: Boolean(d.bindPasswordEncrypted),
    baseDn: d.baseDn,
    userBase: d.userBase,
    userFilter: d.userFilter,
    userScope: d.userScope,
    groupBase: d.groupBase,
    groupFilter: d.groupFilter,
    groupScope: d.groupScope,
    mapping: {
      username: d.attrUsername,
      fullName: d.attrFullName,
      email: d.attrEmail,
      department: d.attrDepartment,
      phone: d.attrPhone,
      uniqueId: d.attrUniqueId,
      groupName: d.attrGroupName,
      member: d.attrMember,
      memberValues: d.memberValues,
    },
    pageSize: d.pageSize,
    syncIntervalMinutes: d.syncIntervalMinutes,
    nextSyncAt: d.nextSyncAt?.toISOString() ?? null,
    signInPolicy: d.signInPolicy,
    lastTest: d.lastTestedAt
      ? {
          at: d.lastTestedAt.toISOString(),
          ok: d.lastTestOk,
          users: d.lastUserCount,
          groups: d.lastGroupCount,
        }
      : null,
  };
}

const directoryParams = z.object({ directoryId: idParam });

const connectionTestSchema = z
  .object({
    ok: z.boolean(),
    serverUrl: z.string().nullable(),
    users: z.number().int().nullable(),
    groups: z.number().int().nullable(),
    steps: z.array(
      z.object({
        step: z.string().describe("connect, starttls, bind, base_dn, count_users or count_groups"),
        ok: z.boolean(),
        ms: z.number(),
        message: z.string(),
        error: z
          .object({ kind: z.string(), message: z.string(), ldapCode: z.number().int().nullable() })
          .nullable(),
      }),
    ),
  })
  .meta({ id: "ConnectionTest" });

/** A match of a directory search: the entry (what `POST /imports` takes back) and what importing it would do. */
export const matchSchema = z
  .object({
    entry: z.object({
      kind: z.enum(["user", "group"]),
      externalId: z.string(),
      dn: z.string(),
      name: z.string(),
    }),
    fullName: z.string(),
    email: z.string(),
    memberCount: z.number().int().nullable(),
    status: z.enum(["new", "update", "unchanged", "conflict", "invalid"]),
    changes: z.array(z.string()).describe("For `update`: the fields importing would change."),
    reason: z
      .string()
      .nullable()
      .describe("For `conflict` and `invalid`: why it can't be imported as it is."),
  })
  .meta({ id: "SearchMatch" });

const searchQuery = z.object({
  q: z
    .string({ message: "Type a name or an LDAP filter." })
    .trim()
    .min(1, "Type a name or an LDAP filter.")
    .max(MAX_QUERY_LENGTH, `Use at most ${MAX_QUERY_LENGTH} characters.`)
    .describe(
      "A username, group name or email (matched case-insensitively), or a raw LDAP filter starting with `(`.",
    ),
  kind: z.enum(IMPORT_KINDS as [ImportKind, ...ImportKind[]]).default("both"),
  limit: limitField,
  cursor: cursorField,
});

const searchPageSchema = pageSchema(matchSchema).extend({
  total: z.number().int(),
  users: z.number().int(),
  groups: z.number().int(),
});

const errors = {
  401: { description: "No valid API token or session.", schema: problemSchema },
  403: { description: "The account lacks the permission.", schema: problemSchema },
};

export function directoryRoutes(deps: ApiDeps): ApiRoute[] {
  const { db } = deps;
  const load = async (id: number) => {
    const directory = await getDirectory(db, id);
    if (!directory) throw notFound("directory");
    return directory;
  };
  return [
    route({
      method: "get",
      path: "/directories",
      operationId: "listDirectories",
      summary: "List directories, in sign-in order",
      tag: "Directories",
      permission: PERMISSIONS.manageUsers,
      responses: {
        200: { description: "Every directory.", schema: z.object({ items: z.array(directorySchema) }) },
        ...errors,
      },
      handler: async () => ({ body: { items: (await listDirectories(db)).map(directoryJson) } }),
    }),
    route({
      method: "get",
      path: "/directories/{directoryId}",
      operationId: "getDirectory",
      summary: "Get a directory (without its password)",
      tag: "Directories",
      permission: PERMISSIONS.manageUsers,
      params: directoryParams,
      responses: {
        200: { description: "The directory.", schema: directorySchema },
        ...errors,
        404: { description: "No such directory.", schema: problemSchema },
      },
      handler: async ({ params }) => ({ body: directoryJson(await load(params.directoryId)) }),
    }),
    route({
      method: "post",
      path: "/directories/{directoryId}/connection-tests",
      operationId: "testDirectoryConnection",
      summary: "Test a directory's connection, step by step",
      description:
        "Connects, does StartTLS, binds, reads the base DN and counts users and groups, as the directory's page does; the outcome is kept and audited. A failed test is still a 200: `ok` says how it went.",
      tag: "Directories",
      permission: PERMISSIONS.manageUsers,
      params: directoryParams,
      responses: {
        200: { description: "The test's steps, up to the first that failed.", schema: connectionTestSchema },
        ...errors,
        404: { description: "No such directory.", schema: problemSchema },
      },
      handler: async ({ params, actor }) => {
        const tested = await testSavedDirectory(
          db,
          deps.secretBox,
          actor,
          params.directoryId,
          deps.directoryLogger,
        );
        if (!tested) throw notFound("directory");
        const { result } = tested;
        return {
          body: {
            ok: result.ok,
            serverUrl: result.serverUrl ?? null,
            users: result.usersCount ?? null,
            groups: result.groupsCount ?? null,
            steps: result.steps.map((s) => ({
              step: s.step,
              ok: s.ok,
              ms: s.ms,
              message: s.message,
              error: s.error
                ? { kind: s.error.kind, message: s.error.message, ldapCode: s.error.ldapCode ?? null }
                : null,
            })),
          },
        };
      },
    }),
    route({
      method: "get",
      path: "/directories/{directoryId}/entries",
      operationId: "searchDirectory",
      summary: "Search a directory: what importing each match would do (a dry run)",
      description:
        "The import page's search: typed text is escaped and matched on the mapped attributes; text starting with `(` is a raw LDAP filter. Each match says whether importing it would create (`new`), update (with the fields), leave it `unchanged`, or is a `conflict`.",
      tag: "Directories",
      permission: PERMISSIONS.manageUsers,
      params: directoryParams,
      query: searchQuery,
      responses: {
        200: { description: "A page of matches.", schema: searchPageSchema },
        ...errors,
        404: { description: "No such directory.", schema: problemSchema },
        422: { description: "The query or filter is not valid.", schema: problemSchema },
        502: {
          description: "The directory could not be searched (unreachable, bind failed…).",
          schema: problemSchema,
        },
      },
      handler: async ({ req, res, params, query }) => {
        const directory = await load(params.directoryId);
        const offset = decodeOffset(query.cursor);
        if (offset === null) throw invalid({ cursor: "This cursor is not one Roster gave." });
        const searched = await searchDirectory(
          { db, secretBox: deps.secretBox, logger: deps.directoryLogger },
          directory,
          query.q,
          query.kind,
          { offset, limit: query.limit },
        );
        if (!searched.ok) {
          if (searched.field) throw invalid({ q: searched.message });
          throw new ApiProblem(502, searched.message, { title: "The directory could not be searched" });
        }
        const { results } = searched;
        const end = offset + results.rows.length;
        const page = sendPage(
          req,
          res,
          results.rows.map((row) => ({
            entry: { kind: row.kind, externalId: row.externalId, dn: row.dn, name: row.name },
            fullName: row.fullName,
            email: row.email,
            memberCount: row.memberCount,
            status: row.status.kind,
            changes: row.status.kind === "update" ? row.status.changes : [],
            reason: "reason" in row.status ? row.status.reason : null,
          })),
          end < results.total && results.rows.length > 0 ? encodeOffset(end) : null,
        );
        return { body: { ...page, total: results.total, users: results.users, groups: results.groups } };
      },
    }),
  ];
}
