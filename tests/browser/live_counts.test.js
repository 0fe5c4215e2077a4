// Live counts: the overview shows the empty state, then a queue's waiting count goes up
// as jobs are enqueued from outside the page (plain HTTP, like curl) and down as a
// worker drains them, all without reloading the page. Then a burst of events (tens of
// thousands of jobs through a fast worker) must not make the page fall behind. And
// when Redis goes away and comes back, the page says so and goes on by itself.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {Hopper, withScreenshots, sleep, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin'}]});
after(() => h.stop());

const Q = 'live';
const cell = (state, q = Q) => `a.count[data-queue="${q}"][data-state="${state}"]`;

// Records every value a count cell shows (a MutationObserver in the page), so the test
// sees the steps in between and not only where it ends.
async function watchCell(page, state, q = Q) {
  await page.evaluate(({sel, key}) => {
    const el = document.querySelector(sel);
    window.__seen = window.__seen || {};
    const seen = (window.__seen[key] = [el.textContent]);
    new MutationObserver(() => {
      const v = el.textContent;
      if (seen[seen.length - 1] !== v) seen.push(v);
    }).observe(el, {childList: true, characterData: true, subtree: true});
  }, {sel: cell(state, q), key: `${q}/${state}`});
}
const seen = (page, state, q = Q) => page.evaluate((key) => window.__seen[key].map((v) => Number(v.replace(/\D/g, ''))), `${q}/${state}`);
const countIs = (page, state, n, q = Q, timeout = 60000) =>
  page.waitForFunction(({sel, n}) => {
    const el = document.querySelector(sel);
    return el && Number(el.textContent.replace(/\D/g, '')) === n;
  }, {sel: cell(state, q), n}, {timeout, polling: 50});

test('the waiting count follows enqueues and a worker, without a reload', {timeout: 120000}, withScreenshots(h, 'counts', async () => {
  const page = await h.page();
  await h.login(page, h.tokens.admin);

  // Nothing enqueued yet: the overview says how to submit a first job.
  await page.locator('.empty-state', {hasText: 'No jobs yet'}).waitFor();
  const curl = await page.locator('.empty-state pre').textContent();
  assert.match(curl, /curl .*\/v1\/jobs/s, curl);
  assert.match(curl, /Authorization: Bearer/, 'the example sends a token, since this server needs one');
  await h.shot(page, 'empty');

  // A marker that a reload would lose.
  await page.evaluate(() => {
    window.__marker = 'still here';
  });

  // The first job creates the queue: it appears by itself.
  await h.enqueue({queue: Q, type: 'test.sleep', payload: {ms: 150}});
  await page.locator(cell('waiting')).waitFor({timeout: 60000});
  await countIs(page, 'waiting', 1);
  await watchCell(page, 'waiting');

  // 29 more, one request each, a little apart, as a producer would.
  for (let i = 0; i < 29; i++) {
    await h.enqueue({queue: Q, type: 'test.sleep', payload: {ms: 150, i}});
    await sleep(40);
  }
  await countIs(page, 'waiting', 30);
  const up = await seen(page, 'waiting');
  assert.ok(up.length >= 3, `the count went up in steps, not at once: ${up}`);
  for (let i = 1; i < up.length; i++) assert.ok(up[i] >= up[i - 1], `it only went up: ${up}`);
  await h.shot(page, 'enqueued');

  // A worker (2 threads, 150 ms a job) drains them: the count goes down in steps.
  await watchCell(page, 'waiting');
  await watchCell(page, 'succeeded');
  await h.startWorker(Q, {processes: 1, threads: 2});
  await countIs(page, 'waiting', 0, Q, 30000);
  await countIs(page, 'succeeded', 30, Q, 30000);
  const down = await seen(page, 'waiting');
  const ok = await seen(page, 'succeeded');
  console.log(`waiting count seen: up ${up.join(' ')}; down ${down.join(' ')}; succeeded ${ok.join(' ')}`);
  assert.ok(down.length >= 3 && down.some((v) => v > 0 && v < 30), `the count went down in steps: ${down}`);

  // Never reloaded: the marker survived and there was one navigation.
  const state = await page.evaluate(() => ({marker: window.__marker, navs: performance.getEntriesByType('navigation').length,
    live: document.querySelector('#live').dataset.status}));
  assert.equal(state.marker, 'still here', 'the page was not reloaded');
  assert.equal(state.navs, 1);
  assert.equal(state.live, 'live');
  await h.shot(page);
  h.assertClean(page, [LOGIN_401, /status of 404/]);
}));

test('a burst of events does not make the page fall behind', {timeout: 180000}, withScreenshots(h, 'burst', async () => {
  const page = h.pages[0];
  const B = 'burst';
  await h.enqueue({queue: B, type: 'test.noop'});
  await page.locator(cell('succeeded', B)).waitFor({timeout: 60000});
  await h.startWorker(B, {processes: 2, threads: 8});

  // The page's main thread: the longest gap between animation frames while events pour in.
  await page.evaluate(() => {
    window.__gaps = {max: 0, frames: 0};
    let last = performance.now();
    const tick = (t) => {
      window.__gaps.max = Math.max(window.__gaps.max, t - last);
      window.__gaps.frames++;
      last = t;
      if (!window.__stopFrames) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const N = 20000;
  const t0 = Date.now();
  await h.enqueueMany(N, {queue: B, type: 'test.noop'});
  const enqueuedMs = Date.now() - t0;
  // Every job done (enqueued + started + succeeded: 3 events each). The succeeded
  // state keeps only the newest jobs, so the total says when all are through.
  let done;
  for (;;) {
    done = await h.queue(B);
    if (done.totals.succeeded >= N + 1) break;
    if (Date.now() - t0 > 120000) throw new Error(`the worker did not finish: ${JSON.stringify(done.counts)}`);
    await sleep(200);
  }
  const drainedMs = Date.now() - t0;
  // The page catches up with the truth within a few seconds.
  const t1 = Date.now();
  await countIs(page, 'waiting', 0, B, 60000);
  await countIs(page, 'active', 0, B, 60000);
  await countIs(page, 'succeeded', (await h.queue(B)).counts.succeeded, B, 60000);
  const caughtUpMs = Date.now() - t1;
  const gaps = await page.evaluate(() => {
    window.__stopFrames = true;
    return window.__gaps;
  });
  const rate = Math.round((3 * N) / (drainedMs / 1000));
  console.log(`burst: ${N} jobs enqueued in ${enqueuedMs} ms, done in ${drainedMs} ms (~${rate} events/s); ` +
    `the page caught up ${caughtUpMs} ms later; longest frame gap ${Math.round(gaps.max)} ms over ${gaps.frames} frames`);
  await h.shot(page);
  assert.equal(await page.evaluate(() => window.__marker), 'still here');
  h.assertClean(page, [LOGIN_401, /status of 404/]);
}));

test('Redis goes away and comes back: the page says so, keeps the session, and goes on', {timeout: 120000}, withScreenshots(h, 'redis-down', async () => {
  const page = h.pages[0];
  await page.evaluate(() => { location.hash = '#/'; }); // the same page: no reload (the marker stays)
  await page.locator(cell('waiting')).waitFor({timeout: 60000});
  await page.locator('#live[data-status="live"]').waitFor({timeout: 60000});
  const before = (await h.queue(Q)).counts.waiting;
  await countIs(page, 'waiting', before);

  await h.killRedis();
  // The live indicator says the events stopped and why; the page is still logged in
  // (a 503 is no reason to show the login).
  await page.locator('#live[data-status="interrupted"]', {hasText: 'Redis unreachable'}).waitFor({timeout: 60000});
  await page.locator('.card', {hasText: 'is unreachable'}).first().waitFor({timeout: 60000}); // the next refetch failed
  // and the Redis tile says so too (at once since that failure; no time is asserted)
  await page.locator('.tile', {hasText: /^Redis\s*unknown/}).waitFor({timeout: 60000});
  assert.equal(await page.locator('#token').count(), 0, 'no login form');
  assert.equal(await page.locator('#nav').isVisible(), true);
  await h.shot(page, 'down');

  await h.restartRedis();
  await page.locator('#live[data-status="live"]').waitFor({timeout: 60000});
  // Events flow again: a job enqueued now moves the count, with no reload.
  const scheduled = (await h.queue(Q)).counts.scheduled;
  await h.enqueue({queue: Q, type: 'test.noop', delay_ms: 3600000}); // scheduled: no worker takes it
  await countIs(page, 'scheduled', scheduled + 1);
  assert.equal(await page.locator('#token').count(), 0, 'still logged in after Redis came back');
  await h.shot(page, 'back');
  assert.equal(await page.evaluate(() => window.__marker), 'still here');
  h.assertClean(page, [LOGIN_401, /status of 404/, /status of 503/, /ERR_CONNECTION|net::/]);
}));
