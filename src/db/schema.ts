import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uniqueIndex,
  varchar,
} from "drizzle-orm/pg-core";

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp("updated_at", { withTimezone: true }).notNull().defaultNow();

/** LDAP server configurations, tried at sign-in in `position` order. */
export const directories = pgTable("directories", {
  id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
  name: text("name").notNull().unique(),
  position: integer("position").notNull(),
  enabled: boolean("enabled").notNull().default(true),
  preset: text("preset").notNull().default("openldap"),
  urls: text("urls").array().notNull(),
  startTls: boolean("start_tls").notNull().default(false),
  caCertPem: text("ca_cert_pem"),
  verifyCertificate: boolean("verify_certificate").notNull().default(true),
  connectTimeoutMs: integer("connect_timeout_ms").notNull().default(5000),
  operationTimeoutMs: integer("operation_timeout_ms").notNull().default(10000),
  bindDn: text("bind_dn"),
  /** AES-256-GCM ciphertext (see src/services/secrets.ts); never rendered, never logged. */
  bindPasswordEncrypted: text("bind_password_encrypted"),
  baseDn: text("base_dn").notNull(),
  userBase: text("user_base"),
  userFilter: text("user_filter").notNull(),
  userScope: text("user_scope", { enum: ["sub", "one"] })
    .notNull()
    .default("sub"),
  groupBase: text("group_base"),
  groupFilter: text("group_filter").notNull(),
  groupScope: text("group_scope", { enum: ["sub", "one"] })
    .notNull()
    .default("sub"),
  attrUsername: text("attr_username").notNull(),
  attrFullName: text("attr_full_name").notNull(),
  attrEmail: text("attr_email").notNull(),
  attrDepartment: text("attr_department").notNull(),
  attrPhone: text("attr_phone").notNull(),
  attrUniqueId: text("attr_unique_id").notNull(),
  attrGroupName: text("attr_group_name").notNull(),
  attrMember: text("attr_member").notNull(),
  memberValues: text("member_values", { enum: ["dn", "username"] })
    .notNull()
    .default("dn"),
  pageSize: integer("page_size").notNull().default(500),
  lastTestedAt: timestamp("last_tested_at", { withTimezone: true }),
  lastTestOk: boolean("last_test_ok"),
  lastUserCount: integer("last_user_count"),
  lastGroupCount: integer("last_group_count"),
  /** Synchronized automatically every this many minutes (null: only when asked). */
  syncIntervalMinutes: integer("sync_interval_minutes").default(60),
  /** When the next scheduled synchronization is due: claimed by one instance, then moved on. */
  nextSyncAt: timestamp("next_sync_at", { withTimezone: true }).default(sql`now() + interval '1 hour'`),
  /**
   * A synchronization whose removals (users disabled, groups marked missing, memberships removed)
   * exceed this share of the directory's users in Roster, or this many, whichever is larger, holds
   * them for review instead of applying them.
   */
  holdRemovalsPercent: integer("hold_removals_percent").notNull().default(5),
  holdRemovalsMinimum: integer("hold_removals_minimum").notNull().default(50),
  /**
   * Where the last synchronization left off (sync/incremental.ts): the directory's own time of the
   * newest change it read, the settings it read with, and when it last looked for deleted entries.
   * Null: the next synchronization reads everything.
   */
  syncState: jsonb("sync_state"),
  /**
   * Who may sign in through this directory: only users imported from it, only those of them in
   * `signInGroupIds` (or their subgroups), or anyone its user filter finds (created at first sign-in).
   */
  signInPolicy: text("sign_in_policy", { enum: ["imported", "groups", "anyone"] })
    .notNull()
    .default("imported"),
  /** This directory's imported groups whose members may sign in (policy "groups"); ids of groups gone are ignored. */
  signInGroupIds: integer("sign_in_group_ids").array().notNull().default(sql`'{}'::int[]`),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/**
 * Internal and external users. `usernameKey` is the NFC-normalized, lower-cased username: the one
 * place where "same username" is decided, so the database rejects `Alice` beside `alice`.
 * External users are keyed on (directory, externalId) — the DN is only a cache.
 */
/** The part of users' search_text on the trigram index: all but the email after the tab. */
export const USER_INDEXED_SEARCH = sql.raw(`split_part("search_text", E'\\t', 1)`);
/**
 * A user's email domain as email_domains records it (migration 0006's trigger): what follows the
 * first "@" of the email after search_text's tab. A search inside a known domain finds its users on
 * this expression's index.
 */
export const USER_EMAIL_DOMAIN = sql.raw(
  `substr(split_part("search_text", E'\\t', 2), strpos(split_part("search_text", E'\\t', 2), '@') + 1)`,
);

export const users = pgTable(
  "users",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    kind: text("kind", { enum: ["internal", "external"] }).notNull(),
    username: text("username").notNull(),
    usernameKey: text("username_key").notNull(),
    fullName: text("full_name").notNull().default(""),
    email: text("email").notNull().default(""),
    department: text("department").notNull().default(""),
    phone: text("phone").notNull().default(""),
    /**
     * Username, full name and the email's local part, a tab, then the whole email: all folded, for
     * substring search (userSearchText). The trigram index covers what precedes the tab.
     */
    searchText: text("search_text").notNull().default(""),
    enabled: boolean("enabled").notNull().default(true),
    /**
     * True when sign-in was disabled by the directory (the account disabled there, or its entry gone)
     * rather than by an administrator: the directory enabling it again enables it in Roster too.
     */
    disabledByDirectory: boolean("disabled_by_directory").notNull().default(false),
    passwordHash: text("password_hash"),
    /**
     * The directory the user comes from. Not a declared foreign key: PostgreSQL checks one of those
     * once per inserted row (a query and a row lock each), which was a seventh of its work in an
     * import. Triggers from migration 0004 keep the same rule once per statement: a row may only
     * name a directory that exists (locked against deletion until the writer commits), and deleting
     * a directory sets its users' directory_id to null.
     */
    directoryId: integer("directory_id"),
    externalId: text("external_id"),
    dn: text("dn"),
    /** True when the user's directory entry was found missing at the last synchronization. */
    missingInDirectory: boolean("missing_in_directory").notNull().default(false),
    lastSyncedAt: timestamp("last_synced_at", { withTimezone: true }),
    lastLoginAt: timestamp("last_login_at", { withTimezone: true }),
    lastActivityAt: timestamp("last_activity_at", { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("users_username_key_idx").on(t.usernameKey),
    uniqueIndex("users_directory_external_id_idx").on(t.directoryId, t.externalId),
    // Internal users only: they are few (made by hand), while an import adds external users by the
    // hundred thousand, and an index on every row's kind and name cost it ≈ 12% of PostgreSQL's work.
    // The list walks users_username_key_idx for external users, which are nearly every row.
    index("users_internal_username_key_idx").on(t.usernameKey).where(sql`${t.kind} = 'internal'`),
    // Not the email after the tab: its domain is every user's, and half the keys an import wrote here.
    index("users_search_text_trgm_idx").using("gin", sql`${USER_INDEXED_SEARCH} gin_trgm_ops`),
    // A search inside a known email domain finds its users here (one short, deduplicated key per user),
    // not by reading every email: 550 ms -> 1 ms for a rare domain at 1,000,000 users.
    index("users_email_domain_idx").on(USER_EMAIL_DOMAIN),
    // The list's runs when sorted by last activity, by sign-in status, and by directory (users a
    // deleted directory left): without them a sparse run walks every name. Partial, so an import
    // (users that never signed in, with a directory, mostly enabled) writes few of their keys; an
    // update of last_activity_at (once a minute per active user) is no longer HOT.
    index("users_activity_idx")
      .on(t.lastActivityAt, t.usernameKey)
      .where(sql`${t.lastActivityAt} is not null`),
    index("users_disabled_username_key_idx").on(t.usernameKey).where(sql`not ${t.enabled}`),
    index("users_orphaned_username_key_idx")
      .on(t.usernameKey)
      .where(sql`${t.directoryId} is null and ${t.kind} = 'external'`),
    // Home's count of users disabled by the directory.
    index("users_disabled_by_directory_idx").on(t.id).where(sql`${t.disabledByDirectory}`),
    check("users_external_has_id", sql`${t.kind} = 'internal' or ${t.externalId} is not null`),
    check("users_disabled_by_directory_is_disabled", sql`not (${t.disabledByDirectory} and ${t.enabled})`),
  ],
);

/**
 * Every email domain users have had (kept by triggers on users, migration 0006; a domain no user has
 * any more may stay). A search reads users' emails only when its text has an "@" or lies inside one
 * of these, so most searches stay on the trigram index.
 */
export const emailDomains = pgTable("email_domains", {
  domain: text("domain").primaryKey(),
});

export const groups = pgTable(
  "groups",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    kind: text("kind", { enum: ["internal", "external"] }).notNull(),
    name: text("name").notNull(),
    nameKey: text("name_key").notNull(),
    description: text("description").notNull().default(""),
    searchText: text("search_text").notNull().default(""),
    directoryId: integer("directory_id").references(() => directories.id, { onDelete: "set null" }),
    externalId: text("external_id"),
    dn: text("dn"),
    missingInDirectory: boolean("missing_in_directory").notNull().default(false),
    /**
     * A fingerprint of the member list the directory had when the group's members were last
     * imported (members.ts memberListHash): the import page tells from it whether importing the
     * group again would change its members. Null until then.
     */
    memberListHash: text("member_list_hash"),
    lastSyncedAt: timestamp("last_synced_at", { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("groups_name_key_idx").on(t.nameKey),
    uniqueIndex("groups_directory_external_id_idx").on(t.directoryId, t.externalId),
    index("groups_kind_name_key_idx").on(t.kind, t.nameKey),
    index("groups_search_text_trgm_idx").using("gin", sql`${t.searchText} gin_trgm_ops`),
  ],
);

export const groupMembers = pgTable(
  "group_members",
  {
    groupId: integer("group_id")
      .notNull()
      .references(() => groups.id, { onDelete: "cascade" }),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
  },
  (t) => [primaryKey({ columns: [t.groupId, t.userId] }), index("group_members_user_idx").on(t.userId)],
);

export const groupSubgroups = pgTable(
  "group_subgroups",
  {
    parentId: integer("parent_id")
      .notNull()
      .references(() => groups.id, { onDelete: "cascade" }),
    childId: integer("child_id")
      .notNull()
      .references(() => groups.id, { onDelete: "cascade" }),
  },
  (t) => [
    primaryKey({ columns: [t.parentId, t.childId] }),
    index("group_subgroups_child_idx").on(t.childId),
    check("group_subgroups_not_self", sql`${t.parentId} <> ${t.childId}`),
  ],
);

export const roles = pgTable("roles", {
  id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
  /** Stable identifier of a predefined role (`server_admin`…); null for custom roles. */
  key: text("key").unique(),
  name: text("name").notNull().unique(),
  description: text("description").notNull().default(""),
  predefined: boolean("predefined").notNull().default(false),
  permissions: text("permissions").array().notNull().default(sql`'{}'::text[]`),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/**
 * Role + subject (exactly one of user or group) + scope. `scope` is '' for global, otherwise a
 * resource reference such as `project:42`. NULLS NOT DISTINCT makes the same assignment unique.
 */
export const roleAssignments = pgTable(
  "role_assignments",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    roleId: integer("role_id")
      .notNull()
      .references(() => roles.id, { onDelete: "cascade" }),
    userId: integer("user_id").references(() => users.id, { onDelete: "cascade" }),
    groupId: integer("group_id").references(() => groups.id, { onDelete: "cascade" }),
    scope: text("scope").notNull().default(""),
    createdAt: createdAt(),
  },
  (t) => [
    unique("role_assignments_unique").on(t.roleId, t.userId, t.groupId, t.scope).nullsNotDistinct(),
    index("role_assignments_user_idx").on(t.userId),
    index("role_assignments_group_idx").on(t.groupId),
    check("role_assignments_one_subject", sql`(${t.userId} is null) <> (${t.groupId} is null)`),
  ],
);

/** Role assignments given to every user newly imported from a directory. */
export const directoryDefaultRoles = pgTable(
  "directory_default_roles",
  {
    directoryId: integer("directory_id")
      .notNull()
      .references(() => directories.id, { onDelete: "cascade" }),
    roleId: integer("role_id")
      .notNull()
      .references(() => roles.id, { onDelete: "cascade" }),
    scope: text("scope").notNull().default(""),
  },
  (t) => [primaryKey({ columns: [t.directoryId, t.roleId, t.scope] })],
);

export const importRuns = pgTable(
  "import_runs",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    directoryId: integer("directory_id").references(() => directories.id, { onDelete: "set null" }),
    directoryName: text("directory_name").notNull(),
    actorId: integer("actor_id").references(() => users.id, { onDelete: "set null" }),
    actorName: text("actor_name").notNull(),
    /** What was searched (text or raw filter) and what was chosen: kept to re-run and to show. */
    /** An import of chosen entries, or a synchronization of everything imported from the directory. */
    kind: text("kind", { enum: ["import", "synchronization"] })
      .notNull()
      .default("import"),
    query: text("query").notNull().default(""),
    selection: jsonb("selection").notNull(),
    /** A synchronization's reading: every entry (full), or those changed since the last one. */
    syncMethod: text("sync_method", { enum: ["full", "incremental"] }),
    /** Why a synchronization read everything, or how far back an incremental one read. */
    syncNote: text("sync_note"),
    copyRolesFrom: jsonb("copy_roles_from"),
    status: text("status", { enum: ["queued", "running", "succeeded", "failed", "cancelled", "held"] })
      .notNull()
      .default("queued"),
    cancelRequested: boolean("cancel_requested").notNull().default(false),
    /** Which worker holds the run, and when it last said it is alive: a stale heartbeat is re-claimed. */
    claimedBy: text("claimed_by"),
    heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }),
    attempts: integer("attempts").notNull().default(0),
    /** When a worker last took the run over and read on from its checkpoint, and from which entry count. */
    resumedAt: timestamp("resumed_at", { withTimezone: true }),
    resumedFrom: integer("resumed_from"),
    total: integer("total"),
    processed: integer("processed").notNull().default(0),
    created: integer("created").notNull().default(0),
    updated: integer("updated").notNull().default(0),
    unchanged: integer("unchanged").notNull().default(0),
    skipped: integer("skipped").notNull().default(0),
    failed: integer("failed").notNull().default(0),
    error: text("error"),
    /**
     * A synchronization that held its removals: why, how many, and what an administrator decided
     * (applied, discarded, or superseded by a later synchronization).
     */
    heldReason: text("held_reason"),
    heldCount: integer("held_count"),
    review: text("review", { enum: ["applied", "discarded", "superseded"] }),
    reviewedBy: text("reviewed_by"),
    reviewedAt: timestamp("reviewed_at", { withTimezone: true }),
    createdAt: createdAt(),
    startedAt: timestamp("started_at", { withTimezone: true }),
    finishedAt: timestamp("finished_at", { withTimezone: true }),
  },
  (t) => [
    index("import_runs_status_idx").on(t.status, t.createdAt),
    index("import_runs_directory_idx").on(t.directoryId, t.createdAt),
  ],
);

/**
 * The users a running import has handled: every user entry its committed batches imported, updated
 * or skipped (written in the same transaction as the batch), with the row it became. It is the
 * run's memory of what it has met, kept in the database so that the importer's heap does not grow
 * with the directory: each batch asks it which of its entries were handled before, a worker taking
 * the run over reads on from it, and a synchronization's anti-join finds the users it never met.
 * Unlogged (a database crash empties it and the run starts again from zero) and without a foreign
 * key (a check per row would cost more than the row); rows go when the run ends.
 */
export const importRunUsers = pgTable(
  "import_run_users",
  {
    runId: integer("run_id").notNull(),
    externalId: text("external_id").notNull(),
    /** The Roster user the entry became; null: skipped (a conflict, not importable). */
    objectId: integer("object_id"),
  },
  (t) => [primaryKey({ columns: [t.runId, t.externalId] })],
);

/**
 * More of a running import's checkpoint, a row per batch, only ever read whole (hence unlogged and
 * without an index): users a synchronization's presence pass met without reading them, and group
 * members reported as not importable. Rows go when the run ends.
 */
export const importRunHandled = pgTable("import_run_handled", {
  /** No foreign key either: a check per row would cost more than the row; the run's end deletes them. */
  runId: integer("run_id").notNull(),
  /** present: stable ids a presence pass met; member: a group DN and a member value reported as not importable. */
  kind: text("kind", { enum: ["present", "member"] }).notNull(),
  /** One row per batch: its keys. */
  keys: text("keys").array().notNull(),
});

/** The groups a running import has handled, with each one's report so far (also unlogged). */
export const importRunGroups = pgTable(
  "import_run_groups",
  {
    runId: integer("run_id")
      .notNull()
      .references(() => importRuns.id, { onDelete: "cascade" }),
    externalId: text("external_id").notNull(),
    objectId: integer("object_id"),
    /** Outcome, changes, members added, finished (null for an entry skipped as not importable). */
    state: jsonb("state"),
  },
  (t) => [primaryKey({ columns: [t.runId, t.externalId] })],
);

/**
 * What a synchronization would remove: users whose entries are gone (disabled and marked missing),
 * groups gone (marked missing), memberships the directory no longer lists. Collected while the run
 * reads, applied at its end when the safety guard lets it, held for review otherwise.
 */
export const syncRemovals = pgTable(
  "sync_removals",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    runId: integer("run_id")
      .notNull()
      .references(() => importRuns.id, { onDelete: "cascade" }),
    change: text("change", {
      enum: ["disable_user", "group_missing", "remove_member", "remove_subgroup"],
    }).notNull(),
    /** The user disabled or removed from the group. */
    userId: integer("user_id").references(() => users.id, { onDelete: "cascade" }),
    /** The group marked missing, or the group a member or subgroup leaves. */
    groupId: integer("group_id").references(() => groups.id, { onDelete: "cascade" }),
    /** The subgroup removed from groupId. */
    childId: integer("child_id").references(() => groups.id, { onDelete: "cascade" }),
  },
  (t) => [index("sync_removals_run_idx").on(t.runId, t.change)],
);

/** One row per entry a run did not simply create or leave alone: what happened and why. */
export const importRunEntries = pgTable(
  "import_run_entries",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    runId: integer("run_id")
      .notNull()
      .references(() => importRuns.id, { onDelete: "cascade" }),
    outcome: text("outcome", { enum: ["created", "updated", "unchanged", "skipped", "failed"] }).notNull(),
    entryKind: text("entry_kind", { enum: ["user", "group", "computer", "contact", "member"] }).notNull(),
    name: text("name").notNull(),
    dn: text("dn").notNull().default(""),
    reason: text("reason").notNull().default(""),
    createdAt: createdAt(),
  },
  (t) => [index("import_run_entries_run_idx").on(t.runId, t.outcome)],
);

export const auditLog = pgTable(
  "audit_log",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
    actorId: integer("actor_id").references(() => users.id, { onDelete: "set null" }),
    actorName: text("actor_name").notNull(),
    action: text("action").notNull(),
    targetType: text("target_type").notNull().default(""),
    targetId: text("target_id").notNull().default(""),
    targetName: text("target_name").notNull().default(""),
    details: jsonb("details").notNull().default({}),
  },
  (t) => [
    index("audit_log_at_idx").on(t.at),
    index("audit_log_actor_idx").on(t.actorName, t.at),
    index("audit_log_target_idx").on(t.targetType, t.targetId, t.at),
    index("audit_log_action_idx").on(t.action, t.at),
  ],
);

/** express-session store table, in the shape connect-pg-simple expects. */
export const sessions = pgTable(
  "session",
  {
    sid: varchar("sid").primaryKey(),
    sess: jsonb("sess").notNull(),
    expire: timestamp("expire", { precision: 6 }).notNull(),
  },
  (t) => [index("IDX_session_expire").on(t.expire)],
);

/** Sign-in throttling counters, shared by every instance on the same database. */
export const rateLimits = pgTable("rate_limits", {
  key: text("key").primaryKey(),
  hits: integer("hits").notNull(),
  resetAt: timestamp("reset_at", { withTimezone: true }).notNull(),
});

/**
 * Personal API tokens (issue 29): a request with `Authorization: Bearer <token>` acts as `userId`,
 * with that user's permissions at the time of the request. Only the SHA-256 of the token is kept
 * (the token is 256 random bits, so a slow hash would add nothing); `hint` is its last characters,
 * to tell tokens apart in the list.
 */
export const apiTokens = pgTable(
  "api_tokens",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    tokenHash: text("token_hash").notNull(),
    hint: text("hint").notNull(),
    createdById: integer("created_by_id").references(() => users.id, { onDelete: "set null" }),
    createdByName: text("created_by_name").notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true }),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("api_tokens_token_hash_idx").on(t.tokenHash),
    index("api_tokens_user_idx").on(t.userId),
  ],
);
