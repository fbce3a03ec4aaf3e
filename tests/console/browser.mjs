// What both console scripts share: headless Chromium (Debian's, or CASEFILE_CHROMIUM) on a
// fresh profile, a page that records its script errors, a watchdog, and `check`.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const T = 15000;
/// Where screenshots go (target/ of the repository).
export const shots = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target');

export function check(cond, what) {
  if (!cond) throw new Error(what);
}

/// Exits with 3 if the script still runs after 90 s.
export function watchdog(name) {
  return setTimeout(() => {
    console.error(`${name}: gave up after 90 s`);
    process.exit(3);
  }, 90000);
}

/// Launches the browser and opens a page; script errors (and console errors other than
/// Chromium's "Failed to load resource", which the tests provoke on purpose) go to the
/// returned `pageErrors`. `contextOptions` go to Playwright's newContext (e.g. a
/// `timezoneId`).
export async function open(contextOptions = {}) {
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CASEFILE_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...contextOptions });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${m.text()}`);
  });
  return { browser, page, pageErrors };
}
