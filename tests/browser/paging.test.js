// The job browser pages through 100,000 waiting jobs: newest first, forward several
// pages and back again (a stack of cursors), each page's time measured and printed
// (no timing is asserted: the machine is shared); then a search by id.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {Hopper, withScreenshots, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin'}]});
after(() => h.stop());

const Q = 'bulk';
const N = 100000;
const PAGES = 6;

const ids = (page) => page.locator('.job-list tbody tr[data-id]').evaluateAll((rows) => rows.map((r) => r.dataset.id));
const listState = (page) => page.locator('.job-list').evaluate((el) => ({page: Number(el.dataset.page), ms: Number(el.dataset.loadMs),
  count: Number(el.dataset.count), busy: el.getAttribute('aria-busy')}));

// Clicks a pager button and waits for the list to show page `want`; returns the time
// from the click to the rows on screen, and the list's own fetch-and-render time.
async function turn(page, action, want) {
  const t0 = Date.now();
  await page.click(`.job-list button[data-action="${action}"]`);
  await page.waitForFunction((n) => {
    const el = document.querySelector('.job-list');
    return Number(el.dataset.page) === n && !el.hasAttribute('aria-busy');
  }, want, {polling: 'raf'});
  const wall = Date.now() - t0;
  return {wall, ...(await listState(page))};
}

test('page through 100,000 jobs', {timeout: 240000}, withScreenshots(h, 'paging', async () => {
  const t0 = Date.now();
  await h.enqueueMany(N, {queue: Q, type: 'test.noop'});
  const enqueueMs = Date.now() - t0;
  const q = await h.queue(Q);
  assert.equal(q.counts.waiting, N);
  console.log(`enqueued ${N} jobs in batches of 1000 in ${enqueueMs} ms (${Math.round(N / (enqueueMs / 1000))} jobs/s)`);

  const page = await h.page();
  await h.login(page, h.adminToken);
  await page.locator('a.count[data-queue="bulk"][data-state="waiting"]', {hasText: '100,000'}).waitFor({timeout: 60000});

  // The job browser, from the navigation.
  const tNav = Date.now();
  await page.click('#nav a[data-route="jobs"]');
  await page.waitForFunction(() => {
    const el = document.querySelector('.job-list');
    return el && el.dataset.page === '1' && !el.hasAttribute('aria-busy');
  }, null, {polling: 'raf'});
  const first = {wall: Date.now() - tNav, ...(await listState(page))};
  assert.equal(await page.locator('#f-queue').inputValue(), Q);
  assert.equal(await page.locator('#f-state').inputValue(), 'waiting');
  const pages = [await ids(page)];
  assert.equal(pages[0].length, 50);
  const times = [`page 1: ${first.wall} ms (list ${first.ms} ms)`];

  // Newest first: the ids (ULIDs, which sort by time) go down, and the first is the newest job.
  const newest = (await h.api('GET', `/v1/jobs?queue=${Q}&state=waiting&limit=1&order=desc`)).jobs[0].id;
  assert.equal(pages[0][0], newest, 'the newest job first');
  for (let i = 1; i < pages[0].length; i++) assert.ok(pages[0][i] < pages[0][i - 1], 'newest first within the page');
  await h.shot(page, 'page1');

  for (let p = 2; p <= PAGES; p++) {
    const r = await turn(page, 'next', p);
    times.push(`page ${p}: ${r.wall} ms (list ${r.ms} ms)`);
    const got = await ids(page);
    assert.equal(got.length, 50, `page ${p} is full`);
    assert.ok(got[0] < pages[p - 2][pages[p - 2].length - 1], `page ${p} continues where page ${p - 1} ended`);
    pages.push(got);
  }
  const seen = new Set(pages.flat());
  assert.equal(seen.size, PAGES * 50, 'no job twice');
  await h.shot(page, `page${PAGES}`);

  // And back, page by page: the same jobs as on the way forward.
  for (let p = PAGES - 1; p >= 1; p--) {
    const r = await turn(page, 'prev', p);
    times.push(`back to page ${p}: ${r.wall} ms (list ${r.ms} ms)`);
    assert.deepEqual(await ids(page), pages[p - 1], `page ${p} again`);
  }
  assert.equal(await page.locator('.job-list button[data-action="prev"]').isDisabled(), true, 'no previous on page 1');
  console.log(`job browser, ${N} waiting jobs, 50 a page:\n  ${times.join('\n  ')}`);

  // Bigger pages and the other order: 200 a page, next to run first.
  await page.selectOption('#f-limit', '200');
  await page.waitForFunction(() => document.querySelectorAll('.job-list tbody tr[data-id]').length === 200);
  await page.selectOption('#f-order', 'asc');
  await page.waitForFunction(() => {
    const el = document.querySelector('.job-list');
    return el && el.dataset.count === '200' && !el.hasAttribute('aria-busy') && location.hash.includes('order=asc');
  });
  const asc = await ids(page);
  assert.ok(asc[0] < asc[1], 'next to run first: oldest first');
  const r200 = await turn(page, 'next', 2);
  console.log(`200 a page, next to run first: page 2 in ${r200.wall} ms (list ${r200.ms} ms)`);

  // Search by id: a job from the middle of the pile.
  const mid = pages[3][17];
  await page.fill('#job-id', mid);
  await page.keyboard.press('Enter');
  await page.locator('.job-detail[data-state="waiting"]').waitFor();
  assert.match(await page.locator('h1').textContent(), new RegExp(mid));
  // Typing into the search box while the list below it still loads: the page
  // finishing its load must not take the focus (and the Enter) away. The list's
  // request is held until the id is typed, so this does not depend on timing.
  let release;
  const held = new Promise((r) => { release = r; });
  const listUrl = /\/v1\/jobs\?/;
  await page.route(listUrl, async (route) => { await held; await route.continue(); });
  await page.goBack();
  await page.fill('#job-id', '01ZZZZZZZZZZZZZZZZZZZZZZZZ-bulk');
  release();
  await page.waitForFunction(() => {
    const el = document.querySelector('.job-list');
    return el && el.dataset.page === '1' && !el.hasAttribute('aria-busy');
  }, null, {polling: 'raf'});
  await page.unroute(listUrl);
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'job-id',
    'the search box keeps the focus');
  await page.keyboard.press('Enter');
  await page.locator('form[role="search"] .form-error', {hasText: /not found|no job/i}).waitFor();
  await h.shot(page);
  h.assertClean(page, [LOGIN_401, (p) => /status of 404/.test(p.text) && /\/v1\/jobs\//.test(p.url), /status of 404/]);
}));
