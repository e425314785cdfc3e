import type { NextFunction, Request, Response } from "express";
import { ipKeyGenerator, rateLimit } from "express-rate-limit";
import type { Db } from "../../db/client.ts";
import { createFirstAdmin, type ExternalAuthenticator, needsSetup, signIn } from "../../services/auth.ts";
import { nameKey } from "../../services/names.ts";
import { MIN_PASSWORD_LENGTH } from "../../services/passwords.ts";
import { safeReturnTo } from "../auth-middleware.ts";
import { redirectAfterPost } from "../flash.ts";
import { loginSchema, setupSchema } from "../forms/auth.ts";
import { type FieldErrors, parseForm } from "../forms/form.ts";
import { DatabaseRateLimitStore, rememberSignIn, signedInBefore } from "../rate-limit-store.ts";
import { render } from "../render.ts";

export interface AuthRouteDeps {
  db: Db;
  externalAuth?: ExternalAuthenticator;
  /**
   * Failed sign-ins allowed in a window: per address and username, per address alone, and per
   * username from all addresses together (which addresses the user signed in from before pass).
   */
  throttle?: { windowMs: number; perAccount: number; perAddress: number; perUsername?: number };
}

/** How long an address a user signed in from still passes the username's lock. */
const SIGNED_IN_BEFORE_DAYS = 90;

/** Signing in and out, and the first administrator's set-up. */
export function authHandlers({ db, externalAuth, throttle }: AuthRouteDeps) {
  const limits = { windowMs: 15 * 60_000, perAccount: 5, perAddress: 50, perUsername: 20, ...throttle };
  const minutes = Math.ceil(limits.windowMs / 60_000);
  const tooMany = (req: Request, res: Response) =>
    renderLogin(req, res, 429, {
      form: `Too many failed sign-in attempts. Wait ${minutes} minutes, then try again.`,
    });
  const usernameLocked = (req: Request, res: Response) =>
    renderLogin(req, res, 429, {
      form: `Too many failed sign-in attempts for this username. Wait ${minutes} minutes, or sign in from a network you have signed in from before.`,
    });

  // Only failures count (401 or 422). Per address: all its failures, and those on one username;
  // past either it is refused even the right password, or a 429 would tell a guess from the answer.
  // Per username from all addresses together: the lock that holds guessing spread over many
  // addresses. An address the user signed in from in the last 90 days passes it (its own limits
  // still hold), so an attacker elsewhere can't lock the user out; a new address waits it out.
  const loginThrottle = [
    rateLimit({
      windowMs: limits.windowMs,
      limit: limits.perAddress,
      skipSuccessfulRequests: true,
      store: new DatabaseRateLimitStore(db, "login-address:"),
      handler: tooMany,
    }),
    rateLimit({
      windowMs: limits.windowMs,
      limit: limits.perAccount,
      skipSuccessfulRequests: true,
      keyGenerator: addressAndUsername,
      store: new DatabaseRateLimitStore(db, "login-account:"),
      handler: tooMany,
    }),
    rateLimit({
      windowMs: limits.windowMs,
      limit: limits.perUsername,
      skipSuccessfulRequests: true,
      keyGenerator: typedUsernameKey,
      skip: (req) => signedInBefore(db, addressAndUsername(req)),
      store: new DatabaseRateLimitStore(db, "login-username:"),
      handler: usernameLocked,
    }),
  ];

  return {
    loginThrottle,

    async loginForm(req: Request, res: Response) {
      if (res.locals.currentUser) return res.redirect(303, "/");
      if (await needsSetup(db)) return res.redirect(303, "/setup");
      renderLogin(req, res, 200);
    },

    async login(req: Request, res: Response, next: NextFunction) {
      const form = parseForm(loginSchema, req.body);
      if (!form.ok) return renderLogin(req, res, 422, form.errors);
      const result = await signIn(db, form.data.username, form.data.password, externalAuth);
      if (!result.ok) {
        req.log.info({ username: form.data.username }, "sign-in refused");
        return renderLogin(req, res, 401, { form: "The username or password is not correct." });
      }
      await rememberSignIn(db, addressAndUsername(req), SIGNED_IN_BEFORE_DAYS);
      startSession(req, result.user.id, (err) => {
        if (err) return next(err);
        req.log.info({ userId: result.user.id }, "signed in");
        res.redirect(303, safeReturnTo(form.data.returnTo));
      });
    },

    logout(req: Request, res: Response, next: NextFunction) {
      req.session.destroy((err) => {
        if (err) return next(err);
        res.clearCookie("roster.sid");
        res.redirect(303, "/login");
      });
    },

    async setupForm(req: Request, res: Response) {
      if (!(await needsSetup(db))) return res.redirect(303, "/login");
      renderSetup(req, res, 200, {}, {});
    },

    async setup(req: Request, res: Response, next: NextFunction) {
      if (!(await needsSetup(db))) return res.redirect(303, "/login");
      const form = parseForm(setupSchema, req.body);
      const values = { username: req.body?.username, fullName: req.body?.fullName, email: req.body?.email };
      if (!form.ok) return renderSetup(req, res, 422, form.errors, values);
      const result = await createFirstAdmin(db, form.data);
      if (!result.ok) return res.redirect(303, "/login");
      startSession(req, result.user.id, (err) => {
        if (err) return next(err);
        redirectAfterPost(req, res, "/", `Welcome! ${result.user.username} is now the administrator.`);
      });
    },
  };
}

function typedUsernameKey(req: Request): string {
  return nameKey(String(req.body?.username ?? "").trim());
}

function addressAndUsername(req: Request): string {
  return `${ipKeyGenerator(req.ip ?? "")}|${typedUsernameKey(req)}`;
}

/** A new session id at sign-in, so an id planted before sign-in is worth nothing after it. */
function startSession(req: Request, userId: number, done: NextFunction): void {
  req.session.regenerate((err) => {
    if (err) return done(err);
    req.session.userId = userId;
    req.session.save(done);
  });
}

function renderLogin(req: Request, res: Response, status: number, errors: FieldErrors = {}): void {
  const values = { username: typeof req.body?.username === "string" ? req.body.username : "" };
  const returnTo = safeReturnTo(req.body?.returnTo ?? req.query.returnTo);
  render(req, res, "auth/login", { title: "Sign in", errors, values, returnTo }, { status });
}

function renderSetup(
  req: Request,
  res: Response,
  status: number,
  errors: FieldErrors,
  values: Record<string, unknown>,
): void {
  render(
    req,
    res,
    "auth/setup",
    { title: "Set up", errors, values, minPasswordLength: MIN_PASSWORD_LENGTH },
    { status },
  );
}
