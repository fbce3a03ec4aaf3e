// Drives the console's case file in headless Chromium (zone Europe/Paris) against a running
// casefile that serves a dropped trace from its archive: search the user, open the trace's
// case file from the keyboard, read its summary (times with their zone, where it is held),
// the problems listed before the waterfall (the error span's status message, the exception
// event's type, message and stack trace), the waterfall (one row per span, a bar each), a
// span's attributes and resource, the indexed keys; check that a hostile attribute value
// stays text; then "Rescue to backend" with a ticket: the outcome in words, the decision
// now rescued. Last, a 1 000-span trace opened by its deep link (#trace=<id>).
//
//   node tests/console/case-file.mjs BASE_URL USER_ID TRACE_ID BIG_TRACE_ID SESSION_ID TICKET_ID
//
// TRACE_ID: a dropped trace of USER_ID with SESSION_ID, one span with status ERROR and the
// message "payment declined", another (status unset) with an `exception` event of type
// CardDeclinedError, and a `note` attribute holding HTML. BIG_TRACE_ID: 1 000 spans of the
// same user. Env: CASEFILE_CHROMIUM, CASEFILE_CONSOLE_TRACE_URL (as console.mjs),
// CASEFILE_CASE_FILE_SHOT (where the screenshot of the case file goes; default
// $TMPDIR/casefile-case-file.png). Prints one JSON line and exits 0, or prints what failed
// to stderr and exits 1 (a screenshot of the failure goes to target/case-file-failure.png).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { T, check, open, shots, watchdog as startWatchdog } from './browser.mjs';

const [base, userId, traceId, bigId, sessionId, ticket] = process.argv.slice(2);
if (!base || !userId || !traceId || !bigId || !sessionId || !ticket) {
  console.error('usage: node case-file.mjs BASE_URL USER_ID TRACE_ID BIG_TRACE_ID SESSION_ID TICKET_ID');
  process.exit(2);
}
const ZONE = 'Europe/Paris';
const template = process.env.CASEFILE_CONSOLE_TRACE_URL || 'http://jaeger.example/trace/{trace_id}';
const shot = process.env.CASEFILE_CASE_FILE_SHOT || join(tmpdir(), 'casefile-case-file.png');
const watchdog = startWatchdog('case file test');

// "UTC+01:00" and "14:15:03" for an instant in ZONE, as the page should write them.
function zoned(iso) {
  const d = new Date(iso);
  const parts = new Intl.DateTimeFormat('en-GB', { timeZone: ZONE, hour: '2-digit', minute: '2-digit',
    second: '2-digit', hourCycle: 'h23', timeZoneName: 'longOffset' }).formatToParts(d);
  const get = (t) => (parts.find((p) => p.type === t) || {}).value;
  const offset = get('timeZoneName').replace(/^GMT$/, 'GMT+00:00').replace('GMT', 'UTC');
  return { clock: `${get('hour')}:${get('minute')}:${get('second')}`, zone: offset };
}

let browser;
let page;
let pageErrors = [];
try {
  ({ browser, page, pageErrors } = await open({ timezoneId: ZONE }));
  const summary = await (await fetch(`${base}/api/v1/traces/${traceId}`)).json();
  check(summary.held === 'archive', `the trace is not served from the archive: held=${summary.held}`);
  const spanCount = summary.spans.length;

  const resp = await page.goto(`${base}/`);
  check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
  await page.selectOption('#attr', 'user.id');
  await page.fill('#value', userId);
  await page.click('#search');
  const row = page.locator(`#results tbody tr[data-trace-id="${traceId}"]`);
  await row.waitFor();
  const rows = await page.locator('#results tbody tr').count();
  check(await row.getAttribute('data-decision') === 'dropped', 'the row is not dropped');
  const want = zoned(summary.start);
  const startedHead = (await page.locator('#started-h').textContent()).trim();
  check(startedHead === `Started (${want.zone})`, `the results table does not name the zone: ${startedHead}`);
  const rowStart = (await row.locator('td[data-label=Started]').textContent()).trim();
  check(rowStart.includes(want.clock), `row start ${rowStart} is not ${want.clock} in ${ZONE}`);

  // Open the case file from the keyboard.
  await row.locator('[data-testid=open-case]').focus();
  await page.keyboard.press('Enter');
  const section = page.locator('#case-section');
  await page.waitForFunction((id) => document.querySelector('#case-section').dataset.traceId === id, traceId, { timeout: T });
  check(await page.evaluate(() => location.hash) === `#trace=${traceId}`, 'the address has no #trace= deep link');
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'case-h',
    'focus did not move to the case file');

  // The summary.
  const caseStart = (await page.locator('[data-testid=case-start]').textContent()).trim();
  check(caseStart.includes(`${want.clock}.`) && caseStart.endsWith(`(${want.zone})`),
    `case file start "${caseStart}" is not ${want.clock} (${want.zone})`);
  const decision = (await page.locator('[data-testid=case-decision]').textContent()).trim();
  check(decision === 'dropped', `case file decision is ${decision}`);
  const held = (await page.locator('[data-testid=case-held]').textContent()).trim();
  check(held === 'in the archive on disk', `evidence reads "${held}"`);
  const backend = await page.locator('[data-testid=case-backend-link]').getAttribute('href');
  check(backend === template.replace('{trace_id}', traceId), `backend link is ${backend}`);

  // Problems first: before the waterfall, the error span and the exception event.
  const order = await page.evaluate(() => {
    const p = document.getElementById('case-problems');
    const w = document.getElementById('case-spans');
    return p && w ? (p.compareDocumentPosition(w) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0 : null;
  });
  check(order === true, 'the problems are not listed before the waterfall');
  const problems = page.locator('#case-problems > li');
  const problemCount = await problems.count();
  check(problemCount === 2, `${problemCount} problems listed, expected 2`);
  const errorProblem = page.locator('#case-problems > li[data-kind=error]');
  check(await errorProblem.count() === 1, 'no error span among the problems');
  const statusMessage = (await errorProblem.locator('[data-testid=status-message]').textContent()).trim();
  check(statusMessage.includes('payment declined'), `error status message: ${statusMessage}`);
  const exceptionProblem = page.locator('#case-problems > li[data-kind=exception]');
  const exceptionText = (await exceptionProblem.locator('[data-testid=exception]').textContent()).trim();
  check(exceptionText.includes('CardDeclinedError') && exceptionText.includes('card was declined'),
    `exception: ${exceptionText}`);
  await exceptionProblem.locator('summary').click();
  const stack = (await exceptionProblem.locator('pre.stack').textContent());
  check(stack.includes('at charge (payments/charge.js:88:11)'), `stack trace: ${stack}`);
  const errorSpanId = await errorProblem.getAttribute('data-span-id');
  const exceptionSpanId = await exceptionProblem.getAttribute('data-span-id');

  // The waterfall: every span, a bar each, the error span marked.
  const spans = page.locator('#case-spans > li');
  const spanRows = await spans.count();
  check(spanRows === spanCount, `${spanRows} waterfall rows for ${spanCount} spans`);
  check(await page.locator('#case-spans > li .wf-bar').count() === spanCount, 'a span has no bar');
  const rootDepth = await spans.first().getAttribute('data-depth');
  check(rootDepth === '0', `the first row is not the root (depth ${rootDepth})`);
  const depths = await spans.evaluateAll((lis) => lis.map((li) => Number(li.dataset.depth)));
  check(depths.slice(1).every((d) => d >= 1), `a child span is not indented under the root: ${depths}`);
  const errorRow = page.locator(`#case-spans > li[data-span-id="${errorSpanId}"]`);
  check(await errorRow.getAttribute('data-status') === 'error', 'the error span is not marked in the waterfall');
  const services = await page.locator('#case-spans .wf-svc').allTextContents();
  check(services[0] === 'frontend' && services.includes('payments'), `services: ${services}`);

  // "Show span" on the exception opens that span; a span's attributes and resource, by keyboard.
  await exceptionProblem.locator('button', { hasText: 'Show span' }).click();
  const excRow = page.locator(`#case-spans > li[data-span-id="${exceptionSpanId}"]`);
  await excRow.locator('[data-testid=span-detail]').waitFor();
  const excDetail = await excRow.locator('[data-testid=span-detail]').textContent();
  check(excDetail.includes('exception.type') && excDetail.includes('CardDeclinedError'), 'the span shows no exception event');
  const rootToggle = spans.first().locator('.wf-toggle');
  check(await rootToggle.getAttribute('aria-expanded') === 'false', 'the root span starts expanded');
  await rootToggle.focus();
  await page.keyboard.press('Enter');
  check(await rootToggle.getAttribute('aria-expanded') === 'true', 'Enter did not expand the span');
  const rootDetail = spans.first().locator('[data-testid=span-detail]');
  const rootText = await rootDetail.textContent();
  for (const want of ['user.id', userId, 'session.id', 'http.route', 'Resource: frontend', 'service.name', 'host.name']) {
    check(rootText.includes(want), `the root span's details lack ${want}`);
  }
  // Attribute values are user data: shown as text, never run.
  check(rootText.includes('<img src=x onerror='), 'the HTML attribute value is not shown as text');
  check(await page.locator('#case-body img').count() === 0, 'an attribute value became markup');
  check(await page.evaluate(() => window.__casefileXss) === undefined, 'an attribute value ran as script');

  // The indexed keys.
  const keys = (await page.locator('[data-testid=indexed-key] code').allTextContents()).map((s) => s.trim());
  check(keys.includes(`user.id = ${userId}`) && keys.includes(`session.id = ${sessionId}`), `indexed keys: ${keys}`);

  await page.screenshot({ path: shot, fullPage: true });

  // Rescue to backend: asks for the ticket, then the outcome in words.
  await page.click('[data-testid=rescue]');
  await page.locator('#case-rescue button[type=submit]').click();
  await page.locator('#case-rescue-result.error').waitFor();
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'case-ticket',
    'an empty ticket did not send focus back to the ticket field');
  await page.fill('#case-ticket', ticket);
  await page.fill('#case-label', 'order_failed');
  await page.keyboard.press('Enter');
  const outcomeLine = page.locator('[data-testid=rescue-outcome]');
  await outcomeLine.waitFor();
  const outcome = await page.locator('#case-rescue').getAttribute('data-outcome');
  const outcomeText = (await page.locator('#case-rescue-result').textContent()).trim();
  check(outcome === 'rescued', `rescue outcome ${outcome}: ${outcomeText}`);
  check(outcomeText.startsWith('Rescued:') && outcomeText.includes(ticket), `outcome words: ${outcomeText}`);
  const decisionAfter = (await page.locator('[data-testid=case-decision]').textContent()).trim();
  check(decisionAfter === 'rescued', `the case file's decision reads ${decisionAfter} after the rescue`);
  check(await page.locator('[data-testid=rescue]').count() === 0, 'Rescue is still offered');
  await page.waitForFunction((id) => {
    const r = document.querySelector(`#results tbody tr[data-trace-id="${id}"]`);
    return r && r.dataset.decision === 'rescued';
  }, traceId, { timeout: T });
  await page.screenshot({ path: shot.replace(/\.png$/, '-rescued.png'), fullPage: true });

  // Escape closes it and focus returns to the row's button.
  await page.locator('#case-h').focus();
  await page.keyboard.press('Escape');
  check(await section.isHidden(), 'Escape did not close the case file');
  check(await page.evaluate(() => location.hash) === '', 'the deep link stayed after closing');
  check(await page.evaluate((id) => {
    const a = document.activeElement;
    return !!a && a.dataset.testid === 'open-case' && a.closest('tr').dataset.traceId === id;
  }, traceId), 'focus did not return to the row after closing');

  // Opened again by its deep link after the rescue: still every span, each once.
  await page.goto(`${base}/#trace=${traceId}`);
  await page.waitForFunction((id) => document.querySelector('#case-section').dataset.traceId === id, traceId, { timeout: T });
  const rowsAfter = await page.locator('#case-spans > li').count();
  check(rowsAfter === spanCount, `${rowsAfter} waterfall rows after the rescue, expected ${spanCount}`);
  await page.locator('#case-close').click();

  // 1 000 spans, by deep link: all in the waterfall, quickly.
  const started = Date.now();
  await page.goto(`${base}/#trace=${bigId}`);
  await page.waitForFunction(() => document.querySelectorAll('#case-spans > li').length === 1000, null, { timeout: T });
  const bigOpenMs = Date.now() - started;
  const bigRenderMs = Number(await section.getAttribute('data-render-ms'));
  check(bigRenderMs < 2000, `rendering 1 000 spans took ${bigRenderMs} ms`);
  const t = Date.now();
  await page.locator('#case-spans > li').nth(999).locator('.wf-toggle').click();
  await page.locator('#case-spans > li').nth(999).locator('[data-testid=span-detail]').waitFor();
  const bigExpandMs = Date.now() - t;
  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);

  console.log(JSON.stringify({ ok: true, rows, trace_id: traceId, problems: problemCount, span_rows: spanRows,
    keys, outcome, outcome_text: outcomeText, decision_before: decision, decision_after: decisionAfter,
    case_start: caseStart, big_open_ms: bigOpenMs, big_render_ms: bigRenderMs, big_expand_ms: bigExpandMs, screenshot: shot }));
  await browser.close();
  clearTimeout(watchdog);
  process.exit(0);
} catch (e) {
  console.error(`case file test failed: ${e && e.message ? e.message : e}`);
  if (pageErrors.length) console.error(`errors in the page: ${pageErrors.join('; ')}`);
  if (page) {
    try { await page.screenshot({ path: join(shots, 'case-file-failure.png'), fullPage: true }); } catch { /* ignore */ }
  }
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
