/**
 * The import results fit the window: 50 results whose DNs are 120 characters long, at 1,280 px (a
 * table) and 390 px (cards), with JavaScript on and off, scroll only down, never sideways.
 */
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { eq, sql } from "drizzle-orm";
import type { Page } from "playwright-core";
import { importRuns } from "../../src/db/schema.ts";
import { groupEntry, ldifEntry } from "../../src/dev/fixtures.ts";
import { type SlapdServer, startSlapd } from "../../src/dev/slapd.ts";
import { createRun } from "../../src/services/import/run-queue.ts";
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
import { makeDirectory, makeExternalUser } from "../helpers/console.ts";
import { skipWithoutSlapd } from "../ldap/support.ts";
import { addDirectory, runQueued, stableIdOf, testWorker, withStableIds } from "../web/import-support.ts";

const BASE = "dc=example,dc=test";
const USERS = 49;
/** No spaces: the DN can only break where the page breaks it. */
const LONG_OU = "regional-engineering-operations-and-customer-support-division-north-europe".slice(0, 74);
const uidOf = (i: number) => `person-${String(i).padStart(2, "0")}`;
const dnOf = (i: number) => `uid=${uidOf(i)},ou=${LONG_OU},ou=people,${BASE}`;
const GROUP_DN = `cn=person-team-with-a-rather-long-group-name,ou=${LONG_OU.slice(0, 50)},ou=groups,${BASE}`;

function layoutLdif(): string {
  const entries = [
    ldifEntry(`ou=${LONG_OU},ou=people,${BASE}`, { objectClass: "organizationalUnit", ou: LONG_OU }),
    ldifEntry(`ou=${LONG_OU.slice(0, 50)},ou=groups,${BASE}`, {
      objectClass: "organizationalUnit",
      ou: LONG_OU.slice(0, 50),
    }),
  ];
  for (let i = 1; i <= USERS; i += 1) {
    entries.push(
      ldifEntry(dnOf(i), {
        objectClass: "inetOrgPerson",
        uid: uidOf(i),
        cn: `Person Number ${i} Of The Regional Engineering Division`,
        sn: `Number ${i}`,
        mail: `${uidOf(i)}.with.a.long.address@regional-engineering.example.test`,
      }),
    );
  }
  entries.push(
    groupEntry({
      cn: "person-team-with-a-rather-long-group-name",
      dn: GROUP_DN,
      members: [dnOf(1), dnOf(2), dnOf(3)],
      description: "Everyone in the regional engineering and operations division, north Europe",
    }),
  );
  return withStableIds(entries.join(""));
}

const skip = skipWithoutSlapd;
let server: SlapdServer;
let t: TestApp;
let site: BrowserSite;
let directoryId: number;
const shots = process.env.SCREENSHOT_DIR;

before(async () => {
  if (skip) return;
  server = await startSlapd({ ldif: layoutLdif() });
  t = await createTestApp();
  await createUser(t.db, { username: "admin", password: PASSWORD, role: "server_admin" });
  directoryId = (await addDirectory(t.db, t.config.encryptionKey, server)).id;
  // Every outcome on the page: one to update, one in conflict with another directory's user.
  await makeExternalUser(t.db, {
    username: uidOf(2),
    directoryId,
    externalId: stableIdOf(dnOf(2)),
    dn: dnOf(2),
    fullName: "An older name",
  });
  const other = await makeDirectory(t.db, "Other LDAP");
  await makeExternalUser(t.db, { username: uidOf(3), directoryId: other.id, externalId: "other-3" });
  site = await openBrowserSite(t.app);
  if (shots) await mkdir(shots, { recursive: true });
});
after(async () => {
  await site?.close();
  await t?.close();
  await server?.stop();
});

/** How far the page scrolls sideways (0 when it fits), and how many result rows stick out of the window. */
function overflow(page: Page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const rows = [...document.querySelectorAll(".import-results tbody tr")];
    return {
      scroll: document.documentElement.scrollWidth - width,
      rows: rows.length,
      outside: rows.filter((row) => row.getBoundingClientRect().right > width + 0.5).length,
    };
  });
}

describe("the import results fit the window", { skip }, () => {
  for (const width of [1280, 390]) {
    for (const javaScript of [true, false]) {
      const label = `${width} px, JavaScript ${javaScript ? "on" : "off"}`;
      test(`50 results with 120-character DNs scroll only down (${label})`, async () => {
        assert.equal(dnOf(1).length, 120);
        const context = await newContext(site.browser, javaScript);
        const page = await context.newPage();
        await page.setViewportSize({ width, height: 900 });
        await signInByKeyboard(page, site.url, `/imports/new?directory=${directoryId}`);
        await page.getByRole("heading", { name: "Import users & groups", level: 1 }).waitFor();
        await tabTo(page, "Username, group name or LDAP filter");
        await page.keyboard.type("person");
        await page.keyboard.press("Enter");
        await page.locator("#import-results-title:focus").waitFor({ timeout: 10_000 });
        assert.equal(await focusedLabel(page), "50 matches");

        assert.deepEqual(await overflow(page), { scroll: 0, rows: 50, outside: 0 });
        const conflict = page.locator("tr", { hasText: uidOf(3) });
        assert.equal(await conflict.locator(".status").innerText(), "Conflict");
        const update = page.locator("tr", { hasText: uidOf(2) });
        assert.equal(await update.locator(".status").innerText(), "Update");
        assert.match(await update.locator(".status-detail").innerText(), /^Changes full name/);
        // The whole DN is on the page, however it wraps.
        assert.equal(
          (
            await page
              .locator("tr", { hasText: uidOf(49) })
              .locator("td.dn")
              .innerText()
          ).replace(/\s/g, ""),
          dnOf(49).replace(/\s/g, ""),
        );
        if (shots && javaScript) {
          await page.locator(".selection-bar").evaluate((bar) => bar.scrollIntoView());
          await page.screenshot({ path: `${shots}/import-results-${width}.png` });
        }
        await assertNoAxeViolations(page);
        await context.close();
      });
    }
  }
});

describe("the run page fits the window", { skip }, () => {
  /** A run as the worker leaves it (its report lists 49 users with long DNs), and one still running. */
  async function runs() {
    const input = {
      directory: { id: directoryId, name: "Example LDAP" },
      actor: { id: null, name: "admin" },
      query: "person",
      selection: { mode: "query" as const, text: "person", kind: "users" as const },
      copyRolesFrom: null,
    };
    const finished = await createRun(t.db, { ...input, total: USERS });
    const worker = testWorker(t.db, t.config.encryptionKey);
    await runQueued(worker);
    await worker.stop();
    const running = await createRun(t.db, { ...input, total: 2000 });
    await t.db
      .update(importRuns)
      .set({
        status: "running",
        processed: 500,
        created: 480,
        updated: 12,
        unchanged: 6,
        skipped: 1,
        failed: 1,
        startedAt: sql`now() - interval '10 seconds'`,
        heartbeatAt: sql`now() + interval '1 hour'`,
      })
      .where(eq(importRuns.id, running.id));
    return { finished: finished.id, running: running.id };
  }

  test("a running and a finished run, at 1,280 and 390 px, scroll only down", async () => {
    const ids = await runs();
    try {
      for (const width of [1280, 390]) {
        const context = await newContext(site.browser, true);
        const page = await context.newPage();
        await page.setViewportSize({ width, height: 900 });
        await signInByKeyboard(page, site.url, `/imports/${ids.running}`);
        await page.getByText(/^Importing: 500 of 2,000 entries processed \(25%\)\./).waitFor();
        assert.match(
          await page.locator("#import-pace").innerText(),
          /^\d+ entries a second · about \d+ (s|min)/,
        );
        const bar = await page.locator("progress.import-bar").boundingBox();
        const main = await page.locator("#import-progress").boundingBox();
        assert.ok(bar && main && bar.width >= main.width - 1, "the bar is as wide as its section");
        assert.equal(
          await page.evaluate(
            () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
          ),
          0,
        );
        if (shots) await page.screenshot({ path: `${shots}/run-running-${width}.png` });
        await assertNoAxeViolations(page);

        await page.goto(`${site.url}/imports/${ids.finished}`);
        await page.getByText(/^Finished: 49 of 49 entries processed/).waitFor();
        await page.locator("#import-duration").waitFor();
        await page.locator("table.import-report").waitFor();
        assert.equal(
          await page.evaluate(
            () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
          ),
          0,
        );
        if (shots) await page.screenshot({ path: `${shots}/run-finished-${width}.png`, fullPage: true });
        await assertNoAxeViolations(page);
        await context.close();
      }
    } finally {
      await t.db
        .update(importRuns)
        .set({ status: "cancelled", finishedAt: sql`now()` })
        .where(eq(importRuns.id, ids.running));
    }
  });
});
