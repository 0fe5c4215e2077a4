// Schedules: the expression in words, its zone and next fires; "trigger now" makes a
// job that a worker runs, the run shows in the schedule's history, and the job's page
// links back to the schedule; pause and resume.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {Hopper, withScreenshots, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin'}]});
after(() => h.stop());

const Q = 'reports';
const NAME = 'nightly-report';

test('trigger a schedule and follow its job', {timeout: 120000}, withScreenshots(h, 'trigger', async () => {
  await h.api('PUT', `/v1/schedules/${NAME}`, {cron: '30 2 * * *', tz: 'Europe/Berlin', job: {queue: Q, type: 'test.echo', payload: {report: 'nightly'}}});
  await h.api('PUT', '/v1/schedules/every-5-min', {cron: '*/5 * * * *', job: {queue: Q, type: 'test.noop'}});
  await h.startWorker(Q, {threads: 2});

  const page = await h.page();
  await h.login(page, h.adminToken, {hash: '#/schedules'});
  const card = page.locator(`section.schedule[data-schedule="${NAME}"]`);
  await card.waitFor();
  const text = await card.textContent();
  assert.match(text, /30 2 \* \* \*/, 'the expression');
  assert.match(text, /02:30/, `the expression in words: ${text}`);
  assert.match(text, /Europe\/Berlin/, 'the time zone');
  assert.ok(await card.locator('.fires li').count() >= 1, 'the next fires');
  assert.match(await card.locator('.fires time').first().getAttribute('title'), /UTC$/);
  assert.match(text, /It has not run yet/);
  await h.shot(page, 'list');

  // Trigger now: a job, run by the worker; the run is in the history.
  await card.locator('button[data-action="trigger"]').click();
  const notice = page.locator('.notice', {hasText: `Schedule ${NAME} triggered`});
  await notice.waitFor();
  const jobId = (await notice.textContent()).match(/job (\S+?)\.?(?:\s|×|$)/)[1];
  const run = card.locator('tbody tr', {hasText: 'triggered'});
  await run.waitFor({timeout: 60000});
  assert.match(await run.textContent(), new RegExp(jobId));
  await h.shot(page, 'triggered');

  // The single schedule's page shows the state of the jobs its runs made.
  await page.click(`section.schedule[data-schedule="${NAME}"] h2 a`);
  await page.locator('h1', {hasText: `Schedule ${NAME}`}).waitFor();
  await page.locator('section.schedule tbody tr .state', {hasText: 'succeeded'}).waitFor({timeout: 60000});
  await h.shot(page, 'one');

  // The job: it ran with the schedule's payload and links back.
  await page.click(`a[href="#/job/${encodeURIComponent(jobId)}"]`);
  await page.locator('.job-detail[data-state="succeeded"]').waitFor({timeout: 60000});
  assert.match(await page.locator('.job-detail').textContent(), /"report": "nightly"/);
  await page.click(`.job-detail a[href="#/schedules/${NAME}"]`);
  await page.locator('h1', {hasText: `Schedule ${NAME}`}).waitFor();

  // Pause and resume.
  await page.click('button[data-action="pause"]');
  await page.locator('section.schedule .badge', {hasText: 'paused'}).waitFor();
  assert.equal((await h.api('GET', `/v1/schedules/${NAME}`)).paused, true);
  await page.click('button[data-action="resume"]');
  await page.locator('section.schedule .badge', {hasText: 'active'}).waitFor();
  assert.equal((await h.api('GET', `/v1/schedules/${NAME}`)).paused, false);
  await h.shot(page);
  h.assertClean(page, [LOGIN_401]);
}));
