/**
 * /api/docs: the OpenAPI document browsed with Swagger UI, served from node_modules (no CDN) under
 * the console's usual CSP: its script is a file of ours, not inline.
 */
import { createRequire } from "node:module";
import path from "node:path";
import type { Request, Response } from "express";
import { render } from "../web/render.ts";

export const swaggerUiDir = path.dirname(
  createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"),
);

// "Try it out" only for reads: a write from a signed-in browser would need the CSRF token. The page
// may arrive by an htmx-boosted navigation, whose scripts run as they are inserted: the bundle may
// still be loading then.
const INIT_SCRIPT = `(function () {
  function start() {
    window.SwaggerUIBundle({
      url: "/api/v1/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: false,
      supportedSubmitMethods: ["get"],
      defaultModelsExpandDepth: 0,
    });
  }
  if (window.SwaggerUIBundle) return start();
  var bundle = document.querySelector('script[src$="swagger-ui-bundle.js"]');
  if (bundle) bundle.addEventListener("load", start);
})();
`;

export const apiDocs = {
  page(req: Request, res: Response) {
    render(req, res, "account/api-docs", { title: "API documentation" });
  },
  script(_req: Request, res: Response) {
    res.type("application/javascript").send(INIT_SCRIPT);
  },
};
