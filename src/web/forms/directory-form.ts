/**
 * The directory form: what was typed (kept as text so a 422 shows it again), the preset defaults,
 * and the checks that turn it into DirectorySettings — URLs, DNs (RFC 4514), bind names, filters
 * (RFC 4515), PEM certificates, numbers in range, who may sign in — each with a message for the
 * field it belongs beside.
 */
import { X509Certificate } from "node:crypto";
import { z } from "zod";
import { isValidBindName } from "../../ldap/client.ts";
import { DnSyntaxError, parseDn } from "../../ldap/dn.ts";
import { parseFilter } from "../../ldap/filter.ts";
import { DEFAULT_PAGE_SIZE, isPresetId, PRESETS, type PresetId, presetMapping } from "../../ldap/presets.ts";
import type { DirectoryMapping } from "../../ldap/types.ts";
import {
  type DefaultRoleView,
  type Directory,
  type DirectorySettings,
  SIGN_IN_POLICIES,
  type SignInPolicy,
  serverAddress,
} from "../../services/directories.ts";
import { scopeProblem } from "../../services/roles.ts";
import type { FieldErrors } from "./form.ts";

export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 5;
export const DEFAULT_OPERATION_TIMEOUT_SECONDS = 10;
export const MAX_URLS = 10;
export const MAX_DEFAULT_ROLE_ROWS = 50;
export const MAX_SIGN_IN_GROUPS = 1000;
const BLANK_ROLE_ROWS = 2;
const MAX_PEM_LENGTH = 64 * 1024;

export const PRESET_CHOICES = Object.values(PRESETS).map((p) => ({ value: p.id, label: p.label }));

export const SIGN_IN_CHOICES: { value: SignInPolicy; label: string }[] = [
  { value: "imported", label: "Only imported users can sign in" },
  { value: "groups", label: "Members of these imported groups" },
  {
    value: "anyone",
    label: "Anyone matching the user filter (created at first sign-in, with the default roles)",
  },
];

export interface DefaultRoleRow {
  roleId: string;
  scope: string;
}

/** The form's fields as text, exactly as they are shown. The password is never among them. */
export interface DirectoryFormValues {
  name: string;
  preset: string;
  urls: string;
  startTls: boolean;
  caCertPem: string;
  verifyCertificate: boolean;
  connectTimeout: string;
  operationTimeout: string;
  bindMode: string;
  bindDn: string;
  baseDn: string;
  userBase: string;
  userFilter: string;
  userScope: string;
  groupBase: string;
  groupFilter: string;
  groupScope: string;
  attrUsername: string;
  attrFullName: string;
  attrEmail: string;
  attrDepartment: string;
  attrPhone: string;
  attrUniqueId: string;
  attrGroupName: string;
  attrMember: string;
  memberValues: string;
  pageSize: string;
  defaultRoles: DefaultRoleRow[];
  signInPolicy: string;
  /** The imported groups ticked for the sign-in rule, as submitted. */
  signInGroupIds: string[];
}

/** The form as submitted: the values, and the password typed (kept apart: it is never shown again). */
export interface SubmittedDirectoryForm {
  values: DirectoryFormValues;
  bindPassword: string;
}

type MappingTextField = Exclude<keyof DirectoryMapping, "pageSize" | "userBase" | "groupBase">;

export function newFormValues(presetId: PresetId = "openldap"): DirectoryFormValues {
  return {
    name: "",
    preset: presetId,
    urls: "",
    startTls: false,
    caCertPem: "",
    verifyCertificate: true,
    connectTimeout: String(DEFAULT_CONNECT_TIMEOUT_SECONDS),
    operationTimeout: String(DEFAULT_OPERATION_TIMEOUT_SECONDS),
    bindMode: "service",
    bindDn: "",
    baseDn: "",
    ...mappingValues(presetMapping(presetId)),
    pageSize: String(DEFAULT_PAGE_SIZE),
    defaultRoles: blankRoleRows([]),
    ...signInValuesOf(null),
  };
}

/** The sign-in rule as the form shows it: the directory's, or the safe default for a new one. */
function signInValuesOf(directory: Directory | null) {
  return {
    signInPolicy: directory?.signInPolicy ?? "imported",
    signInGroupIds: (directory?.signInGroupIds ?? []).map(String),
  };
}

export function formValuesOf(directory: Directory, defaults: DefaultRoleView[]): DirectoryFormValues {
  return {
    name: directory.name,
    preset: directory.preset,
    urls: directory.urls.join("\n"),
    startTls: directory.startTls,
    caCertPem: directory.caCertPem ?? "",
    verifyCertificate: directory.verifyCertificate,
    connectTimeout: seconds(directory.connectTimeoutMs),
    operationTimeout: seconds(directory.operationTimeoutMs),
    bindMode: directory.bindDn ? "service" : "anonymous",
    bindDn: directory.bindDn ?? "",
    baseDn: directory.baseDn,
    ...mappingValues({ ...directory }),
    pageSize: String(directory.pageSize),
    defaultRoles: blankRoleRows(defaults.map((d) => ({ roleId: String(d.roleId), scope: d.scope }))),
    ...signInValuesOf(directory),
  };
}

/** The preset's Users and Groups settings; everything else (name, URLs, bind…) stays as typed. */
export function applyPreset(values: DirectoryFormValues, presetId: PresetId): DirectoryFormValues {
  const { pageSize: _keep, ...mapping } = mappingValues(presetMapping(presetId));
  return { ...values, ...mapping, preset: presetId };
}

/**
 * Reads a submitted form (urlencoded or multipart). An uploaded CA file wins over the text box. A
 * submission without the sign-in choice (not from this form) leaves `stored`'s rule as it is.
 */
export function readDirectoryForm(body: unknown, stored: Directory | null = null): SubmittedDirectoryForm {
  const b = (body ?? {}) as Record<string, unknown>;
  const text = (name: string) => {
    const value = b[name];
    return typeof value === "string" ? value.trim() : "";
  };
  const checked = (name: string) => ["on", "true", "1"].includes(text(name));
  const uploaded = text("caCertFile");
  const roleIds = many(b.defaultRoleId);
  const scopes = many(b.defaultRoleScope);
  const rows = Array.from(
    { length: Math.min(MAX_DEFAULT_ROLE_ROWS, Math.max(roleIds.length, scopes.length)) },
    (_, i) => ({
      roleId: (roleIds[i] ?? "").trim(),
      scope: (scopes[i] ?? "").trim(),
    }),
  );
  const values: DirectoryFormValues = {
    name: text("name"),
    preset: text("preset"),
    urls: text("urls"),
    startTls: checked("startTls"),
    caCertPem: uploaded || text("caCertPem"),
    verifyCertificate: checked("verifyCertificate"),
    connectTimeout: text("connectTimeout"),
    operationTimeout: text("operationTimeout"),
    bindMode: text("bindMode"),
    bindDn: text("bindDn"),
    baseDn: text("baseDn"),
    userBase: text("userBase"),
    userFilter: text("userFilter"),
    userScope: text("userScope"),
    groupBase: text("groupBase"),
    groupFilter: text("groupFilter"),
    groupScope: text("groupScope"),
    attrUsername: text("attrUsername"),
    attrFullName: text("attrFullName"),
    attrEmail: text("attrEmail"),
    attrDepartment: text("attrDepartment"),
    attrPhone: text("attrPhone"),
    attrUniqueId: text("attrUniqueId"),
    attrGroupName: text("attrGroupName"),
    attrMember: text("attrMember"),
    memberValues: text("memberValues"),
    pageSize: text("pageSize"),
    defaultRoles: rows,
    ...(b.signInPolicy === undefined
      ? signInValuesOf(stored)
      : {
          signInPolicy: text("signInPolicy"),
          signInGroupIds: many(b.signInGroupIds)
            .slice(0, MAX_SIGN_IN_GROUPS)
            .map((id) => id.trim()),
        }),
  };
  const password = b.bindPassword;
  return { values, bindPassword: typeof password === "string" ? password : "" };
}

export type ValidatedForm = { ok: true; settings: DirectorySettings } | { ok: false; errors: FieldErrors };

/**
 * Checks every field in the order the form shows them, so the error summary reads top to bottom.
 * `forTest` skips what a connection test does not need (the name and the default roles).
 */
export function validateDirectoryForm(
  form: SubmittedDirectoryForm,
  options: { roleIds: ReadonlySet<number>; forTest?: boolean },
): ValidatedForm {
  const v = form.values;
  const errors: FieldErrors = {};
  const check = <T>(field: string, schema: z.ZodType<T>, value: unknown): T | undefined => {
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    errors[field] ??= parsed.error.issues[0]?.message ?? "Check this field.";
    return undefined;
  };

  const name = options.forTest ? v.name : check("name", nameSchema, v.name);
  const preset = check("preset", presetSchema, v.preset);
  const urls = check("urls", urlsSchema, v.urls);
  const caCertPem = check("caCertPem", pemSchema, v.caCertPem);
  const connectTimeout = check("connectTimeout", secondsSchema(1, 120), v.connectTimeout);
  const operationTimeout = check("operationTimeout", secondsSchema(1, 600), v.operationTimeout);
  const pageSize = check(
    "pageSize",
    wholeNumber(1, 1000, "Enter a whole number from 1 to 1000."),
    v.pageSize,
  );
  const bindMode = check(
    "bindMode",
    choice(["anonymous", "service"], "Choose how Roster binds."),
    v.bindMode,
  );
  const bindDn = bindMode === "service" ? check("bindDn", bindNameSchema, v.bindDn) : null;
  check("bindPassword", z.string().max(1024, "Use at most 1024 characters."), form.bindPassword);
  // A test runs without a base DN: it offers the server's naming contexts for the field.
  const baseDn =
    options.forTest && v.baseDn.trim() === ""
      ? ""
      : check("baseDn", dnSchema("Enter the base DN, like dc=example,dc=com."), v.baseDn);
  const userBase = check("userBase", optionalDnSchema, v.userBase);
  const userFilter = check("userFilter", filterSchema("Enter the filter that selects users."), v.userFilter);
  const userScope = check("userScope", scopeSchema, v.userScope);
  const attributes: Partial<Record<MappingTextField, string>> = {};
  for (const field of [
    "attrUsername",
    "attrFullName",
    "attrEmail",
    "attrDepartment",
    "attrPhone",
    "attrUniqueId",
  ] as const) {
    attributes[field] = check(field, attributeSchema, v[field]);
  }
  const groupBase = check("groupBase", optionalDnSchema, v.groupBase);
  const groupFilter = check(
    "groupFilter",
    filterSchema("Enter the filter that selects groups."),
    v.groupFilter,
  );
  const groupScope = check("groupScope", scopeSchema, v.groupScope);
  attributes.attrGroupName = check("attrGroupName", attributeSchema, v.attrGroupName);
  attributes.attrMember = check("attrMember", memberAttributesSchema, v.attrMember);
  const memberValues = check(
    "memberValues",
    choice(["dn", "username"], "Choose whether members are DNs or usernames."),
    v.memberValues,
  );
  const defaultRoles = options.forTest ? [] : checkDefaultRoles(v.defaultRoles, options.roleIds, errors);
  const signIn = options.forTest ? undefined : checkSignIn(v, errors);

  if (Object.keys(errors).length > 0) return { ok: false, errors };
  const mapping = {
    userBase: userBase || null,
    userFilter,
    userScope,
    groupBase: groupBase || null,
    groupFilter,
    groupScope,
    ...attributes,
    memberValues,
    pageSize,
  } as DirectoryMapping;
  return {
    ok: true,
    settings: {
      name: name ?? "",
      preset: preset as PresetId,
      urls: urls as string[],
      startTls: v.startTls,
      caCertPem: caCertPem || null,
      verifyCertificate: v.verifyCertificate,
      connectTimeoutMs: (connectTimeout as number) * 1000,
      operationTimeoutMs: (operationTimeout as number) * 1000,
      bindMode: bindMode as "anonymous" | "service",
      bindDn: bindDn ?? null,
      bindPassword: form.bindPassword === "" ? null : form.bindPassword,
      baseDn: baseDn as string,
      mapping,
      defaultRoles,
      ...(signIn ? { signIn } : {}),
    },
  };
}

/** What a re-rendered form may show of the values: a private key pasted by mistake is not sent back. */
export function displayValues(values: DirectoryFormValues): DirectoryFormValues {
  return PRIVATE_KEY.test(values.caCertPem) ? { ...values, caCertPem: "" } : values;
}

/** The default-role rows to show: those given, then blank ones to add more. */
export function blankRoleRows(rows: DefaultRoleRow[]): DefaultRoleRow[] {
  return [...rows, ...Array.from({ length: BLANK_ROLE_ROWS }, () => ({ roleId: "", scope: "" }))];
}

// ——— Field rules ———

const nameSchema = z
  .string()
  .min(1, "Enter a name for the directory, like “Head office AD”.")
  .max(100, "Use at most 100 characters.");

const presetSchema = z.string().refine(isPresetId, "Choose a server type.");

const choice = <T extends string>(options: readonly T[], message: string) =>
  z.string().refine((value): value is T => (options as readonly string[]).includes(value), message);

const scopeSchema = choice(["sub", "one"], "Choose where to search.");

function wholeNumber(min: number, max: number, message: string) {
  return z
    .string()
    .regex(/^\d{1,7}$/, message)
    .transform(Number)
    .refine((n) => n >= min && n <= max, message);
}

function secondsSchema(min: number, max: number) {
  return wholeNumber(min, max, `Enter a whole number of seconds from ${min} to ${max}.`);
}

const urlsSchema = z.string().transform((text, ctx) => {
  const urls = text.split(/[\s,]+/).filter(Boolean);
  if (urls.length === 0) {
    ctx.addIssue({
      code: "custom",
      message: "Enter at least one server URL, like ldaps://ldap.example.com:636.",
    });
    return z.NEVER;
  }
  if (urls.length > MAX_URLS) {
    ctx.addIssue({ code: "custom", message: `Enter at most ${MAX_URLS} server URLs.` });
    return z.NEVER;
  }
  const seen = new Set<string>();
  for (const url of urls) {
    const problem = urlProblem(url);
    if (problem) {
      ctx.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    }
    const address = serverAddress(url);
    if (seen.has(address)) {
      ctx.addIssue({ code: "custom", message: `${address} is listed twice: give each server once.` });
      return z.NEVER;
    }
    seen.add(address);
  }
  return urls;
});

function urlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `“${url}” is not a valid URL: write it as ldap://host:389 or ldaps://host:636.`;
  }
  if (parsed.protocol !== "ldap:" && parsed.protocol !== "ldaps:") {
    return `“${url}” must start with ldap:// or ldaps://.`;
  }
  if (!parsed.hostname) return `“${url}” has no host name: write it as ldap://host:389 or ldaps://host:636.`;
  if (parsed.port === "0") return `“${url}” has port 0: use the server's port, such as 389 or 636.`;
  if (
    (parsed.pathname !== "" && parsed.pathname !== "/") ||
    parsed.search ||
    parsed.hash ||
    parsed.username
  ) {
    return `“${url}” has more than a scheme, host and port: the base DN and the filters have their own fields.`;
  }
  return null;
}

function dnProblem(text: string, example = "dc=example,dc=com"): string | null {
  try {
    if (parseDn(text).length === 0) return `Enter a DN, like ${example}.`;
    return null;
  } catch (err) {
    if (err instanceof DnSyntaxError)
      return `This is not a valid DN: ${err.message}. Write it like ${example}.`;
    throw err;
  }
}

const BIND_DN_EXAMPLE = "cn=roster,ou=services,dc=example,dc=com";

/**
 * The service account as a DN, or as the user names Active Directory (and Samba) accept in a simple
 * bind: `roster@example.com` (a userPrincipalName) or `EXAMPLE\roster` — the same rule as bindAs.
 */
const bindNameSchema = z
  .string()
  .min(1, "Enter the bind DN or user name of the service account.")
  .max(2000, "Use at most 2000 characters.")
  .superRefine((text, ctx) => {
    if (isValidBindName(text)) return;
    // Text with an = was meant as a DN: say where it goes wrong.
    const message = text.includes("=")
      ? dnProblem(text, BIND_DN_EXAMPLE)
      : `“${text}” is not a DN or a user name. Write a DN, like ${BIND_DN_EXAMPLE}, or an Active Directory user name, like roster@example.com or EXAMPLE\\roster.`;
    ctx.addIssue({ code: "custom", message: message ?? "Check the bind DN or user name." });
  });

function dnSchema(missing: string) {
  return z
    .string()
    .min(1, missing)
    .max(2000, "Use at most 2000 characters.")
    .superRefine((text, ctx) => {
      const problem = dnProblem(text);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    });
}

const optionalDnSchema = z
  .string()
  .max(2000, "Use at most 2000 characters.")
  .superRefine((text, ctx) => {
    const problem = text === "" ? null : dnProblem(text);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

function filterSchema(missing: string) {
  return z
    .string()
    .min(1, missing)
    .max(4000, "Use at most 4000 characters.")
    .superRefine((text, ctx) => {
      const parsed = parseFilter(text);
      if (!parsed.ok)
        ctx.addIssue({ code: "custom", message: `This is not a valid LDAP filter: ${parsed.message}` });
    });
}

/** One membership attribute or several (member uniqueMember memberUid), written back space-separated. */
const memberAttributesSchema = z
  .string()
  .trim()
  .min(1, "Enter the attribute that lists a group's members, like member.")
  .max(200, "Use at most 200 characters.")
  .transform((value) => value.split(/[\s,]+/).filter(Boolean))
  .refine((names) => names.length <= 5, "Name at most 5 attributes.")
  .refine(
    (names) => names.every((name) => /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$/.test(name)),
    "Write attribute names separated by spaces, like member uniqueMember memberUid.",
  )
  .transform((names) => names.join(" "));

const attributeSchema = z
  .string()
  .min(1, "Enter the attribute's name, like uid.")
  .max(100, "Use at most 100 characters.")
  .regex(
    /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$/,
    "Enter an attribute name, like uid: letters, digits and hyphens (or an OID).",
  );

const PRIVATE_KEY = /PRIVATE KEY-----/;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** "" or the certificates of a PEM bundle, one after the other (any text around them dropped). */
const pemSchema = z.string().transform((text, ctx) => {
  if (text === "") return "";
  if (text.length > MAX_PEM_LENGTH) {
    ctx.addIssue({ code: "custom", message: "This is too long for a CA certificate (at most 64 KB)." });
    return z.NEVER;
  }
  if (PRIVATE_KEY.test(text)) {
    ctx.addIssue({
      code: "custom",
      message: "This contains a private key. Paste only the CA's certificate, and never share the key.",
    });
    return z.NEVER;
  }
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) {
    ctx.addIssue({
      code: "custom",
      message:
        "Give the certificate in PEM form: the text from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE----- (convert a binary .der file first).",
    });
    return z.NEVER;
  }
  for (const [index, block] of blocks.entries()) {
    const label = blocks.length === 1 ? "The certificate" : `Certificate ${index + 1}`;
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(block);
    } catch {
      ctx.addIssue({
        code: "custom",
        message: `${label} could not be read: check that it was copied completely.`,
      });
      return z.NEVER;
    }
    if (Date.parse(certificate.validTo) < Date.now()) {
      ctx.addIssue({
        code: "custom",
        message: `${label} (${subjectName(certificate)}) expired on ${certificate.validTo}: get the current CA certificate.`,
      });
      return z.NEVER;
    }
  }
  return `${blocks.join("\n")}\n`;
});

function subjectName(certificate: X509Certificate): string {
  return certificate.subject.split("\n").join(", ");
}

function checkDefaultRoles(rows: DefaultRoleRow[], roleIds: ReadonlySet<number>, errors: FieldErrors) {
  const chosen: { roleId: number; scope: string }[] = [];
  rows.forEach((row, index) => {
    if (row.roleId === "" && row.scope === "") return;
    const roleId = /^\d{1,9}$/.test(row.roleId) ? Number(row.roleId) : null;
    if (roleId === null || !roleIds.has(roleId)) {
      errors[`defaultRoleId-${index}`] ??=
        row.roleId === ""
          ? "Choose a role for this scope, or clear the scope."
          : "Choose one of the listed roles.";
      return;
    }
    const problem = scopeProblem(row.scope);
    if (problem) {
      errors[`defaultRoleScope-${index}`] ??= problem;
      return;
    }
    chosen.push({ roleId, scope: row.scope });
  });
  return chosen;
}

/** The sign-in rule: a known choice; for "groups", at least one group id (the service checks they are this directory's). */
function checkSignIn(values: DirectoryFormValues, errors: FieldErrors): DirectorySettings["signIn"] {
  const policy = SIGN_IN_POLICIES.find((p) => p === values.signInPolicy);
  if (!policy) {
    errors.signInPolicy ??= "Choose who may sign in through this directory.";
    return undefined;
  }
  if (policy !== "groups") return { policy, groupIds: [] };
  const groupIds = tickedGroupIds(values);
  if (groupIds.length !== values.signInGroupIds.length) {
    errors.signInGroupIds ??= "Choose groups from the list.";
    return undefined;
  }
  if (groupIds.length === 0) {
    errors.signInGroupIds ??= "Choose at least one imported group, or another option.";
    return undefined;
  }
  return { policy, groupIds };
}

/** The group ids ticked for the sign-in rule (values that are no id left out). */
export function tickedGroupIds(values: Pick<DirectoryFormValues, "signInGroupIds">): number[] {
  return values.signInGroupIds.filter((id) => /^[1-9]\d{0,8}$/.test(id)).map(Number);
}

// ——— Helpers ———

function mappingValues(mapping: DirectoryMapping) {
  const text: Record<MappingTextField, string> = {
    userFilter: mapping.userFilter,
    userScope: mapping.userScope,
    groupFilter: mapping.groupFilter,
    groupScope: mapping.groupScope,
    attrUsername: mapping.attrUsername,
    attrFullName: mapping.attrFullName,
    attrEmail: mapping.attrEmail,
    attrDepartment: mapping.attrDepartment,
    attrPhone: mapping.attrPhone,
    attrUniqueId: mapping.attrUniqueId,
    attrGroupName: mapping.attrGroupName,
    attrMember: mapping.attrMember,
    memberValues: mapping.memberValues,
  };
  return {
    ...text,
    userBase: mapping.userBase ?? "",
    groupBase: mapping.groupBase ?? "",
    pageSize: String(mapping.pageSize),
  };
}

function seconds(ms: number): string {
  return String(Math.max(1, Math.round(ms / 1000)));
}

function many(value: unknown): string[] {
  if (Array.isArray(value)) return value.map((v) => (typeof v === "string" ? v : ""));
  return typeof value === "string" ? [value] : [];
}
