import type { NextFunction, Request, Response } from "express";
import type { Directory } from "../services/directories.ts";
import type { GroupDetails } from "../services/groups.ts";
import type { ImportRun } from "../services/import/run-queue.ts";
import type { Role } from "../services/roles.ts";
import type { UserDetails } from "../services/users.ts";
import { positiveId } from "./request-helpers.ts";

/** The objects a URL names, loaded by `router.param` before the route's handler runs. */
export interface Loaded {
  user: UserDetails;
  group: GroupDetails;
  role: Role;
  directory: Directory;
  run: ImportRun;
}

declare global {
  namespace Express {
    interface Locals {
      user?: UserDetails;
      group?: GroupDetails;
      role?: Role;
      directory?: Directory;
      run?: ImportRun;
    }
  }
}

/**
 * A `router.param` callback: loads the object whose id is in the URL into `res.locals[key]`.
 * When there is none, `notFound` answers, or else the request goes on to the "Page not found" page.
 */
export function paramLoader<K extends keyof Loaded>(
  key: K,
  find: (id: number) => Promise<Loaded[K] | null>,
  notFound?: (req: Request, res: Response) => void,
) {
  return async (req: Request, res: Response, next: NextFunction, value: string) => {
    const id = positiveId(value);
    const found = id === null ? null : await find(id);
    if (found) {
      res.locals[key] = found as Response["locals"][K];
      return next();
    }
    if (notFound) return notFound(req, res);
    next("route");
  };
}

/** The object the route's `:…Id` parameter named, which its loader has put in place. */
export function loaded<K extends keyof Loaded>(res: Response, key: K): Loaded[K] {
  const value = res.locals[key];
  if (value === undefined) throw new Error(`no ${key} loaded: the route has no parameter for it`);
  return value as Loaded[K];
}
