import { asc, like, type SQL } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { users } from "../db/schema.ts";

export interface UserListItem {
  id: number;
  username: string;
  fullName: string;
  kind: "internal" | "external";
  enabled: boolean;
}

/** Escapes LIKE's own wildcards so a typed `%` or `_` matches itself. */
export function likePattern(text: string): string {
  return `%${text
    .normalize("NFC")
    .toLowerCase()
    .replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export async function listUsers(db: Db, options: { search: string; limit: number }): Promise<UserListItem[]> {
  const where: SQL | undefined = options.search
    ? like(users.searchText, likePattern(options.search))
    : undefined;
  return db
    .select({
      id: users.id,
      username: users.username,
      fullName: users.fullName,
      kind: users.kind,
      enabled: users.enabled,
    })
    .from(users)
    .where(where)
    .orderBy(asc(users.usernameKey))
    .limit(options.limit);
}
