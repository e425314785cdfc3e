import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import type { Browser, Page } from "playwright-core";
import { roleAssignments } from "../../src/db/schema.ts";
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
import { insertBareUsers, makeDirectory, makeExternalUser, roleId, userNamed } from "../helpers/console.ts";

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
  await createUser(t.db, { username: "Émile", fullName: "Émile Zola" });
  const template = await createUser(t.db, { username: "template", fullName: "Role Template" });
  await t.db.insert(roleAssignments).values([
    { roleId: await roleId(t.db, "viewer"), userId: template.id, scope: "" },
    { roleId: await roleId(t.db, "resource_contributor"), userId: template.id, scope: "project:42" },
  ]);
  await insertBareUsers(
    t.db,
    Array.from({ length: 60 }, (_, i) => `browse-${String(i).padStart(2, "0")}`),
  );
  site = await openBrowserSite(t.app);
  ({ browser } = site);
});
after(async () => {
  await site.close();
  await t.close();
});

async function signIn(page: Page, path: string): Promise<void> {
  await signInByKeyboard(page, site.url, path);
  await page.waitForURL((url) => url.pathname === path.split("?")[0]);
}

function rowNames(page: Page): Promise<string[]> {
  return page.locator("#user-rows tr td:nth-child(2) a").allInnerTexts();
}

for (const javaScript of [true, false]) {
  const mode = `JavaScript ${javaScript ? "on" : "off"}`;

  describe(`the list, by keyboard, with ${mode}`, () => {
    test("searching, filtering and paging keep the state in the URL; no axe violations", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/users");
      await assertNoAxeViolations(page);
      await tabTo(page, "Search");
      assert.equal(await page.evaluate(() => document.activeElement?.id), "field-q");
      await page.keyboard.type("browse-");
      if (javaScript) {
        // Results follow the typing, in place: the search field keeps focus.
        await page.waitForURL(/q=browse-/);
        await page.locator("#user-rows tr").nth(49).waitFor();
        assert.equal(await page.evaluate(() => document.activeElement?.id), "field-q");
      } else {
        await page.keyboard.press("Enter");
        await page.waitForURL(/q=browse-/);
      }
      assert.equal((await rowNames(page))[0], "browse-00");
      assert.match(await page.locator("#list-status").innerText(), /60 users and groups matching “browse-”/);
      await assertNoAxeViolations(page);

      // 50 rows of a checkbox and a link come first: a long way by Tab, but a plain one.
      await tabTo(page, /^Next page/, 200);
      await page.keyboard.press("Enter");
      await page.waitForURL(/after=/);
      await page.getByRole("link", { name: "browse-50" }).waitFor();
      assert.deepEqual((await rowNames(page)).slice(0, 2), ["browse-50", "browse-51"]);
      if (javaScript) {
        // The last page has no "Next page": focus goes to the results' status, not to the page's top.
        await page.locator("#list-status:focus").waitFor({ timeout: 5000 });
        await page.keyboard.press("Tab");
        assert.match(await focusedLabel(page), /^Export as CSV/, "the next Tab continues from the results");
      }

      await page.goto(`${site.url}/users?q=${encodeURIComponent("ÉMILE")}`);
      assert.deepEqual(await rowNames(page), ["Émile"]);
      await tabTo(page, /^Internal groups/);
      await page.keyboard.press("Enter");
      await page.waitForURL(/filter=internal-groups/);
      await page.locator("#list-status").filter({ hasText: "No internal groups match" }).waitFor();
      assert.match(page.url(), /q=%C3%89MILE|q=ÉMILE/i);
      await assertNoAxeViolations(page);
      await context.close();
    });
  });

  describe(`user details, by keyboard, with ${mode}`, () => {
    test("opens a user from the list, edits it, gives a role, and sees the 422 summary focused", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/users");
      await page.goto(`${site.url}/users?q=${encodeURIComponent("émile")}`);
      await tabTo(page, "Émile");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { level: 1, name: /Émile/ }).waitFor();
      await assertNoAxeViolations(page);

      await tabTo(page, "Email");
      await page.keyboard.type("not-an-email");
      await page.keyboard.press("Enter");
      const summary = page.getByRole("alert").filter({ hasText: "There is a problem" });
      await summary.waitFor();
      await page.locator(".error-summary:focus").waitFor({ timeout: 5000 });
      await assertNoAxeViolations(page);

      await tabTo(page, "Email");
      await page.keyboard.press("ControlOrMeta+A");
      await page.keyboard.type(javaScript ? "emile@example.test" : "zola@example.test");
      await page.keyboard.press("Enter");
      await page.getByText("Émile's details were saved.").waitFor();
      const saved = await userNamed(t.db, "émile");
      assert.equal(saved?.email, javaScript ? "emile@example.test" : "zola@example.test");

      await tabTo(page, "Role");
      await page.keyboard.press("ArrowDown"); // from "Choose a role" to the first role
      assert.equal(await page.locator("#field-roleId option:checked").innerText(), "Resource Contributor");
      await tabTo(page, "Scope");
      await page.keyboard.type(javaScript ? "project:1" : "project:2");
      await page.keyboard.press("Enter");
      await page.getByText(/now has the role Resource Contributor for project:/).waitFor();
      await assertNoAxeViolations(page);
      await context.close();
    });
  });

  describe(`converting a user, by keyboard, with ${mode}`, () => {
    test("an external user becomes internal with the password typed", async () => {
      const directory = await makeDirectory(t.db, `Browser LDAP ${mode}`);
      const username = javaScript ? "convert-js" : "convert-nojs";
      const user = await makeExternalUser(t.db, {
        username,
        directoryId: directory.id,
        fullName: "To Convert",
      });
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, `/users/${user.id}`);
      await tabTo(page, "Convert to internal…");
      await page.keyboard.press("Enter");
      await page
        .getByRole("heading", { level: 1, name: `Convert ${username} to an internal user` })
        .waitFor();
      await assertNoAxeViolations(page);
      await tabTo(page, /^New password/);
      await page.keyboard.type("short");
      await page.keyboard.press("Enter");
      await page.locator(".error-summary:focus").waitFor({ timeout: 5000 });
      await assertNoAxeViolations(page);
      await tabTo(page, /^New password/);
      await page.keyboard.type(PASSWORD);
      await page.keyboard.press("Tab");
      await page.keyboard.type(PASSWORD);
      await page.keyboard.press("Enter");
      await page.getByText(`${username} is now an internal user`).waitFor();
      assert.equal(new URL(page.url()).pathname, `/users/${user.id}`);
      assert.equal((await userNamed(t.db, username))?.kind, "internal");
      await assertNoAxeViolations(page);
      await context.close();
    });
  });

  describe(`copying roles, by keyboard, with ${mode}`, () => {
    test("selects users in the list, picks the source by searching, and copies", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/users?q=browse-0");
      await tabTo(page, "Select browse-01");
      await page.keyboard.press("Space");
      await tabTo(page, "Select browse-02");
      await page.keyboard.press("Space");
      // The bulk actions are above the table: back to them.
      for (let i = 0; i < 20 && (await focusedLabel(page)) !== "Copy roles…"; i++) {
        await page.keyboard.press("Shift+Tab");
      }
      assert.equal(await focusedLabel(page), "Copy roles…");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { level: 1, name: "Copy roles and assignments" }).waitFor();
      assert.match(await page.locator("main").innerText(), /Copying to 2 users: browse-01, browse-02/);
      await assertNoAxeViolations(page);

      await tabTo(page, "Search users and groups to copy from");
      await page.keyboard.type("template");
      if (!javaScript) await page.keyboard.press("Enter");
      await page.waitForURL(/q=template/);
      const radio = page.getByRole("radio", { name: /template/ });
      await radio.waitFor();
      assert.equal(await page.getByRole("radio").count(), 1);
      assert.match(await page.locator("#copy-sources").innerText(), /template.*\n?.*2 role assignments/);
      await tabTo(page, /^template/);
      await page.keyboard.press("Space");
      await tabTo(page, "Copy roles and assignments");
      await page.keyboard.press("Enter");
      await page.getByText(/Copied 2 role assignments from template to 2 users: \d added/).waitFor();
      assert.equal(new URL(page.url()).pathname, "/users");
      for (const name of ["browse-01", "browse-02"]) {
        const user = await userNamed(t.db, name);
        const rows = await t.db
          .select()
          .from(roleAssignments)
          .where(eq(roleAssignments.userId, user?.id ?? -1));
        assert.equal(rows.length, 2, name);
      }
      await assertNoAxeViolations(page);
      await context.close();
    });
  });

  describe(`sorting, page size, select all and export, by keyboard, with ${mode}`, () => {
    test("sorts by a column, ticks every row, shows 25 rows a page and links the export", async () => {
      const context = await newContext(browser, javaScript);
      const page = await context.newPage();
      await signIn(page, "/users?q=browse-");
      await tabTo(page, /^Last activity/, 60);
      await page.keyboard.press("Enter");
      await page.waitForURL(/sort=-activity/);
      await page.locator('th[aria-sort="descending"]', { hasText: "Last activity" }).waitFor();
      assert.match(await page.locator("caption").innerText(), /by last activity, newest first/);
      await assertNoAxeViolations(page);

      if (javaScript) {
        // Focus stayed on the sort link, in the header: the checkbox is a few stops back.
        for (let i = 0; i < 10 && (await focusedLabel(page)) !== "Select all users on this page"; i++) {
          await page.keyboard.press("Shift+Tab");
        }
        assert.equal(await focusedLabel(page), "Select all users on this page");
        await page.keyboard.press("Space");
      } else {
        await tabTo(page, /^All: select all users/, 60);
        await page.keyboard.press("Enter");
        await page.waitForURL(/select=all/);
      }
      const boxes = page.locator('#user-rows input[type="checkbox"]');
      assert.equal(await boxes.count(), 50);
      assert.equal(await page.locator('#user-rows input[type="checkbox"]:checked').count(), 50);

      await tabTo(page, "Rows per page", 250);
      if (javaScript) {
        await page.keyboard.press("ArrowUp");
      } else {
        await page.keyboard.press("ArrowUp");
        await tabTo(page, "Show");
        await page.keyboard.press("Enter");
      }
      await page.waitForURL(/size=25/);
      await page.locator("#user-rows tr").nth(24).waitFor();
      assert.equal(await page.locator("#user-rows tr").count(), 25);
      assert.match(await page.locator("nav.pagination").innerText(), /Page 1 of 3/);
      await assertNoAxeViolations(page);

      const exportHref = await page.locator("#export-csv").getAttribute("href");
      assert.equal(exportHref, "/users.csv?q=browse-&sort=-activity");
      const csv = await page.request.get(`${site.url}${exportHref}`);
      assert.match(csv.headers()["content-type"] ?? "", /^text\/csv/);
      assert.equal((await csv.text()).split("\r\n").length, 1 + 60 + 1);
      await context.close();
    });
  });
}

test("the group, role and audit pages have no axe violations", async () => {
  const context = await newContext(browser, true);
  const page = await context.newPage();
  await signIn(page, "/roles");
  await assertNoAxeViolations(page);
  for (const path of ["/roles/new", "/groups/new", "/settings/audit-log", "/users/new"]) {
    await page.goto(`${site.url}${path}`);
    await assertNoAxeViolations(page);
  }
  await page.goto(`${site.url}/roles/${await roleId(t.db, "viewer")}`);
  await assertNoAxeViolations(page);
  await context.close();
});
