/**
 * The copy-roles picker (issue 28, item 8), by keyboard, with JavaScript on and off: it searches
 * every user and group, says how many role assignments each holds, pages through the matches
 * without needing JavaScript, and copies the chosen one's assignments.
 */
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
import { insertBareUsers, makeGroup, roleId } from "../helpers/console.ts";

let t: TestApp;
let browser: Browser;
let site: BrowserSite;
let groupId = 0;
let holderId = 0;
/** Users roles are copied to, by test and mode. */
const targets = new Map<string, number>();

before(async () => {
  t = await createTestApp();
  await createUser(t.db, {
    username: "admin",
    fullName: "Ada Admin",
    password: PASSWORD,
    role: "server_admin",
  });
  // 49 users and groups match "pick": 45 without roles, one user with 2, the two users copied to in
  // the first test, and a group with 3. Names chosen to sort alike in any collation.
  await insertBareUsers(
    t.db,
    Array.from({ length: 45 }, (_, i) => `pick-${String(i).padStart(2, "0")}`),
  );
  holderId = (await createUser(t.db, { username: "pick-holder" })).id;
  for (const name of ["pick-target-off", "pick-target-on", "copy-dest-off", "copy-dest-on"]) {
    targets.set(name, (await createUser(t.db, { username: name })).id);
  }
  groupId = (await makeGroup(t.db, { name: "pick-zone-admins" })).id;
  await t.db.insert(roleAssignments).values([
    { roleId: await roleId(t.db, "viewer"), userId: holderId, scope: "" },
    { roleId: await roleId(t.db, "resource_contributor"), userId: holderId, scope: "project:42" },
    { roleId: await roleId(t.db, "viewer"), groupId, scope: "" },
    { roleId: await roleId(t.db, "resource_manager"), groupId, scope: "" },
    { roleId: await roleId(t.db, "resource_contributor"), groupId, scope: "project:7" },
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
  on: javaScript ? "on" : "off",
}));

/** Role assignments of a user or group, as `role id:scope`, sorted. */
async function assignmentsOf(subject: { userId: number } | { groupId: number }): Promise<string[]> {
  const rows = await t.db
    .select()
    .from(roleAssignments)
    .where(
      "userId" in subject
        ? eq(roleAssignments.userId, subject.userId)
        : eq(roleAssignments.groupId, subject.groupId),
    );
  return rows.map((r) => `${r.roleId}:${r.scope}`).sort();
}

/** Each candidate as read: name, kind, and its role count (or that it is one copied to). */
function candidates(page: Page): Promise<string[]> {
  return page
    .locator("#copy-sources .copy-source")
    .evaluateAll((els) => els.map((el) => (el as HTMLElement).innerText.replace(/\s+/g, " ").trim()));
}

async function pagination(page: Page): Promise<string> {
  return (await page.locator("#copy-sources nav.pagination").innerText()).replace(/\s+/g, " ").trim();
}

async function waitForPagination(page: Page, text: string): Promise<void> {
  await page.locator("#copy-sources nav.pagination").filter({ hasText: text }).waitFor();
  assert.equal(await pagination(page), text);
}

async function openUser(javaScript: boolean, id: number, username: string): Promise<Page> {
  const context = await newContext(browser, javaScript);
  const page = await context.newPage();
  await signInByKeyboard(page, site.url, `/users/${id}`);
  await page.waitForURL(`${site.url}/users/${id}`);
  await page.getByRole("heading", { level: 1, name: new RegExp(username) }).waitFor();
  return page;
}

describe("choosing whom to copy roles from, by keyboard", () => {
  for (const { javaScript, label, on } of modes) {
    test(`search every user and group, see their role counts, page, and copy a group's (${label})`, async () => {
      const username = `pick-target-${on}`;
      const targetId = targets.get(username) ?? -1;
      const page = await openUser(javaScript, targetId, username);
      await tabTo(page, "Copy roles from…");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { level: 1, name: "Copy roles and assignments" }).waitFor();
      assert.equal(page.url(), `${site.url}/role-copies/new?to=${targetId}`);
      assert.equal((await page.locator("#field-to").innerText()).trim(), `Copying to 1 user: ${username}.`);

      await tabTo(page, "Search users and groups to copy from");
      await page.keyboard.type("pick");
      if (javaScript) {
        // The matches follow the typing, in place; the search field keeps focus.
        await page.waitForURL(/q=pick/);
      } else {
        await page.keyboard.press("Enter");
        await page.waitForURL(/q=pick/);
      }
      const status = page.locator("#copy-sources-status");
      await status.filter({ hasText: "49 users and groups matching “pick”" }).waitFor();
      assert.equal(
        (await status.innerText()).trim(),
        "49 users and groups matching “pick”; the number of role assignments each holds itself is beside it.",
      );
      if (javaScript) assert.equal(await page.evaluate(() => document.activeElement?.id), "field-q");
      const first = await candidates(page);
      assert.equal(first.length, 20);
      assert.equal(first[0], "pick-00 (internal user) no role assignments");
      assert.equal(first[19], "pick-19 (internal user) no role assignments");
      await waitForPagination(page, "Page 1 of 3 Next page →");
      await assertNoAxeViolations(page);

      // One Tab stop for the radio group (nothing chosen yet), then the pages.
      await tabTo(page, /^Next page/);
      await page.keyboard.press("Enter");
      await waitForPagination(page, "« First page ← Previous page Page 2 of 3 Next page →");
      assert.match(page.url(), /[?&]after=[^&]+&page=2$/);
      assert.equal((await candidates(page))[0], "pick-20 (internal user) no role assignments");
      if (javaScript) assert.match(await focusedLabel(page), /^Next page/, "focus stays on the link pressed");

      await tabTo(page, /^Next page/);
      await page.keyboard.press("Enter");
      await waitForPagination(page, "« First page ← Previous page Page 3 of 3");
      assert.match(page.url(), /[?&]after=[^&]+&page=3$/);
      // The user copied to is listed but can't be chosen; the other target has what the first test gave it.
      const targetOn = javaScript ? "copying to this user" : "3 role assignments";
      const targetOff = javaScript ? "no role assignments" : "copying to this user";
      assert.deepEqual((await candidates(page)).slice(4), [
        "pick-44 (internal user) no role assignments",
        "pick-holder (internal user) 2 role assignments",
        `pick-target-off (internal user) ${targetOff}`,
        `pick-target-on (internal user) ${targetOn}`,
        "pick-zone-admins (internal group) 3 role assignments",
      ]);
      assert.equal(await page.locator(`#from-user-${targetId}`).isDisabled(), true);
      if (javaScript) {
        // The link pressed is gone: focus goes to what the page now says, not to the page's top.
        await page.locator("#copy-sources-status:focus").waitFor({ timeout: 5000 });
      }
      await assertNoAxeViolations(page);

      // Into the radio group, then down to the group (arrow keys skip the user copied to).
      await tabTo(page, /^pick-40/);
      for (let i = 0; i < 10 && !/^pick-zone-admins/.test(await focusedLabel(page)); i++) {
        await page.keyboard.press("ArrowDown");
      }
      assert.match(await focusedLabel(page), /^pick-zone-admins/);
      assert.equal(
        await page.locator('input[name="from"]:checked').getAttribute("value"),
        `group:${groupId}`,
      );
      await tabTo(page, "Copy roles and assignments");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/users/${targetId}`);
      await page
        .getByText("Copied 3 role assignments from pick-zone-admins to 1 user: 3 added, 0 already there.")
        .waitFor();
      assert.deepEqual(await assignmentsOf({ userId: targetId }), await assignmentsOf({ groupId }));
      assert.equal((await assignmentsOf({ userId: targetId })).length, 3);
      await page.context().close();
    });
  }
});

describe("copying without choosing, by keyboard", () => {
  for (const { javaScript, label, on } of modes) {
    test(`says to choose, beside the list, keeping the search; then copies (${label})`, async () => {
      const username = `copy-dest-${on}`;
      const targetId = targets.get(username) ?? -1;
      const page = await openUser(javaScript, targetId, username);
      await page.goto(`${site.url}/role-copies/new?to=${targetId}&q=pick-holder`);
      assert.deepEqual(await candidates(page), ["pick-holder (internal user) 2 role assignments"]);
      await tabTo(page, "Copy roles and assignments");
      await page.keyboard.press("Enter");
      await page.locator(".error-summary:focus").waitFor({ timeout: 5000 });
      const message = "Choose the user or group to copy from.";
      assert.equal(
        (await page.locator(".error-summary").innerText()).replace(/\s+/g, " ").trim(),
        `There is a problem ${message}`,
      );
      assert.equal(
        (await page.locator("#field-from .error").innerText()).replace(/\s+/g, " ").trim(),
        `Error: ${message}`,
      );
      assert.equal(
        await page.locator("#field-from").getAttribute("aria-describedby"),
        "copy-sources-status field-from-error",
      );
      // The search is kept: the one match is still there to choose.
      assert.deepEqual(await candidates(page), ["pick-holder (internal user) 2 role assignments"]);
      assert.deepEqual(await assignmentsOf({ userId: targetId }), [], "nothing was copied");
      await assertNoAxeViolations(page);

      await tabTo(page, /^pick-holder/);
      await page.keyboard.press("Space");
      assert.equal(await page.locator(`#from-user-${holderId}`).isChecked(), true);
      await tabTo(page, "Copy roles and assignments");
      await page.keyboard.press("Enter");
      await page.waitForURL(`${site.url}/users/${targetId}`);
      await page
        .getByText("Copied 2 role assignments from pick-holder to 1 user: 2 added, 0 already there.")
        .waitFor();
      assert.deepEqual(await assignmentsOf({ userId: targetId }), await assignmentsOf({ userId: holderId }));
      await assertNoAxeViolations(page);
      await page.context().close();
    });
  }
});
