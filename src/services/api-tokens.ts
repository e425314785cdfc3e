/**
 * Personal API tokens: created (shown once), listed, revoked, and checked on every API request.
 * A token is `roster_` and 43 characters of base64url (256 random bits); only its SHA-256 is stored.
 */
import { createHash, randomBytes } from "node:crypto";
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { apiTokens, directories, users } from "../db/schema.ts";
import { type Actor, recordAudit } from "./audit.ts";
import type { User } from "./auth.ts";
import { attempt, type Outcome, Refusal } from "./guards.ts";

export const TOKEN_PREFIX = "roster_";
/** A token longer than this is not one of ours; it is refused before it is hashed. */
const MAX_TOKEN_LENGTH = 200;
/** Last use is written at most this often per token: an API client may send many requests a second. */
const LAST_USE_PRECISION_MS = 60_000;

export type ApiToken = typeof apiTokens.$inferSelect;

export interface TokenView {
  id: number;
  name: string;
  hint: string;
  createdAt: Date;
  createdByName: string;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  state: "active" | "expired" | "revoked";
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

function newToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
}

export interface NewToken {
  name: string;
  expiresAt: Date | null;
}

/**
 * Creates a token for `owner` and returns it in clear, the only time it exists outside the caller's
 * hands. Audited as created by `actor` (the owner, or an administrator for a service user).
 */
export async function createApiToken(
  db: Db,
  actor: Actor,
  owner: { id: number; username: string },
  input: NewToken,
): Promise<Outcome<{ token: string; view: TokenView }>> {
  if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
    return { ok: false, field: "expiresAt", message: "Choose an expiry date in the future." };
  }
  const token = newToken();
  return attempt(db, async (tx) => {
    const [row] = await tx
      .insert(apiTokens)
      .values({
        userId: owner.id,
        name: input.name,
        tokenHash: hashToken(token),
        hint: token.slice(-4),
        createdById: actor.id,
        createdByName: actor.name,
        expiresAt: input.expiresAt,
      })
      .returning();
    if (!row) throw new Error("insert returned no token");
    await recordAudit(tx, actor, {
      action: "api_token.create",
      targetType: "user",
      targetId: owner.id,
      targetName: owner.username,
      details: { token: row.name, tokenId: row.id, expiresAt: row.expiresAt?.toISOString() ?? null },
    });
    return { token, view: viewOf(row) };
  });
}

export async function listApiTokens(db: Db, userId: number): Promise<TokenView[]> {
  const rows = await db
    .select()
    .from(apiTokens)
    .where(eq(apiTokens.userId, userId))
    .orderBy(sql`${apiTokens.revokedAt} is not null`, desc(apiTokens.createdAt), desc(apiTokens.id));
  return rows.map(viewOf);
}

/** Revokes one of `ownerId`'s tokens; revoking a revoked token changes nothing and says so. */
export async function revokeApiToken(
  db: Db,
  actor: Actor,
  ownerId: number,
  tokenId: number,
): Promise<Outcome<{ name: string; alreadyRevoked: boolean }>> {
  return attempt(db, async (tx) => {
    const [row] = await tx
      .select({ token: apiTokens, username: users.username })
      .from(apiTokens)
      .innerJoin(users, eq(users.id, apiTokens.userId))
      .where(and(eq(apiTokens.id, tokenId), eq(apiTokens.userId, ownerId)))
      .for("update");
    if (!row) throw new Refusal("That token does not exist.", "token");
    if (row.token.revokedAt) return { name: row.token.name, alreadyRevoked: true };
    await tx.update(apiTokens).set({ revokedAt: new Date() }).where(eq(apiTokens.id, tokenId));
    await recordAudit(tx, actor, {
      action: "api_token.revoke",
      targetType: "user",
      targetId: ownerId,
      targetName: row.username,
      details: { token: row.token.name, tokenId },
    });
    return { name: row.token.name, alreadyRevoked: false };
  });
}

export type TokenCheck =
  | { ok: true; user: User; token: { id: number; name: string } }
  | { ok: false; reason: "malformed" | "unknown" | "revoked" | "expired" | "disabled" };

/**
 * The user a bearer token acts as, or why it is refused: unknown, revoked, expired, or a user who
 * could not sign in (disabled; external with its directory disabled or deleted).
 */
export async function authenticateToken(db: Db, token: string): Promise<TokenCheck> {
  if (!token.startsWith(TOKEN_PREFIX) || token.length > MAX_TOKEN_LENGTH)
    return { ok: false, reason: "malformed" };
  const [row] = await db
    .select({ token: apiTokens, user: users, directoryEnabled: directories.enabled })
    .from(apiTokens)
    .innerJoin(users, eq(users.id, apiTokens.userId))
    .leftJoin(directories, eq(directories.id, users.directoryId))
    .where(eq(apiTokens.tokenHash, hashToken(token)));
  if (!row) return { ok: false, reason: "unknown" };
  if (row.token.revokedAt) return { ok: false, reason: "revoked" };
  if (row.token.expiresAt && row.token.expiresAt.getTime() <= Date.now())
    return { ok: false, reason: "expired" };
  const signInPossible = row.user.kind !== "external" || row.directoryEnabled === true;
  if (!row.user.enabled || !signInPossible) return { ok: false, reason: "disabled" };
  const last = row.token.lastUsedAt?.getTime() ?? 0;
  if (Date.now() - last >= LAST_USE_PRECISION_MS) {
    await db
      .update(apiTokens)
      .set({ lastUsedAt: new Date() })
      .where(and(eq(apiTokens.id, row.token.id), isNull(apiTokens.revokedAt)));
  }
  return { ok: true, user: row.user, token: { id: row.token.id, name: row.token.name } };
}

function viewOf(row: ApiToken): TokenView {
  const state = row.revokedAt
    ? "revoked"
    : row.expiresAt && row.expiresAt.getTime() <= Date.now()
      ? "expired"
      : "active";
  return {
    id: row.id,
    name: row.name,
    hint: row.hint,
    createdAt: row.createdAt,
    createdByName: row.createdByName,
    expiresAt: row.expiresAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
    state,
  };
}
