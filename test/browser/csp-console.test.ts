/**
 * The browser console stays clean of Content-Security-Policy violations (style-src 'self',
 * script-src 'self') on every page of the console, with JavaScript on (htmx swapping, polling,
 * boosted navigation and history) and off.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import {
  type BrowserSite,
  newContext,
  openBrowserSite,
  PASSWORD,
  signInByKeyboard,
} from "../helpers/browser.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import { closeImportTestBed, type ImportTestBed, openImportTestBed } from "../web/import-support.ts";

let bed: ImportTestBed;
let browser: Browser;
let site: BrowserSite;
const skip = skipWithoutSlapd;

before(async () => {
  if (skip) return;
  bed = await openImportTestBed({
    bigGroupSize: 60,
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

/** Every console message of the context that reports a blocked resource, style or script. */
function watchViolations(context: BrowserContext): string[] {
  const violations: string[] = [];
  context.on("console", (message) => {
    if (/Content Security Policy|Refused to (apply|load|execute)/i.test(message.text()))
      violations.push(`${message.page()?.url() ?? "?"}: ${message.text()}`);
  });
  return violations;
}

/** The pages a signed-in administrator reaches by links from Home (the crawl stays on GET pages). */
async function visitEveryLinkedPage(page: Page, limit = 60): Promise<string[]> {
  const seen = new Set<string>();
  const queue = ["/"];
  while (queue.length > 0 && seen.size < limit) {
    const path = queue.shift() as string;
    if (seen.has(path)) continue;
    seen.add(path);
    await page.goto(site.url + path);
    // Pages only: not downloads (CSV exports), the JSON API or static files.
    const links = await page
      .locator("a[href^='/']:not([download])")
      .evaluateAll((anchors) => anchors.map((a) => a.getAttribute("href") ?? ""));
    for (const link of links)
      if (!seen.has(link) && !/^\/(static|vendor|api)\/|\.csv(\?|$)/.test(link)) queue.push(link);
  }
  return [...seen];
}

const modes = [true, false].map((javaScript) => ({
  javaScript,
  label: `JavaScript ${javaScript ? "on" : "off"}`,
}));

describe("no Content-Security-Policy violation in the browser console", { skip }, () => {
  for (const { javaScript, label } of modes) {
    test(`on every page linked from Home, and through an import from search to report (${label})`, async () => {
      const context = await newContext(browser, javaScript);
      const violations = watchViolations(context);
      const page = await context.newPage();
      await signInByKeyboard(page, site.url, "/");
      await page.waitForURL(`${site.url}/`);
      const visited = await visitEveryLinkedPage(page);
      assert.ok(visited.length >= 25, `visited ${visited.length} pages: ${visited.join(" ")}`);

      // The import flow: a search answered in place, a tick, the next page, an import polled to its end.
      await page.goto(`${site.url}/users`);
      await page.getByRole("link", { name: "Import users & groups" }).click();
      await page.getByLabel("Username, group name or LDAP filter").fill("*");
      await page.keyboard.press("Enter");
      await page.locator("#import-results-title:focus").waitFor({ timeout: 10_000 });
      await page.locator('input[name="pick"]').first().check();
      await page.getByRole("button", { name: "Next page" }).click();
      await page.locator("#import-results-title:focus").waitFor({ timeout: 10_000 });
      await page.getByRole("button", { name: /^Select all [\d,]+ matches$/ }).click();
      await page.locator("#selection-status:focus").waitFor({ timeout: 10_000 });
      await page.getByRole("button", { name: /^Import all/ }).click();
      await page.getByText(/^Finished: /).waitFor({ timeout: 20_000 });
      await page.locator("#import-report table").waitFor();
      // Back and Forward, restored from htmx's history or reloaded.
      await page.goBack();
      await page.waitForLoadState("load");
      await page.goForward();
      await page.waitForLoadState("load");

      if (javaScript) {
        // htmx was told not to add its indicator styles (public/app.css has them): nothing adopted.
        const injected = await page.evaluate(() => ({
          config: (window as unknown as { htmx: { config: { includeIndicatorCSS: boolean } } }).htmx.config
            .includeIndicatorCSS,
          adopted: document.adoptedStyleSheets.length,
          styled: document.querySelectorAll("[style]").length,
        }));
        assert.deepEqual(injected, { config: false, adopted: 0, styled: 0 });
      }
      assert.deepEqual(violations, []);
      if (javaScript) {
        // The watcher does see one: an inline style, as htmx's indicator styles or a style attribute would be.
        await page.evaluate(() => document.body.setAttribute("style", "color: red"));
        await page.waitForTimeout(200);
        assert.match(violations.join("\n"), /Applying inline style violates .*style-src 'self'/);
      }
      await context.close();
    });
  }
});
