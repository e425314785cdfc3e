/** How to reach and bind to one LDAP server (one "directory" in Roster's settings). */
export interface DirectoryConnection {
  /** `ldap://` or `ldaps://` URLs, tried in order: the first that answers is used. */
  urls: string[];
  /** Upgrade `ldap://` connections with StartTLS before binding (ignored for `ldaps://`). */
  startTls: boolean;
  /** PEM of the CA (or CAs) to trust instead of the system roots; null = system roots. */
  caCertPem: string | null;
  verifyCertificate: boolean;
  connectTimeoutMs: number;
  operationTimeoutMs: number;
  /** null = anonymous bind. */
  bindDn: string | null;
  bindPassword: string | null;
  baseDn: string;
}

export type SearchScope = "sub" | "one";

/** Where users and groups live and which attributes carry Roster's fields. */
export interface DirectoryMapping {
  /** Relative to the base DN (`ou=people`) or a full DN under it; null = the base DN. */
  userBase: string | null;
  userFilter: string;
  userScope: SearchScope;
  groupBase: string | null;
  groupFilter: string;
  groupScope: SearchScope;
  attrUsername: string;
  attrFullName: string;
  attrEmail: string;
  attrDepartment: string;
  attrPhone: string;
  /** entryUUID, objectGUID, nsUniqueId…: survives renames and moves, unlike the DN. */
  attrUniqueId: string;
  attrGroupName: string;
  attrMember: string;
  /** Whether the member attribute holds DNs (member, uniqueMember) or usernames (memberUid). */
  memberValues: "dn" | "username";
  pageSize: number;
}

export interface LdapUser {
  dn: string;
  externalId: string;
  /** NFC-normalized. */
  username: string;
  fullName: string;
  email: string | null;
  department: string | null;
  phone: string | null;
  disabled: boolean;
}

export interface LdapGroup {
  dn: string;
  externalId: string;
  /** NFC-normalized. */
  name: string;
  description: string | null;
  /**
   * Number of member values in the entry as read. Active Directory returns at most one range
   * window (1500 values) in a search result; `memberCountExact` is false then, and
   * `countMembers` gives the real figure.
   */
  memberCount: number;
  memberCountExact: boolean;
}
