/**
 * The audit log (issue 28, item 6), by keyboard, with JavaScript on and off: Newest/Newer/Older/Oldest
 * and "Page N of M", the From/To dates with their message beside the field, the action filter in
 * groups of readable names, and the CSV export of what the filter matches.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { auditLog } from "../../src/db/schema.ts";
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

const PATH = "/settings/audit-log";

let t: TestApp;
let browser: Browser;
let site: BrowserSite;

before(async () => {
  t = await createTestApp();
  await createUser(t.db, {
    username: "admin",
    fullName: "Ada Admin",
    password: PASSWORD,
    role: "server_admin",
  });
  // 120 user entries on 1 March 2026, a minute apart (bulk-000 the oldest)…
  await t.db.insert(auditLog).values(
    Array.from({ length: 120 }, (_, i) => ({
      at: new Date(Date.UTC(2026, 2, 1, 0, i)),
      actorName: "robot",
      action: "user.enable",
      targetType: "user",
      targetId: String(1000 + i),
      targetName: `bulk-${String(i).padStart(3, "0")}`,
    })),
  );
  // …and four older ones of other kinds, around the days the date filter picks.
  await t.db.insert(auditLog).values([
    {
      at: new Date("2026-02-09T12:00:00Z"),
      actorName: "ada",
      action: "role_assignment.copy",
      targetType: "user",
      targetId: "77",
      targetName: "ines",
    },
    {
      at: new Date("2026-02-10T09:30:00Z"),
      actorName: "robot",
      action: "import.succeeded",
      targetType: "import",
      targetId: "7",
      targetName: "Import #7",
    },
    {
      at: new Date("2026-02-11T23:59:59Z"),
      actorName: "ada",
      action: "directory.test_connection",
      targetType: "directory",
      targetId: "3",
      targetName: "Corporate LDAP",
    },
    {
      at: new Date("2026-02-12T00:00:00Z"),
      actorName: "robot",
      action: "synchronization.held",
      targetType: "directory",
      targetId: "3",
      targetName: "Corporate LDAP",
    },
  ]);
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

async function openAuditLog(javaScript: boolean): Promise<Page> {
  const context = await newContext(browser, javaScript);
  const page = await context.newPage();
  await signInByKeyboard(page, site.url, PATH);
  await page.waitForURL((url) => url.pathname === PATH);
  await page.getByRole("heading", { level: 1, name: "Audit log" }).waitFor();
  return page;
}

/** Text as read aloud: white space, line breaks included, as single spaces. */
function textOf(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** A column of the entries table, as shown. */
function column(page: Page, n: number): Promise<string[]> {
  return page.locator(`#audit-entries tbody tr td:nth-child(${n})`).allInnerTexts();
}

/** The pagination's links and "Page N of M", as read. */
async function pagination(page: Page): Promise<string> {
  return (await page.locator("nav.pagination").innerText()).replace(/\s+/g, " ").trim();
}

/** Waits until the pagination says `text` (after an htmx swap or a page load). */
async function waitForPagination(page: Page, text: string): Promise<void> {
  await page.locator("nav.pagination").filter({ hasText: text }).waitFor();
  assert.equal(await pagination(page), text);
}

describe("paging through the audit log by keyboard", () => {
  for (const { javaScript, label } of modes) {
    test(`Older, Oldest, Newer and Newest say which page of how many (${label})`, async () => {
      const page = await openAuditLog(javaScript);
      assert.equal(await pagination(page), "Page 1 of 3 Older → Oldest »");
      assert.equal((await column(page, 4)).length, 50);
      assert.equal((await column(page, 4))[0], "bulk-119 (user)");
      assert.equal((await column(page, 3))[0], "User enabled");
      await assertNoAxeViolations(page);

      // 50 rows each with a link to their user come before the pagination.
      await tabTo(page, "Older →", 120);
      await page.keyboard.press("Enter");
      await waitForPagination(page, "« Newest ← Newer Page 2 of 3 Older → Oldest »");
      assert.match(page.url(), /[?&]before=[^&]+&page=2$/);
      assert.equal((await column(page, 4))[0], "bulk-069 (user)");
      assert.equal((await column(page, 4))[49], "bulk-020 (user)");
      if (javaScript) assert.equal(await focusedLabel(page), "Older →", "focus stays on the link pressed");

      await tabTo(page, "Oldest »", 120);
      await page.keyboard.press("Enter");
      await waitForPagination(page, "« Newest ← Newer Page 3 of 3");
      assert.match(page.url(), /[?&]at=end$/);
      assert.deepEqual((await column(page, 3)).slice(-5), [
        "User enabled",
        "Synchronization held removals",
        "Directory connection tested",
        "Import finished",
        "Roles copied",
      ]);
      assert.equal((await column(page, 4)).length, 24, "the oldest page holds what the full pages leave");
      if (javaScript) {
        // The link pressed is gone: focus goes to the entries, not to the page's top.
        await page.locator("#audit-entries-heading:focus").waitFor({ timeout: 5000 });
      }
      await assertNoAxeViolations(page);

      await tabTo(page, "← Newer", 120);
      await page.keyboard.press("Enter");
      await waitForPagination(page, "« Newest ← Newer Page 2 of 3 Older → Oldest »");
      assert.equal((await column(page, 4))[0], "bulk-069 (user)");
      assert.match(page.url(), /[?&]after=[^&]+&page=2$/);

      await tabTo(page, "« Newest", 120);
      await page.keyboard.press("Enter");
      await waitForPagination(page, "Page 1 of 3 Older → Oldest »");
      assert.equal(page.url(), `${site.url}${PATH}`);
      assert.equal((await column(page, 4))[0], "bulk-119 (user)");
      if (javaScript) await page.locator("#audit-entries-heading:focus").waitFor({ timeout: 5000 });
      await page.context().close();
    });
  }
});

describe("filtering the audit log by action by keyboard, and exporting it", () => {
  for (const { javaScript, label } of modes) {
    test(`actions are offered by readable name in groups; the export is what is shown (${label})`, async () => {
      const page = await openAuditLog(javaScript);
      const groups = await page
        .locator("#field-action optgroup")
        .evaluateAll((els) => els.map((el) => el.getAttribute("label")));
      assert.deepEqual(groups, [
        "Users",
        "Groups",
        "Roles",
        "Directories",
        "Imports",
        "Synchronizations",
        "API tokens",
      ]);
      assert.deepEqual(await page.locator('#field-action optgroup[label="Imports"] option').allInnerTexts(), [
        "Import finished",
        "Import failed",
        "Import cancelled",
      ]);
      assert.equal(await page.locator("#field-action option", { hasText: /\w\.\w/ }).count(), 0);

      await tabTo(page, "Action");
      // Typing picks the option by its name, as in any select.
      await page.keyboard.type("Import");
      assert.equal(await page.locator("#field-action").inputValue(), "import.succeeded");
      if (javaScript) {
        // The list follows the choice at once, and the select keeps focus.
        await page.waitForURL(/action=import\.succeeded/);
      } else {
        await tabTo(page, "Filter");
        await page.keyboard.press("Enter");
        await page.waitForURL(/action=import\.succeeded/);
      }
      await page.locator("#audit-entries tbody tr").first().filter({ hasText: "Import finished" }).waitFor();
      assert.deepEqual(await column(page, 1), ["2026-02-10 09:30 UTC"]);
      assert.deepEqual(await column(page, 2), ["robot"]);
      assert.deepEqual(await column(page, 3), ["Import finished"]);
      assert.deepEqual(await column(page, 4), ["Import #7 (import)"]);
      assert.equal(await page.getByRole("link", { name: "Import #7" }).getAttribute("href"), "/imports/7");
      assert.equal(await page.locator("nav.pagination").count(), 0, "one page: no paging");
      if (javaScript) assert.equal(await page.evaluate(() => document.activeElement?.id), "field-action");
      await assertNoAxeViolations(page);

      await tabTo(page, /^Export as CSV/);
      assert.equal(
        await page.locator("#audit-export").getAttribute("href"),
        `${PATH}.csv?action=import.succeeded`,
      );
      const [download] = await Promise.all([page.waitForEvent("download"), page.keyboard.press("Enter")]);
      assert.match(download.suggestedFilename(), /^audit-log-\d{4}-\d\d-\d\d\.csv$/);
      const csv = await readFile(await download.path(), "utf8");
      assert.deepEqual(csv.split("\r\n"), [
        "\uFEFFWhen (UTC),Who,What,Action,Target type,Target id,Target,Details",
        "2026-02-10T09:30:00.000Z,robot,Import finished,import.succeeded,import,7,Import #7,",
        "",
      ]);
      await page.context().close();
    });
  }
});

describe("the From and To dates by keyboard", () => {
  for (const { javaScript, label } of modes) {
    test(`pick whole UTC days, and an end before the start is said beside To (${label})`, async () => {
      const page = await openAuditLog(javaScript);
      // A date field takes the digits of its month, day and year, moving on by itself.
      await tabTo(page, "From");
      await page.keyboard.type("02102026");
      await tabTo(page, "To");
      await page.keyboard.type("02112026");
      await tabTo(page, "Filter");
      await page.keyboard.press("Enter");
      await page.waitForURL(/from=2026-02-10&to=2026-02-11/);
      await page.locator("#audit-entries tbody tr").nth(1).waitFor();
      assert.deepEqual(await column(page, 3), ["Directory connection tested", "Import finished"]);
      assert.deepEqual(await column(page, 1), ["2026-02-11 23:59 UTC", "2026-02-10 09:30 UTC"]);
      assert.equal(
        await page.locator("#audit-export").getAttribute("href"),
        `${PATH}.csv?from=2026-02-10&to=2026-02-11`,
      );

      // An end before the start: the message is beside To, and the summary above takes focus.
      await page.goto(`${site.url}${PATH}?from=2026-02-10&to=2026-02-11`);
      await tabTo(page, "To");
      await page.keyboard.type("02092026");
      await tabTo(page, "Filter");
      await page.keyboard.press("Enter");
      await page.locator(".error-summary:focus").waitFor({ timeout: 5000 });
      const message = "The end date must be on or after the start date.";
      assert.equal(
        (await page.locator(".error-summary").innerText()).replace(/\s+/g, " ").trim(),
        `There is a problem ${message}`,
      );
      const toField = page.locator(".field", { has: page.locator("#field-to") });
      assert.equal(textOf(await toField.locator(".error").innerText()), `Error: ${message}`);
      assert.equal(await page.locator("#field-to").getAttribute("aria-invalid"), "true");
      assert.equal(
        await page.locator("#field-to").getAttribute("aria-describedby"),
        "field-to-hint field-to-error",
      );
      assert.equal(await page.locator("#field-from").getAttribute("aria-invalid"), null);
      assert.equal(await page.locator("#field-to").inputValue(), "2026-02-09", "what was typed is kept");
      await assertNoAxeViolations(page);

      // Mended, the filter applies again and the message goes.
      await tabTo(page, "To");
      await page.keyboard.type("02122026");
      await tabTo(page, "Filter");
      await page.keyboard.press("Enter");
      await page.waitForURL(/from=2026-02-10&to=2026-02-12/);
      await page.locator("#audit-entries tbody tr").nth(2).waitFor();
      assert.deepEqual(await column(page, 3), [
        "Synchronization held removals",
        "Directory connection tested",
        "Import finished",
      ]);
      assert.equal(await page.locator(".error-summary").count(), 0);
      assert.equal(await page.locator("#field-to").getAttribute("aria-invalid"), null);
      await page.context().close();
    });

    test(`a date that isn't one, from an edited address, is said beside From (${label})`, async () => {
      const page = await openAuditLog(javaScript);
      await page.goto(`${site.url}${PATH}?from=2026-02-30&action=import.succeeded`);
      await page.locator(".error-summary:focus").waitFor({ timeout: 5000 });
      const message = "Enter the start date as YYYY-MM-DD, for example 2026-01-31.";
      const fromField = page.locator(".field", { has: page.locator("#field-from") });
      assert.equal(textOf(await fromField.locator(".error").innerText()), `Error: ${message}`);
      assert.equal(await page.locator("#field-from").getAttribute("aria-invalid"), "true");
      // The rest of the filter still applies.
      assert.deepEqual(await column(page, 3), ["Import finished"]);
      await assertNoAxeViolations(page);

      await tabTo(page, "From");
      await page.keyboard.type("02102026");
      await tabTo(page, "Filter");
      await page.keyboard.press("Enter");
      await page.waitForURL(/from=2026-02-10/);
      await page.locator(".error-summary").waitFor({ state: "detached" });
      assert.equal(await page.locator("#field-from").getAttribute("aria-invalid"), null);
      assert.deepEqual(await column(page, 3), ["Import finished"]);
      await page.context().close();
    });
  }
});
