import { AxeBuilder } from "@axe-core/playwright";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { serve, type TestApp } from "./app.ts";

/** The password the browser tests give the users they sign in as: long enough for the password rules. */
export const PASSWORD = "a long enough password";

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
  "--disable-quic",
];

/** Debian's Chromium, never a downloaded one. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: CHROMIUM_FLAGS,
  });
}

/** The app served on a loopback port (as the other HTTP tests that need a real socket do), and a Chromium. */
export interface BrowserSite {
  url: string;
  browser: Browser;
  close(): Promise<void>;
}

export async function openBrowserSite(app: TestApp["app"]): Promise<BrowserSite> {
  const site = await serve(app);
  try {
    const browser = await launchBrowser();
    return {
      url: site.url,
      browser,
      close: async () => {
        await browser.close();
        await site.close();
      },
    };
  } catch (err) {
    await site.close();
    throw err;
  }
}

/**
 * Signs in at the sign-in page as a keyboard user does (the username field has focus; Tab to the
 * password; Enter), coming back to `returnTo`. Waits for nothing after Enter.
 */
export async function signInByKeyboard(
  page: Page,
  siteUrl: string,
  returnTo: string,
  username = "admin",
  password = PASSWORD,
): Promise<void> {
  await page.goto(`${siteUrl}/login?returnTo=${encodeURIComponent(returnTo)}`);
  await page.locator("#field-username:focus").waitFor();
  await page.keyboard.type(username);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
}

const scriptless = new WeakSet<BrowserContext>();

/** A context with JavaScript on (htmx enhances) or off (plain forms and 303 redirects). */
export async function newContext(browser: Browser, javaScript: boolean): Promise<BrowserContext> {
  const context = await browser.newContext({ javaScriptEnabled: javaScript });
  if (!javaScript) scriptless.add(context);
  return context;
}

/** Fails with the list of axe violations (WCAG 2.1 A/AA and best practices) on the page as it is now. */
export async function assertNoAxeViolations(page: Page): Promise<void> {
  if (scriptless.has(page.context())) return scanCopyOf(page);
  const result = await analyzeSettled(page);
  const violations = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(" ")).join("\n    ")}`,
  );
  if (violations.length > 0)
    throw new Error(`axe found ${violations.length} violation(s):\n${violations.join("\n")}`);
}

/**
 * axe on the page once it has loaded; a scan that a navigation interrupted (a self-refreshing
 * progress page that has just finished, say) is run again on the page it arrived at.
 */
async function analyzeSettled(page: Page) {
  for (let attempt = 1; ; attempt += 1) {
    await page.waitForLoadState("load");
    try {
      return await new AxeBuilder({ page }).analyze();
    } catch (err) {
      const navigated = /Execution context was destroyed|navigat|Target closed|frame was detached/i.test(
        String((err as Error)?.message),
      );
      if (!navigated || attempt >= 3) throw err;
    }
  }
}

/**
 * axe runs as a script, which a page with JavaScript off can't: scan a copy of that page's DOM (same
 * styles, via <base>) in a scratch page that may run scripts, with the copy's own scripts removed.
 */
async function scanCopyOf(page: Page): Promise<void> {
  const browser = page.context().browser();
  if (!browser) throw new Error("page has no browser");
  const html = (await page.content())
    .replace(/<script\b[^>]*>[\s\S]*?<\/script>/gi, "")
    .replace(/<head>/i, `<head><base href="${page.url()}">`);
  const context = await browser.newContext();
  try {
    const scratch = await context.newPage();
    await scratch.setContent(html, { waitUntil: "load" });
    await assertNoAxeViolations(scratch);
  } finally {
    await context.close();
  }
}

/** Presses Tab until the focused element's label or text matches, as a keyboard user would. */
export async function tabTo(page: Page, name: string | RegExp, maxPresses = 40): Promise<void> {
  for (let i = 0; i < maxPresses; i++) {
    await page.keyboard.press("Tab");
    const label = await focusedLabel(page);
    if (typeof name === "string" ? label === name : name.test(label)) return;
  }
  throw new Error(`could not reach “${String(name)}” with the Tab key`);
}

/** The accessible name of the focused element, for asserting where focus is. */
export function focusedLabel(page: Page): Promise<string> {
  return page.evaluate(() => {
    const el = document.activeElement as HTMLElement | null;
    if (!el) return "";
    const labelled = el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent : null;
    return (labelled ?? el.getAttribute("aria-label") ?? el.textContent ?? "").trim();
  });
}
