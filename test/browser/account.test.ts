import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import type { Browser, Page } from "playwright-core";
import supertest from "supertest";
import { users } from "../../src/db/schema.ts";
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

let t: TestApp;
let browser: Browser;
let site: BrowserSite;
const SHOTS = process.env.SCREENSHOT_DIR;

before(async () => {
  t = await createTestApp();
  await createUser(t.db, {
    username: "admin",
    fullName: "Ada Admin",
    password: PASSWORD,
    role: "server_admin",
  });
  await createUser(t.db, { username: "reader", fullName: "Rea Der", password: PASSWORD, role: "viewer" });
  site = await openBrowserSite(t.app);
  ({ browser } = site);
  if (SHOTS) await mkdir(SHOTS, { recursive: true });
});
after(async () => {
  await site.close();
  await t.close();
});

async function screenshot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: `${SHOTS}/${name}-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

for (const javaScript of [true, false]) {
  const mode = `JavaScript ${javaScript ? "on" : "off"}`;

  describe(`My account with ${mode}`, () => {
    test("an administrator reaches My account, creates a token, sees it once, and revokes it, by keyboard", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signInByKeyboard(page, site.url, "/");
      await page.waitForURL(`${site.url}/`);
      await tabTo(page, "My account");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/account`);
      assert.equal(await page.locator("h1").innerText(), "My account");
      assert.match(await page.locator("#roles").innerText(), /Server Administrator\s+Global\s+Directly/);
      await assertNoAxeViolations(page);

      // A blank name: the error beside the field, in a summary that takes focus.
      await tabTo(page, "Create token");
      await page.keyboard.press("Enter");
      await page.locator(".error-summary").waitFor();
      assert.match(await page.locator(".error-summary").innerText(), /Name the token/);
      assert.equal(await page.evaluate(() => document.activeElement?.className), "error-summary");
      await assertNoAxeViolations(page);

      const name = `deploy bot ${mode}`;
      await tabTo(page, "Name");
      await page.keyboard.type(name);
      await tabTo(page, "Create token");
      await page.keyboard.press("Enter");
      await page.locator("#new-token").waitFor();
      const token = await page.locator("#new-token-value").inputValue();
      assert.match(token, /^roster_[\w-]{43}$/);
      assert.match(
        await page.locator("#new-token").innerText(),
        new RegExp(`The token “${name}” was created`),
      );
      if (javaScript) assert.equal(await page.evaluate(() => document.activeElement?.id), "new-token");
      await assertNoAxeViolations(page);
      await screenshot(page, `account-new-token-js-${javaScript ? "on" : "off"}`);

      const me = await supertest(t.app).get("/api/v1/me").set("Authorization", `Bearer ${token}`).expect(200);
      assert.equal(me.body.username, "admin");

      // Shown once: the page again lists it by name and last characters only.
      await page.goto(`${site.url}/account`);
      assert.ok(!(await page.content()).includes(token), "the token is not shown again");
      const row = page.locator("table.tokens tr", { hasText: name });
      assert.match(await row.innerText(), new RegExp(`…${token.slice(-4)}`));
      assert.match(await row.innerText(), /Active/);
      await tabTo(page, `Revoke ${name}`, 60);
      assert.equal(await focusedLabel(page), `Revoke ${name}`);
      await page.keyboard.press("Enter");
      await page.locator(".flash-success").waitFor();
      assert.match(await page.locator(".flash-success").innerText(), /was revoked/);
      assert.match(await page.locator("table.tokens tr", { hasText: name }).innerText(), /Revoked/);
      await supertest(t.app).get("/api/v1/me").set("Authorization", `Bearer ${token}`).expect(401);
      await assertNoAxeViolations(page);
      await screenshot(page, `account-js-${javaScript ? "on" : "off"}`);
      await context.close();
    });

    test("a user without console permissions finds My account from Home: profile and roles, no tokens", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signInByKeyboard(page, site.url, "/", "reader");
      await page.waitForURL(`${site.url}/`);
      assert.match(await page.locator("main").innerText(), /no console permissions/);
      await tabTo(page, "My account");
      await page.keyboard.press("Tab");
      await tabTo(page, "My account");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/account`);
      assert.match(await page.locator("#roles").innerText(), /Viewer\s+Global\s+Directly/);
      assert.equal(await page.locator("#api-tokens").count(), 0);
      await assertNoAxeViolations(page);

      // An internal user keeps their own details: a bad email is refused beside the field.
      await tabTo(page, "Email");
      await page.keyboard.type("not-an-email");
      await page.keyboard.press("Enter");
      await page.locator("#field-email-error").waitFor();
      assert.match(await page.locator(".error-summary").innerText(), /Enter an email address/);
      await assertNoAxeViolations(page);
      await tabTo(page, "Email");
      await page.keyboard.press("ControlOrMeta+a");
      await page.keyboard.type(`rea-${javaScript ? "on" : "off"}@example.test`);
      await page.keyboard.press("Enter");
      await page.locator(".flash-success").waitFor();
      assert.match(await page.locator(".flash-success").innerText(), /Your details were saved/);
      assert.equal(await page.locator("#field-fullName").inputValue(), "Rea Der");
      const [reader] = await t.db.select().from(users).where(eq(users.username, "reader"));
      assert.equal(reader?.email, `rea-${javaScript ? "on" : "off"}@example.test`);
      if (!javaScript) await screenshot(page, "account-reader");
      await context.close();
    });
  });
}

describe("API documentation page", () => {
  test("renders the OpenAPI description with no CSP violation", async () => {
    const context = await newContext(browser, true);
    const page = await context.newPage();
    const violations: string[] = [];
    page.on("console", (message) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
    });
    await signInByKeyboard(page, site.url, "/api/docs");
    await page.waitForURL(`${site.url}/api/docs`);
    await page.locator(".opblock-tag", { hasText: "Imports" }).first().waitFor({ timeout: 15_000 });
    assert.deepEqual(violations, []);
    await screenshot(page, "api-docs");
    await context.close();
  });
});
