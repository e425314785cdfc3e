import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { directories } from "../../src/db/schema.ts";
import { bigGroupDirectory } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import {
  createDirectory,
  type DirectorySettings,
  loadDirectoryConnection,
} from "../../src/services/directories.ts";
import { createSecretBox } from "../../src/services/secrets.ts";
import { newFormValues, validateDirectoryForm } from "../../src/web/forms/directory-form.ts";
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
import { skipWithoutSlapd } from "../ldap/support.ts";

/** Settings as the form would produce them, for directories that only need to exist. */
function settingsFor(name: string): DirectorySettings {
  const values = {
    ...newFormValues(),
    name,
    urls: `ldap://${name.toLowerCase()}.example.test`,
    baseDn: "dc=example,dc=test",
    bindMode: "anonymous",
  };
  const checked = validateDirectoryForm({ values, bindPassword: "" }, { roleIds: new Set() });
  if (!checked.ok) throw new Error(JSON.stringify(checked.errors));
  return checked.settings;
}
/** Enough Tab presses to go round the whole directory form. */
const MANY = 120;

describe("Settings › Directories in a browser", {
  skip: skipWithoutSlapd,
}, () => {
  let t: TestApp;
  let browser: Browser;
  let site: BrowserSite;
  let ldap: SlapdServer;

  before(async () => {
    [t, ldap] = await Promise.all([
      createTestApp(),
      startSlapd({ ldif: bigGroupDirectory(7, { cn: "staff" }).ldif }),
    ]);
    await createUser(t.db, { username: "admin", password: PASSWORD, role: "server_admin" });
    site = await openBrowserSite(t.app);
    ({ browser } = site);
  });
  after(async () => {
    await site?.close();
    await Promise.all([ldap?.stop(), t?.close()]);
  });
  beforeEach(async () => {
    await t.db.delete(directories);
  });

  async function signIn(page: Page) {
    await signInByKeyboard(page, site.url, "/settings");
    await page.getByRole("heading", { name: "Settings", level: 1 }).waitFor();
  }

  async function typeInto(page: Page, label: string | RegExp, text: string) {
    await tabTo(page, label, MANY);
    await page.keyboard.type(text);
  }

  for (const javaScript of [true, false]) {
    /** Pages that come out the same with JavaScript on and off are scanned once, in the run with it on. */
    const scanOnce = (page: Page) => (javaScript ? assertNoAxeViolations(page) : Promise.resolve());

    test(`adds a directory, tests it and saves it by keyboard, JavaScript ${javaScript ? "on" : "off"}`, async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page);

      await tabTo(page, "Directories");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Directories", level: 1 }).waitFor();
      await scanOnce(page);
      await tabTo(page, "Add a directory");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Add a directory", level: 1 }).waitFor();
      await scanOnce(page);

      await typeInto(page, "Name (required)", "Lab OpenLDAP");
      await typeInto(page, "Server URLs (required)", ldap.url);
      await typeInto(page, "Bind DN", ldap.serviceDn);
      await page.keyboard.press("Tab");
      assert.equal(await focusedLabel(page), "Password");
      await page.keyboard.type(ldap.servicePassword);
      await typeInto(page, "Base DN (required)", ldap.baseDn);

      await tabTo(page, "Test connection", MANY);
      await page.keyboard.press("Enter");
      const result = page.getByRole("heading", { name: "The connection works" });
      await result.waitFor();
      await page.locator("#connection-test-title:focus").waitFor({ timeout: 5000 });
      const region = await page.locator("#connection-test").innerText();
      assert.match(region, /Found 7 users and 1 group on ldap:\/\/127\.0\.0\.1:\d+\./);
      assert.match(region, /Count users — done in \d+ ms/);
      assert.equal(
        await page.locator("#field-name").inputValue(),
        "Lab OpenLDAP",
        "the form keeps its values",
      );
      await assertNoAxeViolations(page);

      const password = page.locator("#field-bindPassword");
      if (javaScript) {
        assert.equal(
          await password.inputValue(),
          ldap.servicePassword,
          "htmx swapped only the result region",
        );
      } else {
        assert.equal(await password.inputValue(), "", "a password is never sent back");
        // …but kept for this form: "Add directory" with the field blank uses the one tested.
        assert.match(await page.locator("#field-bindPassword-hint").innerText(), /^Kept — /);
      }

      await tabTo(page, "Add directory", MANY);
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Directories", level: 1 }).waitFor();
      assert.equal(new URL(page.url()).pathname, "/settings/directories");
      await page.getByText("Added the directory “Lab OpenLDAP”").waitFor();
      const row = page.getByRole("row", { name: /Lab OpenLDAP/ });
      assert.match(await row.innerText(), /Enabled/);
      await assertNoAxeViolations(page);

      const [saved] = await t.db.select().from(directories);
      assert.ok(saved);
      const loaded = await loadDirectoryConnection(t.db, createSecretBox(t.config.encryptionKey), saved.id);
      assert.equal(loaded?.connection.bindPassword, ldap.servicePassword);
      assert.deepEqual(loaded?.connection.urls, [ldap.url]);

      await tabTo(page, "Test connection Lab OpenLDAP", MANY);
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "The connection to “Lab OpenLDAP” works" }).waitFor();
      await page.getByRole("cell", { name: /Works: 7 users, 1 group/ }).waitFor();
      await scanOnce(page);
      await context.close();
    });

    test(`applies a preset and shows validation errors by keyboard, JavaScript ${javaScript ? "on" : "off"}`, async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page);
      await page.goto(`${site.url}/settings/directories/new`);
      await typeInto(page, "Name (required)", "Corp AD");
      await typeInto(page, "Bind DN", "cn=svc,dc=corp,dc=test");
      await page.keyboard.press("Tab");
      await page.keyboard.type("typed-secret");

      await page.locator("#field-preset").focus();
      await page.keyboard.press("ArrowDown");
      assert.equal(await page.locator("#field-preset").inputValue(), "active_directory");
      await tabTo(page, "Apply preset");
      await page.keyboard.press("Enter");
      await page
        .getByText("Filled in Users and Groups with the usual settings for Active Directory")
        .waitFor();
      await page.locator(".directory-notice:focus").waitFor({ timeout: 5000 });
      assert.equal(await page.locator("#field-attrUsername").inputValue(), "sAMAccountName");
      assert.equal(await page.locator("#field-name").inputValue(), "Corp AD");
      assert.equal(
        await page.getByLabel("Bind DN or user name", { exact: true }).inputValue(),
        "cn=svc,dc=corp,dc=test",
        "the bind name's label follows the server type",
      );
      assert.equal(await page.locator("#field-bindPassword").inputValue(), javaScript ? "typed-secret" : "");
      await scanOnce(page);

      await tabTo(page, "Add directory", MANY);
      await page.keyboard.press("Enter");
      const summary = page.getByRole("alert").filter({ hasText: "There is a problem" });
      await summary.waitFor();
      await page.locator(".error-summary:focus").waitFor({ timeout: 5000 });
      assert.match(await summary.innerText(), /Enter at least one server URL/);
      assert.match(await summary.innerText(), /Enter the base DN/);
      assert.equal(await page.locator("#field-name").inputValue(), "Corp AD");
      await scanOnce(page);
      await tabTo(page, "Enter at least one server URL, like ldaps://ldap.example.com:636.");
      await page.keyboard.press("Enter");
      await page.locator("#field-urls:focus").waitFor({ timeout: 5000 });
      await context.close();
    });
  }

  for (const javaScript of [true, false]) {
    const scanOnce = (page: Page) => (javaScript ? assertNoAxeViolations(page) : Promise.resolve());

    test(`reorders and disables directories by keyboard, JavaScript ${javaScript ? "on" : "off"}`, async () => {
      const box = createSecretBox(t.config.encryptionKey);
      for (const name of ["First", "Second"]) {
        const outcome = await createDirectory(t.db, box, { id: null, name: "test" }, settingsFor(name));
        assert.ok(outcome.ok);
      }
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page);
      await page.goto(`${site.url}/settings/directories`);
      await tabTo(page, "Move down First", MANY);
      await page.keyboard.press("Enter");
      await page.getByText("Moved “First” down: it is now number 2 in the sign-in order.").waitFor();
      const names = await page.locator("#directory-list tbody th").allInnerTexts();
      assert.deepEqual(names, ["Second", "First"]);
      if (javaScript) {
        assert.equal(await focusedLabel(page), "Move up First", "focus stays with the moved directory");
      }
      await tabTo(page, "Disable Second", MANY);
      await page.keyboard.press("Enter");
      await page.getByText("Disabled “Second”").waitFor();
      assert.match(await page.getByRole("row", { name: /Second/ }).innerText(), /Disabled/);
      if (javaScript) assert.equal(await focusedLabel(page), "Enable Second");
      await scanOnce(page);
      await context.close();
    });
  }

  test("turning verification off warns, and choosing anonymous hides the account fields, without JavaScript", async () => {
    const context = await newContext(browser, false);
    const page = await context.newPage();
    await signIn(page);
    await page.goto(`${site.url}/settings/directories/new`);
    const warning = page.locator("#verify-warning");
    assert.equal(await warning.isVisible(), false);
    await tabTo(page, "Verify the server's certificate", MANY);
    await page.keyboard.press("Space");
    assert.equal(await warning.isVisible(), true);
    await page.keyboard.press("Space");
    assert.equal(await warning.isVisible(), false);

    await tabTo(page, "A service account (bind DN and password)", MANY);
    assert.equal(await page.locator("#field-bindDn").isVisible(), true);
    await page.keyboard.press("ArrowDown");
    assert.equal(await focusedLabel(page), "Anonymous");
    assert.equal(
      await page.locator("#field-bindDn").isVisible(),
      false,
      "no bind DN to fill in when anonymous",
    );
    await context.close();
  });
});
