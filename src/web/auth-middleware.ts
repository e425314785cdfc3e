import { eq } from "drizzle-orm";
import type { NextFunction, Request, Response } from "express";
import type { Db } from "../db/client.ts";
import { directories, users } from "../db/schema.ts";
import { authenticateToken, type TokenCheck } from "../services/api-tokens.ts";
import { touchActivity, type User } from "../services/auth.ts";
import { globalPermissionsOf, PERMISSIONS, type Permission } from "../services/permissions.ts";

export interface CurrentUser {
  id: number;
  username: string;
  fullName: string;
  permissions: Set<string>;
}

declare global {
  namespace Express {
    interface Locals {
      currentUser?: CurrentUser;
    }
  }
}

interface NavItem {
  href: string;
  label: string;
  permission: Permission | null;
  /** The path prefixes that belong to this section of the console. */
  sections: string[];
}

const NAV: NavItem[] = [
  {
    href: "/users",
    label: "Users",
    permission: PERMISSIONS.manageUsers,
    sections: ["/users", "/groups", "/roles", "/imports"],
  },
  { href: "/settings", label: "Settings", permission: PERMISSIONS.manageUsers, sections: ["/settings"] },
];

function inSection(path: string, prefixes: string[]): boolean {
  return prefixes.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
}

/**
 * Loads the signed-in user on every request, with the permissions it holds now (so a revoked role
 * takes effect at once), and the navigation it may see. A disabled or deleted user is signed out,
 * and so is an external user whose directory is disabled or deleted.
 */
export function loadCurrentUser(db: Db) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const userId = req.session?.userId;
    res.locals.nav = [];
    if (userId === undefined) return next();
    const [row] = await db
      .select({ user: users, directoryEnabled: directories.enabled })
      .from(users)
      .leftJoin(directories, eq(directories.id, users.directoryId))
      .where(eq(users.id, userId));
    const user = row?.user;
    // An external user signs in through its directory only: with that directory disabled or
    // deleted it could not sign in again, so its session ends too.
    const signInPossible = user?.kind !== "external" || row?.directoryEnabled === true;
    if (!user?.enabled || !signInPossible) {
      await new Promise<void>((resolve) => req.session.destroy(() => resolve()));
      return next();
    }
    const permissions = await globalPermissionsOf(db, user.id);
    res.locals.currentUser = toCurrentUser(user, permissions);
    res.locals.nav = NAV.filter((item) => item.permission === null || permissions.has(item.permission)).map(
      (item) => ({ href: item.href, label: item.label, current: inSection(req.path, item.sections) }),
    );
    await touchActivity(db, user.id);
    next();
  };
}

function toCurrentUser(user: User, permissions: Set<string>): CurrentUser {
  return { id: user.id, username: user.username, fullName: user.fullName, permissions };
}

export function requireLogin(req: Request, res: Response, next: NextFunction): void {
  if (res.locals.currentUser) {
    next();
    return;
  }
  const returnTo = req.method === "GET" ? req.originalUrl : "/";
  const location = `/login?returnTo=${encodeURIComponent(returnTo)}`;
  // An htmx request must not swap the sign-in page into a region: send the browser there instead.
  if (req.get("HX-Request") === "true" && req.get("HX-Boosted") !== "true") {
    res.set("HX-Redirect", location).status(401).end();
    return;
  }
  res.redirect(303, location);
}

export function requirePermission(permission: Permission) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (!res.locals.currentUser) return requireLogin(req, res, next);
    if (res.locals.currentUser.permissions.has(permission)) return next();
    res.status(403);
    next(new ForbiddenError());
  };
}

export class ForbiddenError extends Error {
  status = 403;
}

/** Only a local path may be a return address: `//evil.test` and `https://…` are refused. */
export function safeReturnTo(value: unknown): string {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) {
    return "/";
  }
  return value;
}

// ——— API tokens (issue 29) ———

declare global {
  namespace Express {
    interface Locals {
      /** Set when the request authenticated with an API token rather than a session. */
      apiToken?: { id: number; name: string };
    }
  }
}

/** The signed-in user (session or API token), if any. */
export function currentUserOf(res: Response): CurrentUser | undefined {
  return res.locals.currentUser;
}

/** `Authorization: Bearer <token>`'s token, or null when the request has no bearer credentials. */
export function bearerTokenOf(req: Request): string | null {
  const header = req.get("Authorization");
  if (!header) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? "";
}

const TOKEN_REFUSALS: Record<Exclude<TokenCheck, { ok: true }>["reason"], string> = {
  malformed: "This is not a Roster API token (they start with roster_).",
  unknown: "This API token is not valid.",
  revoked: "This API token was revoked.",
  expired: "This API token has expired.",
  disabled: "The account this API token belongs to can't sign in (disabled, or its directory is).",
};

/**
 * Authenticates an API request by its bearer token: the token's user, with the permissions it holds
 * now (a role removed takes effect at once), or a 401 saying why. No session is read or made.
 */
export function loadBearerUser(db: Db) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const token = bearerTokenOf(req) ?? "";
    const check = await authenticateToken(db, token);
    if (!check.ok) {
      return next(Object.assign(new Error(TOKEN_REFUSALS[check.reason]), { status: 401, expose: true }));
    }
    const permissions = await globalPermissionsOf(db, check.user.id);
    res.locals.currentUser = toCurrentUser(check.user, permissions);
    res.locals.apiToken = check.token;
    next();
  };
}
