import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
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
import { skipWithoutSlapd } from "../ldap/support.ts";
import { closeImportTestBed, type ImportTestBed, openImportTestBed } from "../web/import-support.ts";

let bed: ImportTestBed;
let browser: Browser;
let site: BrowserSite;

const skip = skipWithoutSlapd;

before(async () => {
  if (skip) return;
  // A worker that polls and that the app wakes, as in production.
  bed = await openImportTestBed({
    bigGroupSize: 120,
    adminPassword: PASSWORD,
    worker: { pollMs: 200, start: true },
  });
  site = await openBrowserSite(bed.t.app);
  ({ browser } = site);
});
after(async () => {
  await site?.close();
  await closeImportTestBed(bed);
});

const signIn = (page: Page, returnTo: string) => signInByKeyboard(page, site.url, returnTo);

/** Tabs to the search box, types, and presses Enter; waits for the focused results heading. */
async function searchFor(page: Page, text: string, heading: RegExp): Promise<void> {
  await tabTo(page, "Username, group name or LDAP filter");
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
  await page.locator("#import-results-title:focus").waitFor({ timeout: 10_000 });
  assert.match(await focusedLabel(page), heading);
}

const modes = [true, false].map((javaScript) => ({
  javaScript,
  label: `JavaScript ${javaScript ? "on" : "off"}`,
}));

describe("importing by keyboard", { skip }, () => {
  for (const { javaScript, label } of modes) {
    test(`search, tick two users, import, and watch the run finish (${label})`, async () => {
      const [first, second] = javaScript ? ["alpha", "bravo"] : ["charlie", "sobrien"];
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/users");
      await page.getByRole("heading", { name: "Users and groups", level: 1 }).waitFor();
      await tabTo(page, "Import users & groups");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Import users & groups", level: 1 }).waitFor();
      await assertNoAxeViolations(page);

      await searchFor(page, javaScript ? "cycle" : `(|(uid=${first})(uid=${second}))`, /^\d+ match/);
      const url = new URL(page.url());
      assert.equal(url.pathname, "/imports/new");
      assert.ok(url.searchParams.get("q"), "the query is in the address, for bookmarks and Back");
      await assertNoAxeViolations(page);

      await tabTo(page, `Select user ${first}`);
      await page.keyboard.press("Space");
      await tabTo(page, `Select user ${second}`);
      await page.keyboard.press("Space");
      // With JavaScript the count follows the ticks at once; without, the server counts on the next page.
      assert.equal(
        (await page.locator("#selection-status").innerText()).trim(),
        javaScript ? "2 entries selected." : "Nothing selected yet.",
      );
      await tabTo(page, javaScript ? "Import 2 selected" : "Import selected");
      await page.keyboard.press("Enter");

      await page.getByRole("heading", { name: /^Import #\d+ from Example LDAP$/ }).waitFor();
      assert.match(new URL(page.url()).pathname, /^\/imports\/\d+$/);
      await page.getByText(/^Finished: 2 of 2 entries processed/).waitFor({ timeout: 15_000 });
      assert.equal(await page.locator("#count-created").innerText(), "2");
      // The page says the run ended, and when; no longer that it has started.
      await page.locator("#import-facts dt", { hasText: "Ended" }).waitFor();
      await page.locator("#import-duration").waitFor();
      // Two entries take well under a second: said so, not "Took 0 s".
      assert.match(await page.locator("#import-duration").innerText(), /^Took (under a second|\d+ s)/);
      assert.doesNotMatch(await page.locator("#import-duration").innerText(), /Took 0 s/);
      assert.equal(await page.getByText(/The import has started/).count(), 0);
      await page.getByRole("table").filter({ hasText: first }).waitFor();
      await assertNoAxeViolations(page);
      await context.close();
    });
  }

  for (const { javaScript, label } of modes) {
    test(`select all matches past the first page, then import them all (${label})`, async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/imports/new");
      await page.getByRole("heading", { name: "Import users & groups", level: 1 }).waitFor();
      await searchFor(page, "*", /^1\d\d matches$/);
      await tabTo(page, "Next page →", 250);
      await page.keyboard.press("Enter");
      await page.locator("#import-results-title:focus").waitFor();
      assert.equal(new URL(page.url()).searchParams.get("page"), "2");
      await tabTo(page, /^Select all [\d,]+ matches$/);
      await page.keyboard.press("Enter");
      await page.locator("#selection-status:focus").waitFor();
      assert.match(await focusedLabel(page), /All [\d,]+ matches of “\*” are selected/);
      await assertNoAxeViolations(page);
      await tabTo(page, /^Import all [\d,]+ matches$/, 250);
      await page.keyboard.press("Enter");
      await page.getByText(/^Finished: /).waitFor({ timeout: 20_000 });
      assert.match(await page.locator("#import-progress").innerText(), /Failed\s*0/);
      await assertNoAxeViolations(page);
      await context.close();
    });
  }

  for (const { javaScript, label } of modes) {
    test(`the selection count says what is ticked, on this page and others (${label})`, async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/imports/new");
      await page.getByRole("heading", { name: "Import users & groups", level: 1 }).waitFor();
      await searchFor(page, "*", /^1\d\d matches$/);
      const status = page.locator("#selection-status");
      assert.equal(await status.getAttribute("aria-live"), "polite");
      const rows = page.locator('input[name="pick"]');
      const names = await rows.evaluateAll((inputs) =>
        inputs.slice(0, 3).map((i) => document.querySelector(`label[for="${i.id}"]`)?.textContent ?? ""),
      );
      await tabTo(page, names[0] ?? "");
      await page.keyboard.press("Space");
      await tabTo(page, names[1] ?? "");
      await page.keyboard.press("Space");
      if (javaScript) {
        assert.equal((await status.innerText()).trim(), "2 entries selected.");
        assert.equal((await page.locator("#import-submit").innerText()).trim(), "Import 2 selected");
      }
      await tabTo(page, "Next page →", 250);
      await page.keyboard.press("Enter");
      await page.locator("#import-results-title:focus").waitFor();
      assert.equal((await status.innerText()).trim(), "2 entries selected, 2 of them on other pages.");
      assert.equal((await page.locator("#import-submit").innerText()).trim(), "Import 2 selected");
      const next = await rows.evaluateAll((inputs) =>
        inputs.slice(0, 1).map((i) => document.querySelector(`label[for="${i.id}"]`)?.textContent ?? ""),
      );
      await tabTo(page, next[0] ?? "", 60);
      await page.keyboard.press("Space");
      if (javaScript) {
        assert.equal((await status.innerText()).trim(), "3 entries selected, 2 of them on other pages.");
        assert.equal((await page.locator("#import-submit").innerText()).trim(), "Import 3 selected");
        await page.keyboard.press("Space");
        assert.equal((await status.innerText()).trim(), "2 entries selected, 2 of them on other pages.");
      }
      await assertNoAxeViolations(page);
      await context.close();
    });
  }

  for (const { javaScript, label } of modes) {
    test(`a search that finds nothing offers no import and no roles to copy (${label})`, async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/imports/new");
      await page.getByRole("heading", { name: "Import users & groups", level: 1 }).waitFor();
      await searchFor(page, "no-such-person-anywhere", /^0 matches$/);
      await page.getByText("Nothing in the directory matches this search.").waitFor();
      assert.equal(await page.getByRole("button", { name: /^Import/ }).count(), 0);
      assert.equal(await page.getByText(/Copy roles/).count(), 0);
      await assertNoAxeViolations(page);
      await context.close();
    });
  }

  for (const { javaScript, label } of modes) {
    test(`a malformed filter brings the error summary, focused (${label})`, async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/imports/new");
      await page.getByRole("heading", { name: "Import users & groups", level: 1 }).waitFor();
      await tabTo(page, "Username, group name or LDAP filter");
      await page.keyboard.type("(uid=alpha");
      await page.keyboard.press("Enter");
      await page.locator(".error-summary:focus").waitFor({ timeout: 10_000 });
      assert.match(await page.locator(".error-summary").innerText(), /never closed at position 1/);
      await assertNoAxeViolations(page);
      await context.close();
    });
  }
});
