import type { Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import { loadHomeSummary } from "../../services/home-summary.ts";
import { PERMISSIONS } from "../../services/permissions.ts";
import { render } from "../render.ts";

const RUN_STATUS: Record<string, { label: string; tone: "on" | "off" | "warn" | "neutral" }> = {
  queued: { label: "Queued", tone: "neutral" },
  running: { label: "Running", tone: "neutral" },
  succeeded: { label: "Finished", tone: "on" },
  failed: { label: "Failed", tone: "off" },
  cancelled: { label: "Cancelled", tone: "neutral" },
  held: { label: "Removals held for review", tone: "warn" },
};

/** Home: the console's overview for those who manage users, a short word for everyone else. */
export function homeHandlers({ db }: { db: Db }) {
  return {
    async index(req: Request, res: Response) {
      const canManage = res.locals.currentUser?.permissions.has(PERMISSIONS.manageUsers) === true;
      const summary = canManage ? await loadHomeSummary(db) : null;
      render(req, res, "home/index", { title: "Home", summary, runStatus: RUN_STATUS });
    },
  };
}
