/**
 * Home (issue 28, item 5), by keyboard, with JavaScript on and off: the first step of a new
 * installation, the counts, the last runs with their outcome and the directories that need a look.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import type { Browser, Page } from "playwright-core";
import { importRuns, users } from "../../src/db/schema.ts";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import {
  assertNoAxeViolations,
  type BrowserSite,
  focusedLabel,
  newContext,
  openBrowserSite,
  PASSWORD,
  signInByKeyboard,
  tabTo,
} from "../helpers/browser.ts";
import { makeDirectory, makeExternalUser, makeGroup } from "../helpers/console.ts";

let t: TestApp;
let browser: Browser;
let site: BrowserSite;
/** The directory set up in the second part, that the runs of the third are of. */
let demoId = 0;

before(async () => {
  t = await createTestApp();
  await createUser(t.db, {
    username: "admin",
    fullName: "Ada Admin",
    password: PASSWORD,
    role: "server_admin",
  });
  site = await openBrowserSite(t.app);
  ({ browser } = site);
});
after(async () => {
  await site.close();
  await t.close();
});

const modes = [true, false].map((javaScript) => ({
  javaScript,
  label: `JavaScript ${javaScript ? "on" : "off"}`,
}));

/** Signs in by keyboard and lands on Home, as the sign-in page sends everyone there by default. */
async function signInAtHome(javaScript: boolean): Promise<Page> {
  const context = await newContext(browser, javaScript);
  const page = await context.newPage();
  await signInByKeyboard(page, site.url, "/");
  await page.waitForURL(`${site.url}/`);
  await page.getByRole("heading", { level: 1, name: "Welcome, Ada Admin" }).waitFor();
  return page;
}

/** The text of each element, white space as a reader hears it. */
function textsOf(page: Page, selector: string): Promise<string[]> {
  return page
    .locator(selector)
    .evaluateAll((els) => els.map((el) => (el as HTMLElement).innerText.replace(/\s+/g, " ").trim()));
}

/**
 * Back to Home by the brand link. After a boosted visit (JavaScript on) focus is on the main region,
 * past the header: Shift+Tab goes back to it. After a full page load Tab starts at the page's top.
 */
async function backHome(page: Page, javaScript: boolean): Promise<void> {
  if (javaScript) {
    for (let i = 0; i < 20 && (await focusedLabel(page)) !== "Roster"; i++)
      await page.keyboard.press("Shift+Tab");
    assert.equal(await focusedLabel(page), "Roster");
  } else {
    await tabTo(page, "Roster");
  }
  await page.keyboard.press("Enter");
  await page.waitForURL(`${site.url}/`);
  await page.getByRole("heading", { level: 1, name: "Welcome, Ada Admin" }).waitFor();
}

describe("Home of a new installation", () => {
  for (const { javaScript, label } of modes) {
    test(`asks to add a directory first, and the button leads there (${label})`, async () => {
      const page = await signInAtHome(javaScript);
      assert.deepEqual(await textsOf(page, "#home-counts li"), [
        "1 internal user",
        "0 external users",
        "0 groups",
        "0 directories",
        "0 users disabled by the directory",
      ]);
      assert.match(
        await page.locator("#first-step").innerText(),
        /Get started\s+Roster imports users and groups from LDAP directories/,
      );
      assert.equal(
        (await page.locator("#recent-runs").innerText()).replace(/\s+/g, " ").trim(),
        "Last imports and synchronizations Nothing has been imported or synchronized yet.",
      );
      assert.equal(await page.locator("#directory-problems").count(), 0);
      await assertNoAxeViolations(page);

      await tabTo(page, "Add a directory");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/settings/directories/new`);
      await page.getByRole("heading", { level: 1, name: "Add a directory" }).waitFor();
      await page.context().close();
    });
  }
});

describe("Home once a directory is set up but nothing imported", () => {
  before(async () => {
    demoId = (await makeDirectory(t.db, "Demo directory")).id;
  });

  for (const { javaScript, label } of modes) {
    test(`offers to import from it, and the button opens the import page on it (${label})`, async () => {
      const page = await signInAtHome(javaScript);
      assert.match(await page.locator("#first-step").innerText(), /Demo directory is set up\. Search it/);
      assert.equal(await page.getByRole("link", { name: "Add a directory" }).count(), 0);
      assert.equal((await textsOf(page, "#home-counts li"))[3], "1 directory");
      await assertNoAxeViolations(page);

      await tabTo(page, "Import from Demo directory");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/imports/new?directory=${demoId}`);
      await page.getByRole("heading", { level: 1, name: "Import users & groups" }).waitFor();
      assert.equal((await page.locator(".import-directory").innerText()).trim(), "Directory: Demo directory");
      await page.context().close();
    });
  }
});

/** A run of the Demo directory, `hour` hours into 1 December 2026, finished a minute later unless queued. */
function runAt(hour: number, run: Partial<typeof importRuns.$inferInsert>): typeof importRuns.$inferInsert {
  const at = new Date(Date.UTC(2026, 11, 1, hour));
  const queued = run.status === "queued";
  return {
    actorName: "admin",
    selection: {},
    directoryId: demoId,
    directoryName: "Demo directory",
    createdAt: at,
    startedAt: queued ? null : at,
    finishedAt: queued ? null : new Date(at.getTime() + 60_000),
    ...run,
  };
}

describe("Home of an installation in use", () => {
  const runIds: number[] = [];
  let brokenId = 0;

  before(async () => {
    await makeDirectory(t.db, "Second LDAP"); // nothing wrong with this one
    brokenId = (
      await makeDirectory(t.db, "Broken LDAP", {
        lastTestOk: false,
        lastTestedAt: new Date("2026-11-30T08:15:00Z"),
      })
    ).id;
    await createUser(t.db, { username: "ines", fullName: "Ines Internal" });
    for (const username of ["ext-1", "ext-2", "ext-3", "ext-4"]) {
      await makeExternalUser(t.db, { username, directoryId: demoId });
    }
    await t.db
      .update(users)
      .set({ enabled: false, disabledByDirectory: true })
      .where(eq(users.username, "ext-4"));
    await makeGroup(t.db, { name: "Staff" });
    await makeGroup(t.db, { name: "Sales" });

    // Seven runs, an hour apart: Home shows the six newest, newest first.
    const runs = [
      runAt(0, { status: "succeeded", created: 99 }),
      runAt(1, { status: "succeeded", created: 5, updated: 1, unchanged: 2 }),
      runAt(2, { status: "succeeded", created: 1, updated: 2, unchanged: 3, skipped: 2, failed: 1 }),
      runAt(3, { status: "queued" }),
      runAt(4, { status: "cancelled", created: 4 }),
      runAt(5, {
        kind: "synchronization",
        status: "held",
        unchanged: 7,
        directoryId: brokenId,
        directoryName: "Broken LDAP",
      }),
      runAt(6, {
        kind: "synchronization",
        status: "failed",
        error: "The directory did not answer within 10 seconds.",
      }),
    ];
    for (const run of runs) {
      const [row] = await t.db.insert(importRuns).values(run).returning({ id: importRuns.id });
      runIds.push(row?.id ?? -1);
    }
  });

  for (const { javaScript, label } of modes) {
    test(`shows the counts, the last six runs and the directories that need a look (${label})`, async () => {
      const page = await signInAtHome(javaScript);
      assert.equal(await page.locator("#first-step").count(), 0, "no first step once users are imported");
      assert.deepEqual(await textsOf(page, "#home-counts li"), [
        "2 internal users",
        "4 external users",
        "2 groups",
        "3 directories",
        "1 user disabled by the directory",
      ]);

      const [, r2, r3, r4, r5, r6, r7] = runIds;
      assert.deepEqual(await textsOf(page, "#recent-runs tbody tr td:nth-child(-n+3)"), [
        `Synchronization #${r7}`,
        "Demo directory",
        "Failed 0 created, 0 updated, 0 unchanged",
        `Synchronization #${r6}`,
        "Broken LDAP",
        "Removals held for review 0 created, 0 updated, 7 unchanged",
        `Import #${r5}`,
        "Demo directory",
        "Cancelled 4 created, 0 updated, 0 unchanged",
        `Import #${r4}`,
        "Demo directory",
        "Queued",
        `Import #${r3}`,
        "Demo directory",
        "Finished 1 created, 2 updated, 3 unchanged, 2 skipped, 1 failed",
        `Import #${r2}`,
        "Demo directory",
        "Finished 5 created, 1 updated, 2 unchanged",
      ]);
      assert.deepEqual(await textsOf(page, "#recent-runs tbody tr td:nth-child(4)"), [
        "2026-12-01 06:01 UTC",
        "2026-12-01 05:01 UTC",
        "2026-12-01 04:01 UTC",
        "2026-12-01 03:00 UTC",
        "2026-12-01 02:01 UTC",
        "2026-12-01 01:01 UTC",
      ]);
      assert.deepEqual(await textsOf(page, "#directory-problems li"), [
        "Demo directory The last synchronization failed (2026-12-01 06:01 UTC): The directory did not answer within 10 seconds.",
        "Broken LDAP The last connection test failed (2026-11-30 08:15 UTC). The last synchronization holds removals for review (2026-12-01 05:01 UTC).",
      ]);
      await assertNoAxeViolations(page);

      // A count leads to the list it counts.
      await tabTo(page, "4 external users");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/users?filter=external-users`);
      await page
        .locator("#list-status")
        .filter({ hasText: /^4 external users\.$/ })
        .waitFor();
      assert.deepEqual(await page.locator("#user-rows tr td:nth-child(2) a").allInnerTexts(), [
        "ext-1",
        "ext-2",
        "ext-3",
        "ext-4",
      ]);

      // Back to Home, then to the failed run's report from the problem list.
      await backHome(page, javaScript);
      await tabTo(page, "The last synchronization failed");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/imports/${r7}`);
      await page
        .getByRole("heading", { level: 1, name: `Synchronization #${r7} of Demo directory` })
        .waitFor();

      await backHome(page, javaScript);
      await tabTo(page, "Broken LDAP");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/settings/directories/${brokenId}/edit`);
      await page.getByRole("heading", { level: 1, name: /Broken LDAP/ }).waitFor();
      await page.context().close();
    });
  }
});
