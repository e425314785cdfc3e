/** Mapping defaults for the common servers; the settings form starts from one of these. */
import type { DirectoryMapping } from "./types.ts";

export type PresetId = "openldap" | "active_directory" | "389ds";

export interface Preset {
  id: PresetId;
  label: string;
  mapping: DirectoryMapping;
}

export const DEFAULT_PAGE_SIZE = 500;

const openldap: DirectoryMapping = {
  userBase: "ou=people",
  userFilter: "(objectClass=inetOrgPerson)",
  userScope: "sub",
  groupBase: "ou=groups",
  // The three kinds of group an OpenLDAP tree holds, each listing members its own way.
  groupFilter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
  groupScope: "sub",
  attrUsername: "uid",
  attrFullName: "cn",
  attrEmail: "mail",
  attrDepartment: "departmentNumber",
  attrPhone: "telephoneNumber",
  attrUniqueId: "entryUUID",
  attrGroupName: "cn",
  // member and uniqueMember hold DNs, memberUid usernames (see memberAttributes).
  attrMember: "member uniqueMember memberUid",
  memberValues: "dn",
  pageSize: DEFAULT_PAGE_SIZE,
};

const activeDirectory: DirectoryMapping = {
  userBase: null,
  // objectCategory keeps computer accounts (which are objectClass=user too) out.
  userFilter: "(&(objectCategory=person)(objectClass=user))",
  userScope: "sub",
  groupBase: null,
  groupFilter: "(objectClass=group)",
  groupScope: "sub",
  attrUsername: "sAMAccountName",
  attrFullName: "displayName",
  attrEmail: "mail",
  attrDepartment: "department",
  attrPhone: "telephoneNumber",
  attrUniqueId: "objectGUID",
  attrGroupName: "cn",
  // Read with range retrieval (member;range=0-1499, …) past 1500 values.
  attrMember: "member",
  memberValues: "dn",
  pageSize: DEFAULT_PAGE_SIZE,
};

/**
 * 389 Directory Server. FreeIPA runs on it too, but keeps accounts in cn=users,cn=accounts and
 * groups in cn=groups,cn=accounts as groupOfNames with `member`: adjust those fields after choosing.
 */
const ds389: DirectoryMapping = {
  userBase: "ou=people",
  userFilter: "(objectClass=inetOrgPerson)",
  userScope: "sub",
  groupBase: "ou=groups",
  groupFilter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
  groupScope: "sub",
  attrUsername: "uid",
  attrFullName: "cn",
  attrEmail: "mail",
  attrDepartment: "departmentNumber",
  attrPhone: "telephoneNumber",
  attrUniqueId: "nsUniqueId",
  attrGroupName: "cn",
  attrMember: "uniqueMember member memberUid",
  memberValues: "dn",
  pageSize: DEFAULT_PAGE_SIZE,
};

export const PRESETS: Readonly<Record<PresetId, Preset>> = {
  openldap: { id: "openldap", label: "OpenLDAP", mapping: openldap },
  active_directory: { id: "active_directory", label: "Active Directory", mapping: activeDirectory },
  "389ds": { id: "389ds", label: "389 Directory Server / FreeIPA", mapping: ds389 },
};

/** A fresh copy of a preset's mapping, safe to modify. */
export function presetMapping(id: PresetId): DirectoryMapping {
  return { ...PRESETS[id].mapping };
}

export function isPresetId(value: string): value is PresetId {
  return Object.hasOwn(PRESETS, value);
}
