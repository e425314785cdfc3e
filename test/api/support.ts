/** API test helpers: tokens made through the service, requests that carry them. */
import { eq } from "drizzle-orm";
import type { Db } from "../../src/db/client.ts";
import { apiTokens } from "../../src/db/schema.ts";
import { createApiToken } from "../../src/services/api-tokens.ts";

/** A fresh token for the user, as My account makes it (expiry optional). */
export async function tokenFor(
  db: Db,
  user: { id: number; username: string },
  options: { name?: string; expiresAt?: Date | null } = {},
): Promise<{ token: string; id: number }> {
  const created = await createApiToken(db, { id: user.id, name: user.username }, user, {
    name: options.name ?? "test",
    expiresAt: options.expiresAt ?? null,
  });
  if (!created.ok) throw new Error(created.message);
  return { token: created.value.token, id: created.value.view.id };
}

/** Moves a token's expiry into the past, as time passing would. */
export async function expireToken(db: Db, id: number): Promise<void> {
  await db
    .update(apiTokens)
    .set({ expiresAt: new Date(Date.now() - 1000) })
    .where(eq(apiTokens.id, id));
}

export const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** A concrete address for a documented path: every `{id}` is 1. */
export function concretePath(path: string): string {
  return `/api/v1${path.replace(/\{\w+\}/g, "1")}`;
}
