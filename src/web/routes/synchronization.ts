/**
 * A directory's synchronization: its schedule and safety limit, "Synchronize now", and the review
 * of removals a synchronization held. The runs themselves show on the import run pages.
 */
import type { Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import { getRun } from "../../services/import/run-queue.ts";
import {
  intervalValue,
  requestSynchronization,
  reviewHeldRemovals,
  SYNC_INTERVALS,
  saveSchedule,
  syncOverview,
} from "../../services/sync/schedule.ts";
import { flash, redirectAfterPost } from "../flash.ts";
import { type FieldErrors, parseForm } from "../forms/form.ts";
import { reviewForm, scheduleForm } from "../forms/synchronization.ts";
import { loaded } from "../loaders.ts";
import { render } from "../render.ts";
import { actorOf } from "../request-helpers.ts";

export interface SynchronizationRouteDeps {
  db: Db;
  wake?: () => void;
}

export function synchronizationHandlers(deps: SynchronizationRouteDeps) {
  const { db } = deps;

  const page = async (
    req: Request,
    res: Response,
    form?: { values: Record<string, string>; errors: FieldErrors },
  ) => {
    const directory = loaded(res, "directory");
    const overview = await syncOverview(db, directory.id);
    render(
      req,
      res,
      "directories/synchronization",
      {
        title: `Synchronization of ${directory.name}`,
        directory,
        overview,
        intervals: SYNC_INTERVALS,
        values: form?.values ?? {
          interval: intervalValue(directory.syncIntervalMinutes),
          holdPercent: String(directory.holdRemovalsPercent),
          holdMinimum: String(directory.holdRemovalsMinimum),
        },
        errors: form?.errors ?? {},
      },
      { status: form ? 422 : 200 },
    );
  };

  return {
    show: (req: Request, res: Response) => page(req, res),

    async save(req: Request, res: Response) {
      const directory = loaded(res, "directory");
      const body = req.body ?? {};
      const values = {
        interval: String(body.interval ?? ""),
        holdPercent: String(body.holdPercent ?? ""),
        holdMinimum: String(body.holdMinimum ?? ""),
      };
      const parsed = parseForm(scheduleForm, values);
      if (!parsed.ok) return page(req, res, { values, errors: parsed.errors });
      await saveSchedule(db, actorOf(res), directory, {
        intervalMinutes: parsed.data.interval,
        holdPercent: parsed.data.holdPercent,
        holdMinimum: parsed.data.holdMinimum,
      });
      redirectAfterPost(
        req,
        res,
        `/settings/directories/${directory.id}/synchronization`,
        "The synchronization schedule was saved.",
      );
    },

    async synchronizeNow(req: Request, res: Response) {
      const directory = loaded(res, "directory");
      if (!directory.enabled) {
        flash(req, "error", "This directory is disabled: enable it before synchronizing it.");
        return redirectAfterPost(req, res, `/settings/directories/${directory.id}/synchronization`);
      }
      const full = String(req.body?.full ?? "") === "true";
      const { run, created } = await requestSynchronization(db, directory, actorOf(res), { full });
      if (created) deps.wake?.();
      redirectAfterPost(
        req,
        res,
        `/imports/${run.id}`,
        created
          ? "The synchronization has started. It goes on in the background: you can leave this page."
          : "A synchronization of this directory is already under way: here it is.",
      );
    },

    async review(req: Request, res: Response) {
      const run = loaded(res, "run");
      const parsed = parseForm(reviewForm, req.body);
      if (!parsed.ok) {
        flash(req, "error", parsed.errors.decision ?? "Choose to apply or to discard the held changes.");
        return redirectAfterPost(req, res, `/imports/${run.id}`);
      }
      const result = await reviewHeldRemovals(db, run.id, actorOf(res), parsed.data.decision);
      if (result === "not-held") {
        const current = await getRun(db, run.id);
        flash(
          req,
          "error",
          current?.review === "superseded"
            ? "A later synchronization has looked at the directory again: decide on its held changes instead."
            : "These changes were already decided on.",
        );
        return redirectAfterPost(req, res, `/imports/${run.id}`);
      }
      redirectAfterPost(
        req,
        res,
        `/imports/${run.id}`,
        result === "applied"
          ? "The held changes were applied."
          : "The held changes were discarded: nothing was removed. The next synchronization looks again.",
      );
    },
  };
}
