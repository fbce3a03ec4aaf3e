// Drives the support console in headless Chromium against a casefile whose API requires a
// bearer token: a search without the token says a token is needed and opens the token
// box; a wrong token is refused in words; the right one lists the user's traces; a
// complaint about the user (no trace) opens a watch, shown with its end time.
//
//   node tests/console/token-watch.mjs http://127.0.0.1:PORT USER_ID TOKEN TICKET_ID
//
// Env: CASEFILE_CHROMIUM (default /usr/bin/chromium). Prints one JSON line and exits 0,
// or prints what failed to stderr and exits 1 (screenshot: target/console-token-failure.png).
import { join } from 'node:path';
import { T, check, open, shots, watchdog as startWatchdog } from './browser.mjs';

const [base, userId, token, ticket] = process.argv.slice(2);
if (!base || !userId || !token || !ticket) {
  console.error('usage: node token-watch.mjs BASE_URL USER_ID TOKEN TICKET_ID');
  process.exit(2);
}
const watchdog = startWatchdog('console token test');

let browser;
let page;
let pageErrors = [];
try {
  ({ browser, page, pageErrors } = await open());

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
