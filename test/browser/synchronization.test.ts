/**
 * A directory's synchronization page and the review of held removals, by keyboard alone, with
 * JavaScript on and off, axe clean. SCREENSHOTS=<dir> also saves each page at 1,280 and 390 px.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import type { Browser, Page } from "playwright-core";
import { directories, importRuns } from "../../src/db/schema.ts";
import { generateUsers, groupEntry, userDn, userFixture } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
import { requestSynchronization } from "../../src/services/sync/schedule.ts";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import {
  assertNoAxeViolations,
  type BrowserSite,
  newContext,
  openBrowserSite,
  PASSWORD,
  signInByKeyboard,
  tabTo,
} from "../helpers/browser.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import { addDirectory, runQueued, testWorker, withStableIds } from "../web/import-support.ts";

const PEOPLE = 80;

describe("Synchronization in a browser", { skip: skipWithoutSlapd }, () => {
  let t: TestApp;
  let browser: Browser;
  let site: BrowserSite;
  let ldap: SlapdServer;
  let directoryId: number;

  const runAll = () => runQueued(testWorker(t.db, t.config.encryptionKey));

  before(async () => {
    [t, ldap] = await Promise.all([
      createTestApp(),
      startSlapd({
        ldif: withStableIds(
          generateUsers(PEOPLE) +
            groupEntry({ cn: "staff", members: Array.from({ length: 40 }, (_, i) => userDn(i)) }),
        ),
      }),
    ]);
    await createUser(t.db, { username: "admin", password: PASSWORD, role: "server_admin" });
    directoryId = (await addDirectory(t.db, t.config.encryptionKey, ldap, { name: "Lab OpenLDAP" })).id;
    for (const kind of ["users", "groups"] as const) {
      await createRun(t.db, {
        directory: { id: directoryId, name: "Lab OpenLDAP" },
        actor: { id: null, name: "admin" },
        query: "",
        selection: { mode: "query", text: "", kind },
        copyRolesFrom: null,
        total: null,
      });
    }
    await runAll();
    site = await openBrowserSite(t.app);
    ({ browser } = site);
  });
  after(async () => {
    await site?.close();
    await Promise.all([ldap?.stop(), t?.close()]);
  });

  /** A synchronization whose removals are held: the filter now hides all but 10 users. */
  async function heldRun(): Promise<number> {
    const only = Array.from({ length: 10 }, (_, i) => `(uid=${userFixture(i).uid})`).join("");
    await t.db
      .update(directories)
      .set({ userFilter: `(&(objectClass=inetOrgPerson)(|${only}))`, holdRemovalsMinimum: 20 })
      .where(eq(directories.id, directoryId));
    const { run } = await requestSynchronization(
      t.db,
      { id: directoryId, name: "Lab OpenLDAP" },
      { id: null, name: "admin" },
    );
    await runAll();
    await t.db
      .update(directories)
      .set({ userFilter: "(objectClass=inetOrgPerson)" })
      .where(eq(directories.id, directoryId));
    return run.id;
  }

  async function screenshots(page: Page, name: string): Promise<void> {
    const dir = process.env.SCREENSHOTS;
    if (!dir) return;
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 });
      await page.screenshot({ path: `${dir}/${name}-${width}.png`, fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  for (const javaScript of [true, false]) {
    const mode = javaScript ? "on" : "off";
    /** These pages are plain forms, the same with JavaScript on and off: scanned once, with it on. */
    const scanOnce = (page: Page) => (javaScript ? assertNoAxeViolations(page) : Promise.resolve());

    test(`sets the schedule and synchronizes now by keyboard, JavaScript ${mode}`, async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      const base = `/settings/directories/${directoryId}/synchronization`;
      await signInByKeyboard(page, site.url, base);
      await page.getByRole("heading", { name: "Synchronization of Lab OpenLDAP", level: 1 }).waitFor();
      await scanOnce(page);
      await screenshots(page, `sync-page-js-${mode}`);

      await tabTo(page, "Synchronize automatically");
      await page.keyboard.type(javaScript ? "Every 6" : "Every 15");
      await tabTo(page, "Percent of the directory's users in Roster");
      await page.keyboard.press("Control+A");
      await page.keyboard.type("ten");
      await tabTo(page, "Save schedule");
      await page.keyboard.press("Enter");
      await page.getByText("Enter a whole number from 0 to 100.").first().waitFor();
      await scanOnce(page);
      await screenshots(page, `sync-page-error-js-${mode}`);
      await tabTo(page, "Percent of the directory's users in Roster", 60);
      await page.keyboard.press("Control+A");
      await page.keyboard.type("10");
      await tabTo(page, "Save schedule");
      await page.keyboard.press("Enter");
      await page.getByText("The synchronization schedule was saved.").waitFor();
      const [saved] = await t.db.select().from(directories).where(eq(directories.id, directoryId));
      assert.equal(saved?.syncIntervalMinutes, javaScript ? 360 : 15);
      assert.equal(saved?.holdRemovalsPercent, 10);

      await tabTo(page, "Synchronize now", 60);
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: /^Synchronization #\d+ of Lab OpenLDAP$/, level: 1 }).waitFor();
      const runId = Number(/\/imports\/(\d+)$/.exec(page.url())?.[1]);
      await runAll();
      const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, runId));
      assert.equal(run?.status, "succeeded", run?.error ?? "");
      await page.getByText(/^Finished: /).waitFor({ timeout: 10_000 });
      await scanOnce(page);
      await screenshots(page, `sync-run-js-${mode}`);
    });

    test(`reviews held removals by keyboard, JavaScript ${mode}`, async () => {
      const held = await heldRun();
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signInByKeyboard(page, site.url, `/settings/directories/${directoryId}/synchronization`);
      await page.getByRole("heading", { name: "Synchronization of Lab OpenLDAP", level: 1 }).waitFor();
      await tabTo(page, /held by synchronization #\d+/, 60);
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: /^Held for review: \d+ removals$/ }).waitFor();
      await scanOnce(page);
      await screenshots(page, `sync-held-js-${mode}`);
      const decision = javaScript ? "Discard them" : /^Apply \d+ removals$/;
      await tabTo(page, decision, 80);
      await page.keyboard.press("Enter");
      await page
        .getByText(javaScript ? /The held changes were discarded/ : "The held changes were applied.")
        .waitFor();
      await scanOnce(page);
      const [run] = await t.db.select().from(importRuns).where(eq(importRuns.id, held));
      assert.equal(run?.review, javaScript ? "discarded" : "applied");
      assert.equal(run?.reviewedBy, "admin");
    });
  }
});
