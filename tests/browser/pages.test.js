// Every page at 1280 px and at a 390 px phone width: it renders without a console
// error, an exception or a CSP violation, the page itself never scrolls sideways (wide
// tables scroll inside their box, long payloads and errors are collapsed), times
// carry UTC on hover, and the keyboard reaches the navigation and the main actions
// with a visible focus.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {Hopper, withScreenshots, sleep, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin'}]});
after(() => h.stop());

const Q = 'layout-queue-with-a-rather-long-name.v2';
let deadId;
let workerId;

async function seed() {
  await h.startWorker(Q, {threads: 3});
  // A dead job with a long error and a big payload.
  const longError = `Error: upstream said no. ${'details of the failure '.repeat(120)}`;
  const big = {items: Array.from({length: 400}, (_, i) => ({sku: `SKU-${i}`, description: 'x'.repeat(60), qty: i}))};
  const r = await h.enqueue({queue: Q, type: 'test.fail', payload: {permanent: true, message: longError, ...big}});
  deadId = r.id;
  assert.equal((await h.api('GET', `/v1/jobs/${deadId}?wait=20s`)).state, 'dead');
  // A job with progress and log lines, succeeded; one running; some waiting and scheduled.
  const p = await h.enqueue({queue: Q, type: 'test.progress', payload: {step_ms: 5}});
  await h.api('GET', `/v1/jobs/${p.id}?wait=20s`);
  await h.enqueue({queue: Q, type: 'test.sleep', payload: {ms: 120000}});
  await h.enqueue({queue: Q, type: 'test.noop', delay_ms: 3600000});
  await h.api('PUT', '/v1/schedules/layout-check', {cron: '15 4 * * MON-FRI', tz: 'America/New_York', job: {queue: Q, type: 'test.noop'}});
  await h.api('POST', '/v1/schedules/layout-check/trigger');
  for (;;) {
    const ws = (await h.api('GET', '/v1/workers')).workers;
    if (ws.length && ws[0].jobs.length) {
      workerId = ws[0].id;
      break;
    }
    await sleep(100);
  }
  await h.api('POST', `/v1/queues/${encodeURIComponent(Q)}/pause`); // the rest stays waiting
  for (let i = 0; i < 3; i++) await h.enqueue({queue: Q, type: 'test.noop', payload: {i}});
}

function pagesToVisit() {
  const q = encodeURIComponent(Q);
  return [
    ['overview', '#/', `a.count[data-state="dead"]`],
    ['queue', `#/queue/${q}?state=dead`, `tr[data-id="${deadId}"]`],
    ['jobs', `#/jobs?queue=${q}&state=dead`, `tr[data-id="${deadId}"]`],
    ['job', `#/job/${encodeURIComponent(deadId)}`, '.job-detail[data-state="dead"]'],
    ['workers', '#/workers', `tr[data-worker="${workerId}"]`],
    ['worker', `#/workers/${encodeURIComponent(workerId)}`, '.table-jobs td.id'],
    ['schedules', '#/schedules', 'section.schedule'],
    ['schedule', '#/schedules/layout-check', 'section.schedule tbody tr .badge'],
    ['audit', '#/audit', '.table-audit tbody tr'],
  ];
}

test('an empty Hopper: the overview says how to submit a first job', {timeout: 60000}, withScreenshots(h, 'empty', async () => {
  const page = await h.page({width: 390, height: 844});
  await h.login(page, h.adminToken);
  await page.locator('.empty-state', {hasText: 'No jobs yet'}).waitFor();
  await h.assertNoOverflow(page, 'empty overview at 390 px');
  await h.shot(page, 'phone');
  await page.close();
}));

for (const [label, width, height] of [['desktop', 1280, 900], ['phone', 390, 844]]) {
  test(`every page at ${width} px`, {timeout: 120000}, withScreenshots(h, label, async () => {
    if (!deadId) await seed();
    const page = await h.page({width, height});
    await h.login(page, h.adminToken);
    for (const [name, hash, ready] of pagesToVisit()) {
      await page.goto(h.url(hash));
      await page.locator(ready).first().waitFor({timeout: 60000});
      await sleep(400);
      await h.assertNoOverflow(page, `${name} at ${width} px`);
      // Every <time> shows the viewer's zone, with UTC on hover.
      for (const title of await page.locator('main time').evaluateAll((ts) => ts.slice(0, 5).map((t) => t.title))) {
        assert.match(title, /UTC$/, `${name}: a time without UTC on hover`);
      }
      await h.shot(page, `${label}-${name}`);
    }
    // The long error and the big payload are collapsed, not spread over the page.
    await page.goto(h.url(`#/job/${encodeURIComponent(deadId)}`));
    await page.locator('.job-detail[data-state="dead"]').waitFor();
    assert.equal(await page.locator('td.error-text details:not([open])').count(), 1, 'the long error is collapsed');
    assert.ok(await page.locator('.job-detail details.long:not([open]) pre.json').count() >= 1, 'the big payload is collapsed');
    await page.locator('td.error-text details summary').click();
    await page.locator('.job-detail details.long summary', {hasText: 'payload'}).click();
    await sleep(200);
    await h.assertNoOverflow(page, `job with everything open at ${width} px`);
    await h.shot(page, `${label}-job-open`);
    h.assertClean(page, [LOGIN_401]);
    await page.close();
  }));
}

test('the keyboard reaches the navigation and the main actions', {timeout: 120000}, withScreenshots(h, 'keyboard', async () => {
  if (!deadId) await seed();
  const page = await h.page();
  await h.login(page, h.adminToken);

  // Tab from the top of the job page: a skip link, the navigation, then the actions.
  await page.goto(h.url(`#/job/${encodeURIComponent(deadId)}`));
  await page.locator('.job-detail[data-state="dead"]').waitFor();
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  const reached = [];
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const el = document.activeElement;
      const cs = getComputedStyle(el);
      return {tag: el.tagName, text: el.textContent.trim().slice(0, 40), action: el.dataset.action || null,
        route: el.dataset.route || null, outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0};
    });
    reached.push(f);
  }
  const names = reached.map((f) => f.action || f.route || f.text);
  for (const want of ['overview', 'jobs', 'workers', 'schedules', 'audit', 'retry', 'edit-retry', 'delete']) {
    assert.ok(names.includes(want), `Tab reaches ${want}: ${names.join(', ')}`);
  }
  for (const f of reached.filter((x) => x.action || x.route)) assert.ok(f.outline, `a visible focus ring on ${f.action || f.route}`);

  // Enter on a navigation link changes the page; the new page's heading gets the focus.
  await page.locator('#nav a[data-route="workers"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('h1', {hasText: 'Workers'}).waitFor();
  await page.waitForFunction(() => document.activeElement.tagName === 'H1');

  // A worker's buttons, and a confirmation dialog driven by the keyboard alone.
  await page.locator(`tr[data-worker="${workerId}"]`).waitFor();
  await page.locator('button[data-action="quiet"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('dialog[open]').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel', 'the safe choice has the focus');
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press('Shift+Tab');
    assert.ok(await page.evaluate(() => !!document.activeElement.closest('dialog')), 'Shift+Tab stays in the dialog');
  }
  await page.keyboard.press('Escape');
  await page.locator('dialog').waitFor({state: 'detached'});
  assert.equal(await page.evaluate(() => document.activeElement.dataset.action), 'quiet', 'focus back on the button');

  // The job browser's filters submit with Enter.
  await page.goto(h.url(`#/jobs?queue=${encodeURIComponent(Q)}&state=dead`));
  await page.locator(`tr[data-id="${deadId}"]`).waitFor();
  await page.locator('#f-type').focus();
  await page.keyboard.type('test.nope');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash.includes('type=test.nope'));
  await page.locator('.job-list tr.empty').waitFor();
  await h.shot(page);
  h.assertClean(page, [LOGIN_401]);
}));
