// Drives the support console (a fresh temporary profile each run) (GET /) in headless Chromium against a running casefile:
// an unknown user gives the empty message, an attribute that is not indexed gives the
// server's error, the user's traces are listed with their deep links, and Complain on a
// row files a complaint whose outcome is shown in plain words.
//
//   node tests/console/console.mjs http://127.0.0.1:PORT USER_ID TRACE_ID [TICKET_ID]
//
// Env: CASEFILE_CHROMIUM (default /usr/bin/chromium), CASEFILE_CONSOLE_TRACE_URL (the
// support.trace_url template the daemon runs with; default
// http://jaeger.example/trace/{trace_id}). Prints one JSON line and exits 0, or prints
// what failed to stderr and exits 1 (a screenshot of the failure goes to
// target/console-failure.png).
import { join } from 'node:path';
import { T, check, open, shots, watchdog as startWatchdog } from './browser.mjs';

const [base, userId, traceId, ticket = 'cs_console_1'] = process.argv.slice(2);
if (!base || !userId || !traceId) {
  console.error('usage: node console.mjs BASE_URL USER_ID TRACE_ID [TICKET_ID]');
  process.exit(2);
}
const template = process.env.CASEFILE_CONSOLE_TRACE_URL || 'http://jaeger.example/trace/{trace_id}';
const wantHref = template.replace('{trace_id}', traceId);
const watchdog = startWatchdog('console test');

let browser;
let page;
let pageErrors = [];
try {
  ({ browser, page, pageErrors } = await open());

  const resp = await page.goto(`${base}/`);
  check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
  check((await page.title()).includes('casefile'), `unexpected title ${await page.title()}`);

  // An unknown user: the plain empty message.
  await page.selectOption('#attr', 'user.id');
  await page.fill('#value', 'usr_nobody_here');
  await page.click('#search');
  const msg = page.locator('#search-message');
  await msg.filter({ hasText: 'No traces for user.id = usr_nobody_here' }).waitFor();
  check(await page.locator('#results tbody tr').count() === 0, 'rows shown for an unknown user');

  // An attribute that is not indexed: the server's error text.
  await page.selectOption('#attr', '__other');
  await page.fill('#attr-other', 'http.method');
  await page.fill('#value', 'GET');
  await page.click('#search');
  await msg.filter({ hasText: 'is not indexed' }).waitFor();
  check((await msg.getAttribute('class')).includes('error'), 'the 400 is not shown as an error');

  // The user's traces, with their deep links.
  await page.selectOption('#attr', 'user.id');
  await page.fill('#value', userId);
  await page.click('#search');
  const rows = page.locator('#results tbody tr');
  await page.waitForFunction(() => document.querySelectorAll('#results tbody tr').length >= 2, null, { timeout: T });
  const rowCount = await rows.count();
  const row = page.locator(`#results tbody tr[data-trace-id="${traceId}"]`);
  check(await row.count() === 1, `no row for trace ${traceId} among ${rowCount} rows`);
  check((await row.locator('[data-testid=trace-id]').textContent()).trim() === traceId, 'the row does not show the trace id');
  const link = row.locator('[data-testid=open-trace]');
  const href = await link.getAttribute('href');
  check(href === wantHref, `deep link is ${href}, expected ${wantHref}`);
  check(await link.getAttribute('target') === '_blank', 'deep link does not open a new tab');
  check((await link.getAttribute('rel') || '').includes('noopener'), 'deep link lacks rel=noopener');
  const decisionBefore = await row.getAttribute('data-decision');
  const decisionText = (await row.locator('td[data-label=Decision]').textContent()).trim();
  check(decisionText.length > 0, 'the decision cell is empty');
  check(await page.inputValue('#user-id') === userId, 'the user id was not pre-filled from the search');

  // Complain on that row: the form is pre-filled with the trace id.
  await row.locator('[data-testid=complain-row]').click();
  check(await page.inputValue('#trace-id') === traceId, 'Complain did not pre-fill the trace id');
  await page.fill('#ticket', ticket);
  await page.fill('#label', 'order_failed');
  await page.fill('#text', 'Customer says checkout failed (filed by the console test).');
  await page.click('#complain');
  const result = page.locator('#complaint-result');
  await result.filter({ hasText: `Complaint filed for ticket ${ticket}` }).waitFor();
  const item = result.locator(`li[data-trace-id="${traceId}"]`);
  await item.waitFor();
  const outcome = await item.getAttribute('data-outcome');
  const outcomeText = (await item.locator('.outcome').textContent()).trim();
  check(['flagged', 'already_sampled', 'rescued', 'not_found'].includes(outcome), `unknown outcome ${outcome}`);
  check(!outcomeText.includes('_'), `outcome shown as a code, not words: ${outcomeText}`);

  // The search is refreshed: the row shows the decision after the complaint.
  if (outcome === 'rescued') {
    await page.waitForFunction((id) => {
      const r = document.querySelector(`#results tbody tr[data-trace-id="${id}"]`);
      return r && r.dataset.decision === 'rescued';
    }, traceId, { timeout: T });
  }
  const decisionAfter = await row.getAttribute('data-decision');
  check(await page.inputValue('#user-id') === '', 'the refresh put the user id back into the complaint form');

  await page.screenshot({ path: join(shots, 'console.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, 'console-narrow.png'), fullPage: true });
  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);

  console.log(JSON.stringify({ ok: true, rows: rowCount, trace_id: traceId, href, ticket,
    decision_before: decisionBefore, decision_after: decisionAfter, outcome, outcome_text: outcomeText }));
  await browser.close();
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  console.error(`console test failed: ${e && e.message ? e.message : e}`);
  if (pageErrors.length) console.error(`errors in the page: ${pageErrors.join('; ')}`);
  if (page) {
    try { await page.screenshot({ path: join(shots, 'console-failure.png'), fullPage: true }); } catch { /* ignore */ }
  }
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
