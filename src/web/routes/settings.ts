import { Router } from "express";
import { PERMISSIONS } from "../../services/permissions.ts";
import { requirePermission } from "../auth-middleware.ts";
import { render } from "../render.ts";

export interface SettingsSection {
  href: string;
  label: string;
  description: string;
}

/** Settings' start page lists the sections that the mounted routers provide. */
export function settingsRoutes(sections: SettingsSection[]): Router {
  const router = Router();
  router.use("/settings", requirePermission(PERMISSIONS.manageUsers));
  router.get("/settings", (req, res) => render(req, res, "settings/index", { title: "Settings", sections }));
  return router;
}
