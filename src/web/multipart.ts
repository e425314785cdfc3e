import type { NextFunction, Request, Response } from "express";

export interface MultipartOptions {
  /** Largest body accepted, in bytes; more answers 413 like the urlencoded parser. */
  limit: number;
  /** Most fields (files included) accepted. */
  maxFields: number;
}

/**
 * Parses `multipart/form-data` (forms with a file input) into `req.body` with Node's own parser
 * (fetch's `Response.formData()`), so no extra dependency is needed. Fields become strings (arrays
 * when repeated, as the urlencoded parser does); a file becomes its content as UTF-8 text, or ""
 * when none was chosen. It runs before CSRF protection, which reads `_csrf` from the body.
 */
export function multipartForms(options: MultipartOptions) {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const type = req.get("content-type") ?? "";
    if (req.method !== "POST" || !/^multipart\/form-data\s*;/i.test(type)) return next();
    try {
      const raw = await readBody(req, options.limit);
      const form = await new Response(new Uint8Array(raw), { headers: { "content-type": type } }).formData();
      const body: Record<string, string | string[]> = Object.create(null);
      let fields = 0;
      for (const [name, value] of form) {
        fields += 1;
        if (fields > options.maxFields) throw httpError(413, "too many fields");
        const text = typeof value === "string" ? value : await value.text();
        const previous = body[name];
        body[name] =
          previous === undefined ? text : [...(Array.isArray(previous) ? previous : [previous]), text];
      }
      req.body = body;
      next();
    } catch (err) {
      next((err as { status?: number }).status ? err : httpError(400, "malformed multipart body"));
    }
  };
}

async function readBody(req: Request, limit: number): Promise<Buffer> {
  const declared = Number(req.get("content-length") ?? "0");
  if (declared > limit) throw httpError(413, "request entity too large");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw httpError(413, "request entity too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function httpError(status: number, message: string): Error & { status: number } {
  return Object.assign(new Error(message), { status });
}
