import { Router } from "express";
import type { Db } from "../../db/client.ts";
import { PERMISSIONS } from "../../services/permissions.ts";
import { listUsers } from "../../services/users.ts";
import { requirePermission } from "../auth-middleware.ts";
import { render } from "../render.ts";

export function usersRoutes({ db }: { db: Db }): Router {
  const router = Router();
  router.use("/users", requirePermission(PERMISSIONS.manageUsers));

  router.get("/users", async (req, res) => {
    const search = typeof req.query.q === "string" ? req.query.q.trim().slice(0, 200) : "";
    const rows = await listUsers(db, { search, limit: 50 });
    render(req, res, "users/index", { title: "Users", search, rows }, { partial: "users/_user-list" });
  });

  return router;
}
