// Workers: a busy worker's jobs, paged (60 running, 50 a page); quiet it from the
// page (it finishes what it runs and stays listed as quiet), then stop it (it leaves
// the list and its process exits).

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {Hopper, withScreenshots, sleep, until, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin'}]});
after(() => h.stop());

const Q = 'busy';

test('page through a busy worker\'s jobs, quiet it, stop it', {timeout: 120000}, withScreenshots(h, 'workers', async () => {
  const worker = await h.startWorker(Q, {threads: 60, args: ['--prefetch', '1']});
  for (let i = 0; i < 60; i++) await h.enqueue({queue: Q, type: 'test.sleep', payload: {ms: 8000 + i * 10}});
  const id = await until(async () => {
    const ws = (await h.api('GET', '/v1/workers')).workers;
    return ws.length === 1 && ws[0].running === 60 && ws[0].id;
  }, {ms: 20000, what: 'the worker to run 60 jobs'});

  const page = await h.page();
  await h.login(page, h.adminToken, {hash: '#/workers'});
  const row = page.locator(`tr[data-worker="${id}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), /60 \/ 60/, 'running / threads');
  assert.match(await row.textContent(), /testhandlers/, 'its plugins');

  // Its jobs, 50 a page.
  await row.locator('a').first().click();
  await page.locator('.list-status', {hasText: '1–50 of 60'}).waitFor();
  assert.equal(await page.locator('.table-jobs tbody tr').count(), 50);
  await page.click('button[data-action="next"]');
  await page.locator('.list-status', {hasText: '51–60 of 60'}).waitFor();
  assert.equal(await page.locator('.table-jobs tbody tr').count(), 10);
  assert.equal(await page.locator('button[data-action="next"]').isDisabled(), true);
  await h.shot(page, 'jobs');
  await page.click('button[data-action="prev"]');
  await page.locator('.list-status', {hasText: '1–50 of 60'}).waitFor();

  // Quiet: confirmed, seen by the worker, shown as quiet; it takes no new job.
  await page.click('button[data-action="quiet"]');
  await page.locator('dialog[open]').waitFor();
  await page.locator('dialog[open] button', {hasText: 'Quiet it'}).click();
  await page.locator('.badge', {hasText: 'quiet'}).waitFor({timeout: 60000});
  const extra = await h.enqueue({queue: Q, type: 'test.noop'});
  await page.locator('td', {hasText: 'It runs no job right now.'}).waitFor({timeout: 60000}); // the 60 finished
  assert.equal((await h.api('GET', `/v1/jobs/${extra.id}`)).state, 'waiting', 'a quiet worker takes no new job');
  await h.shot(page, 'quiet');

  // Stop: it leaves and its process exits.
  await page.click('button[data-action="stop"]');
  await page.locator('dialog[open] button', {hasText: 'Stop it'}).click();
  await page.locator('.banner-error', {hasText: 'has left'}).waitFor({timeout: 60000});
  await until(() => worker.exited, {ms: 10000, what: 'the worker process to exit'});
  await page.click('#nav a[data-route="workers"]');
  await page.locator('.empty-state', {hasText: 'No worker is running'}).waitFor({timeout: 60000});
  await h.shot(page);

  // Both are in the audit log.
  await page.click('#nav a[data-route="audit"]');
  await page.locator('.table-audit tbody tr').first().waitFor();
  const audit = await page.locator('.table-audit tbody').textContent();
  assert.match(audit, /\/quiet/);
  assert.match(audit, /\/stop/);
  await sleep(100);
  h.assertClean(page, [LOGIN_401, (p) => /status of 404/.test(p.text) && /\/v1\/workers\//.test(p.url)]);
}));
