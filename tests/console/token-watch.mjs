// Drives the support console in headless Chromium against a casefile whose API requires a
// bearer token: a search without the token says a token is needed and opens the token
// box; a wrong token is refused in words; the right one lists the user's traces; a
// complaint about the user (no trace) opens a watch, shown with its end time.
//
//   node tests/console/token-watch.mjs http://127.0.0.1:PORT USER_ID TOKEN TICKET_ID
//
// Env: CASEFILE_CHROMIUM (default /usr/bin/chromium). Prints one JSON line and exits 0,
// or prints what failed to stderr and exits 1 (screenshot: target/console-token-failure.png).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, userId, token, ticket] = process.argv.slice(2);
if (!base || !userId || !token || !ticket) {
  console.error('usage: node token-watch.mjs BASE_URL USER_ID TOKEN TICKET_ID');
  process.exit(2);
}
const shots = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target');
mkdirSync(shots, { recursive: true });
const T = 15000;
const watchdog = setTimeout(() => {
  console.error('console token test: gave up after 90 s');
  process.exit(3);
}, 90000);

function check(cond, what) {
  if (!cond) throw new Error(what);
}

let browser;
let page;
const pageErrors = [];
try {
  browser = await chromium.launch({
    executablePath: process.env.CASEFILE_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(T);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${m.text()}`);
  });

  const resp = await page.goto(`${base}/`);
  check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()} (the page itself needs no token)`);

  // No token: the page says one is needed and opens the token box.
  const msg = page.locator('#search-message');
  await page.selectOption('#attr', 'user.id');
  await page.fill('#value', userId);
  await page.click('#search');
  await msg.filter({ hasText: 'casefile asks for an API token' }).waitFor();
  const noToken = (await msg.textContent()).trim();
  check(!noToken.includes('was not accepted'), `no token entered, yet: ${noToken}`);
  check(await page.locator('#token-box').evaluate((d) => d.open), 'the token box did not open');

  // A wrong token: refused in words.
  await page.fill('#token', 'not-the-token');
  await page.click('#search');
  await msg.filter({ hasText: 'the one entered was not accepted' }).waitFor();
  check(await page.locator('#results tbody tr').count() === 0, 'rows shown with a wrong token');

  // The right token: the user's traces.
  await page.fill('#token', token);
  await page.click('#search');
  await page.waitForFunction(() => document.querySelectorAll('#results tbody tr').length >= 1, null, { timeout: T });
  const rows = await page.locator('#results tbody tr').count();
  check(await page.inputValue('#user-id') === userId, 'the user id was not pre-filled from the search');

  // A complaint about the user, not a trace: a watch, with its end in local time.
  await page.fill('#ticket', ticket);
  await page.fill('#label', 'slow_checkout');
  await page.click('#complain');
  const result = page.locator('#complaint-result');
  await result.filter({ hasText: `Complaint filed for ticket ${ticket}` }).waitFor();
  const watch = result.locator('[data-testid=watch]');
  await watch.waitFor();
  const watchText = (await watch.textContent()).trim();
  check(watchText.includes(`Watching user ${userId} until`), `watch message: ${watchText}`);
  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);

  console.log(JSON.stringify({ ok: true, rows, no_token: noToken, watch: watchText }));
  await browser.close();
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  console.error(`console token test failed: ${e && e.message ? e.message : e}`);
  if (pageErrors.length) console.error(`errors in the page: ${pageErrors.join('; ')}`);
  if (page) {
    try { await page.screenshot({ path: join(shots, 'console-token-failure.png'), fullPage: true }); } catch { /* ignore */ }
  }
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
