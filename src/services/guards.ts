import { sql } from "drizzle-orm";
import { type Db, queryRows, sqlState } from "../db/client.ts";
import { PERMISSIONS } from "./permissions.ts";

/** A change the service won't make, with the words to show the administrator. */
export class Refusal extends Error {
  constructor(
    message: string,
    /** The form field the message belongs beside, if any. */
    readonly field: string = "form",
  ) {
    super(message);
    this.name = "Refusal";
  }
}

export type Outcome<T = void> = { ok: true; value: T } | { ok: false; field: string; message: string };

/**
 * Runs `work` in a transaction; a Refusal thrown inside rolls it back and comes out as a value, so
 * a change is either made completely or not at all.
 */
export async function attempt<T>(db: Db, work: (tx: Db) => Promise<T>): Promise<Outcome<T>> {
  try {
    const value = await db.transaction((tx) => work(tx as unknown as Db));
    return { ok: true, value };
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, field: err.field, message: err.message };
    throw err;
  }
}

/** PostgreSQL's unique_violation. */
export function isUniqueViolation(err: unknown): boolean {
  return sqlState(err) === "23505";
}

/**
 * Refuses a change after which no enabled user holding "Manage users" globally (directly or through
 * groups and their subgroups) could still sign in — internal users can, external ones only through
 * an enabled directory: nobody could then undo it. Call it inside the transaction that made the
 * change (disabling users, removing roles or memberships, disabling or deleting a directory); the
 * advisory lock makes two such changes wait for each other, so two administrators can't each remove
 * the other.
 */
export async function ensureManagersRemain(tx: Db, because: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext('roster.user-managers'))`);
  const [row] = await queryRows<{ ok: boolean }>(
    tx,
    sql`with recursive manager_roles as (
          select id from roles where ${PERMISSIONS.manageUsers} = any(permissions)
        ), granted(id) as (
          select group_id from role_assignments
          where scope = '' and group_id is not null and role_id in (select id from manager_roles)
          union
          select s.child_id from group_subgroups s join granted g on s.parent_id = g.id
        )
        select exists (
          select 1 from users u
          where u.enabled
            and (u.kind = 'internal'
                 or exists (select 1 from directories d where d.id = u.directory_id and d.enabled))
            and (
              exists (select 1 from role_assignments a
                      where a.user_id = u.id and a.scope = '' and a.role_id in (select id from manager_roles))
              or exists (select 1 from group_members m
                         where m.user_id = u.id and m.group_id in (select id from granted))
            )
        ) as ok`,
  );
  if (!row?.ok) {
    throw new Refusal(
      `${because} would leave nobody who can sign in and manage users, so nobody could undo it.`,
    );
  }
}
