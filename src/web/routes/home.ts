import type { Request, Response } from "express";
import { render } from "../render.ts";

export const home = {
  index(req: Request, res: Response) {
    render(req, res, "home/index", { title: "Home" });
  },
};
