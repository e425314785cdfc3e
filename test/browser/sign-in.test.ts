import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser } from "playwright-core";
import { createTestApp, createUser, type TestApp } from "../helpers/app.ts";
import {
  assertNoAxeViolations,
  type BrowserSite,
  focusedLabel,
  newContext,
  openBrowserSite,
  PASSWORD,
  tabTo,
} from "../helpers/browser.ts";

let t: TestApp;
let browser: Browser;
let site: BrowserSite;

before(async () => {
  t = await createTestApp();
  await createUser(t.db, {
    username: "Đorđe",
    fullName: "Đorđe Petrović",
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

for (const javaScript of [true, false]) {
  describe(`sign-in by keyboard with JavaScript ${javaScript ? "on" : "off"}`, () => {
    test("a wrong password shows the error summary, focused, with no axe violations", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await page.goto(`${site.url}/login`);
      await assertNoAxeViolations(page);
      await page.locator("#field-username:focus").waitFor();
      assert.equal(await focusedLabel(page), "Username (required)", "the username field has focus");
      await page.keyboard.type("Đorđe");
      await page.keyboard.press("Tab");
      await page.keyboard.type("not the password");
      await page.keyboard.press("Enter");
      const summary = page.getByRole("alert").filter({ hasText: "There is a problem" });
      await summary.waitFor();
      assert.match(await summary.innerText(), /The username or password is not correct/);
      await page.locator(".error-summary:focus").waitFor({ timeout: 5000 });
      await assertNoAxeViolations(page);
      await context.close();
    });

    test("the right password signs in and lands on the start page; Sign out is reachable by Tab", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await page.goto(`${site.url}/users`);
      assert.match(page.url(), /\/login\?returnTo=%2Fusers$/);
      await page.locator("#field-username:focus").waitFor();
      await page.keyboard.type("đorđe");
      await page.keyboard.press("Tab");
      await page.keyboard.type("a long enough password");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Users", level: 1 }).waitFor();
      assert.equal(new URL(page.url()).pathname, "/users");
      await assertNoAxeViolations(page);
      await tabTo(page, "Sign out");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Sign in to Roster" }).waitFor();
      assert.equal(new URL(page.url()).pathname, "/login");
      await context.close();
    });
  });
}

test("the setup, 403 and 404 pages have no axe violations", async () => {
  const context = await newContext(browser, true);
  const page = await context.newPage();
  await page.goto(`${site.url}/no/such/page`);
  await page.getByRole("heading", { name: "Page not found" }).waitFor();
  await assertNoAxeViolations(page);
  await context.close();
});
