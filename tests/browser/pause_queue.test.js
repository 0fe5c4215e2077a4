// Pausing a queue from its page: jobs enqueued meanwhile stay waiting (a worker is
// running), resuming lets the worker drain them; purging a state asks first and says
// how many jobs it will remove.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {Hopper, withScreenshots, sleep, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin'}]});
after(() => h.stop());

const Q = 'pq';
const count = (page, state) => page.locator(`.count-value[data-queue="${Q}"][data-state="${state}"]`);
const countIs = (page, state, n, timeout = 60000) => page.waitForFunction(({sel, n}) => {
  const el = document.querySelector(sel);
  return el && Number(el.textContent.replace(/\D/g, '')) === n;
}, {sel: `.count-value[data-queue="${Q}"][data-state="${state}"]`, n}, {timeout, polling: 50});

test('pause a queue: enqueued jobs stay waiting; resume: they run', {timeout: 120000}, withScreenshots(h, 'pause', async () => {
  await h.startWorker(Q, {threads: 2});
  const first = await h.enqueue({queue: Q, type: 'test.noop'});
  assert.equal((await h.api('GET', `/v1/jobs/${first.id}?wait=20s`)).state, 'succeeded');

  const page = await h.page();
  await h.login(page, h.adminToken, {hash: `#/queue/${Q}`});
  await countIs(page, 'succeeded', 1);

  await page.click('button[data-action="pause"]');
  await page.locator('.page-head .badge', {hasText: 'paused'}).waitFor();
  await page.locator('button[data-action="resume"]').waitFor();
  assert.equal((await h.queue(Q)).paused, true, 'the server says paused');

  for (let i = 0; i < 5; i++) await h.enqueue({queue: Q, type: 'test.noop', payload: {i}});
  await countIs(page, 'waiting', 5);
  await sleep(2500); // the worker polls meanwhile: nothing may move
  assert.equal((await h.queue(Q)).counts.waiting, 5, 'still waiting on the server');
  assert.equal(Number((await count(page, 'waiting').textContent()).replace(/\D/g, '')), 5, 'still 5 on the page');
  assert.equal(await page.locator('.job-list tbody tr[data-id]').count(), 0, 'the list was not re-rendered under the reader');
  await page.click('button[data-action="refresh"]');
  await page.waitForFunction(() => document.querySelectorAll('.job-list tbody tr[data-id]').length === 5);
  await h.shot(page, 'paused');

  await page.click('button[data-action="resume"]');
  await page.locator('button[data-action="pause"]').waitFor();
  await countIs(page, 'waiting', 0);
  await countIs(page, 'succeeded', 6);
  assert.equal((await h.queue(Q)).paused, false);
  await h.shot(page);
  h.assertClean(page, [LOGIN_401]);
}));

test('purge a state: the confirmation says how many', {timeout: 120000}, withScreenshots(h, 'purge', async () => {
  const page = h.pages[0];
  for (let i = 0; i < 3; i++) await h.enqueue({queue: Q, type: 'test.noop', delay_ms: 3600000});
  await page.goto(h.url(`#/queue/${Q}?state=scheduled`));
  await countIs(page, 'scheduled', 3);
  await page.selectOption('#purge-state', 'scheduled');

  // Cancel first: nothing happens.
  await page.click('button[data-action="purge"]');
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /Remove 3 scheduled jobs from queue pq/);
  await h.shot(page, 'confirm');
  await dialog.locator('button', {hasText: 'Cancel'}).click();
  await dialog.waitFor({state: 'detached'});
  assert.equal((await h.queue(Q)).counts.scheduled, 3);

  await page.click('button[data-action="purge"]');
  await dialog.waitFor();
  await dialog.locator('button', {hasText: 'Remove 3 jobs'}).click();
  await page.locator('.notice', {hasText: 'Removed 3 scheduled jobs'}).waitFor();
  await countIs(page, 'scheduled', 0);
  assert.equal((await h.queue(Q)).counts.scheduled, 0);
  await h.shot(page);
  h.assertClean(page, [LOGIN_401]);
}));
