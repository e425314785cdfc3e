import { Router } from "express";
import { requireLogin } from "../auth-middleware.ts";
import { render } from "../render.ts";

export function homeRoutes(): Router {
  const router = Router();
  router.get("/", requireLogin, (req, res) => render(req, res, "home/index", { title: "Home" }));
  return router;
}
