// Scopes and CSRF: a read-scope login sees every page and no action button; a token
// limited to some queues sees only those; a POST
// that carries the session cookie but not the CSRF token is refused, and so is a
// forged POST from a page of another site or another origin.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {Hopper, withScreenshots, freePort, sleep, until, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin'}, {scope: 'read', name: 'viewer'},
  {scope: 'read', name: 'ro-only', args: ['--queues', 'ro*']}]});
let evil;
after(async () => {
  if (evil) evil.close();
  await h.stop();
});

const Q = 'ro';
const ACTIONS = ['retry', 'edit-retry', 'cancel', 'delete', 'pause', 'resume', 'purge', 'bulk-retry', 'bulk-delete',
  'quiet', 'stop', 'trigger'];
const actionButtons = (page) => page.locator(ACTIONS.map((a) => `button[data-action="${a}"]`).join(', '));

test('a read-scope login sees everything but no action button', {timeout: 120000}, withScreenshots(h, 'read', async () => {
  await h.startWorker(Q, {threads: 2});
  const {id} = await h.enqueue({queue: Q, type: 'test.fail', payload: {permanent: true, message: 'read me'}});
  assert.equal((await h.api('GET', `/v1/jobs/${id}?wait=20s`)).state, 'dead');
  await h.enqueue({queue: Q, type: 'test.sleep', payload: {ms: 60000}}); // a running job, for the worker's page
  await h.api('PUT', '/v1/schedules/ro-hourly', {cron: '0 * * * *', job: {queue: Q, type: 'test.noop'}});
  const workerId = await (async () => {
    for (;;) {
      const ws = (await h.api('GET', '/v1/workers')).workers;
      if (ws.length && ws[0].jobs.length) return ws[0].id;
      await sleep(100);
    }
  })();

  const page = await h.page();
  await h.login(page, h.tokens.viewer);
  assert.match(await page.locator('#who').textContent(), /read/);
  const pages = [
    ['#/', 'a.count[data-queue="ro"][data-state="dead"]'],
    [`#/queue/${Q}?state=dead`, `tr[data-id="${id}"]`],
    [`#/jobs?queue=${Q}&state=dead`, `tr[data-id="${id}"]`],
    [`#/job/${encodeURIComponent(id)}`, '.job-detail[data-state="dead"]'],
    ['#/workers', `tr[data-worker="${workerId}"]`],
    [`#/workers/${encodeURIComponent(workerId)}`, '.table-jobs tbody tr td.id'],
    ['#/schedules', 'section.schedule[data-schedule="ro-hourly"]'],
    ['#/schedules/ro-hourly', 'section.schedule[data-schedule="ro-hourly"]'],
    ['#/audit', '.table-audit tbody tr'],
  ];
  for (const [hash, ready] of pages) {
    await page.goto(h.url(hash));
    await page.locator(ready).first().waitFor({timeout: 60000});
    await sleep(300); // let every request of the page land
    assert.equal(await actionButtons(page).count(), 0, `${hash}: no action button for read scope`);
    assert.equal(await page.locator('.banner-error').count(), 0, `${hash}: no error: ${await page.locator('.banner-error').allTextContents()}`);
  }
  await page.goto(h.url(`#/job/${encodeURIComponent(id)}`));
  await page.locator('td.error-text', {hasText: 'read me'}).waitFor();
  await h.shot(page);

  // The API agrees: the session of a read token may not act, even with the CSRF token.
  const r = await page.evaluate(async (q) => {
    const s = await (await fetch('/v1/session')).json();
    const res = await fetch(`/v1/queues/${q}/pause`, {method: 'POST', headers: {'X-CSRF-Token': s.csrf}});
    return {status: res.status, body: await res.json()};
  }, Q);
  assert.equal(r.status, 403, JSON.stringify(r));
  assert.equal((await h.queue(Q)).paused, false);
  h.assertClean(page, [LOGIN_401, (p) => /status of 403/.test(p.text) && /\/pause$/.test(p.url)]);
}));

test('a token limited to some queues sees only those', {timeout: 120000}, withScreenshots(h, 'limited', async () => {
  await h.enqueue({queue: 'other', type: 'test.noop'});
  await h.enqueue({queue: 'ro-too', type: 'test.noop'});
  const page = await h.page();
  await h.login(page, h.tokens['ro-only']);
  await page.locator('a.count[data-queue="ro-too"][data-state="waiting"]').waitFor({timeout: 60000});
  await page.locator('a.count[data-queue="ro"]').first().waitFor();
  assert.equal(await page.locator('a.count[data-queue="other"]').count(), 0, 'no other queue on the overview');
  assert.equal(await page.locator('#nav a[data-route="audit"]').isVisible(), false, 'no audit log in the menu');
  await h.shot(page, 'limited');
  await page.goto(h.url('#/jobs?queue=other&state=waiting'));
  await page.locator('.banner-error, .error-box', {hasText: /may not|403/}).first().waitFor({timeout: 60000});
  h.assertClean(page, [LOGIN_401, /status of 403/]);
}));

test('a POST without the CSRF token, or from another site, is refused', {timeout: 120000}, withScreenshots(h, 'csrf', async () => {
  const browser = await h.launch();
  const context = await browser.newContext({viewport: {width: 1280, height: 900}});
  const page = await h.page({context});
  await h.login(page, h.adminToken, {hash: `#/queue/${Q}`});
  await page.locator('button[data-action="pause"]').waitFor();

  // Same origin, the cookie, but no X-CSRF-Token: 403. With it: 200 (the control).
  const bare = await page.evaluate(async (q) => {
    const res = await fetch(`/v1/queues/${q}/pause`, {method: 'POST', credentials: 'same-origin'});
    return {status: res.status, body: await res.text()};
  }, Q);
  assert.equal(bare.status, 403, JSON.stringify(bare));
  assert.match(bare.body, /CSRF|csrf/i, bare.body);
  const wrong = await page.evaluate(async (q) => (await fetch(`/v1/queues/${q}/pause`, {method: 'POST',
    headers: {'X-CSRF-Token': '0'.repeat(64)}})).status, Q);
  assert.equal(wrong, 403, 'a wrong CSRF token');
  assert.equal((await h.queue(Q)).paused, false, 'not paused by a request without the CSRF token');

  // A page on another origin posts a form (the classic CSRF) and a fetch to the API.
  const target = `${h.base}/v1/queues/${Q}/pause`;
  const port = await freePort();
  evil = http.createServer((req, res) => {
    res.setHeader('Content-Type', 'text/html');
    if (req.url === '/form') {
      res.end(`<!doctype html><form id="f" method="POST" action="${target}"><input name="x" value="1"></form>` +
        '<script>document.getElementById("f").submit()</script>');
    } else {
      res.end(`<!doctype html><script>fetch(${JSON.stringify(target)}, {method: "POST", mode: "no-cors", credentials: "include",
        headers: {"Content-Type": "text/plain"}, body: "{}"}).then(() => { document.title = "sent"; }, () => { document.title = "blocked"; });</script>`);
    }
  }).listen(port, '127.0.0.1');
  await new Promise((r) => evil.once('listening', r));

  // The server's own log says what it answered (the browser may hide the answer from
  // the attacking page: Cross-Origin-Resource-Policy: same-origin).
  const refusals = () => h.server.text().split('\n').filter((l) => l.includes(`"path":"/v1/queues/${Q}/pause"`) &&
    /"status":40[13]/.test(l)).length;
  const statuses = [];
  // localhost is another site than 127.0.0.1 (the SameSite=Strict cookie stays home);
  // 127.0.0.1 on another port is the same site but another origin (the cookie goes).
  for (const origin of [`http://localhost:${port}`, `http://127.0.0.1:${port}`]) {
    for (const kind of ['form', 'fetch']) {
      const before = refusals();
      const attacker = await context.newPage();
      const seen = new Promise((resolve) => {
        attacker.on('response', (res) => {
          if (res.url() === target) resolve(`HTTP ${res.status()}`);
        });
        attacker.on('requestfailed', (req) => {
          if (req.url() === target) resolve(req.failure().errorText);
        });
      });
      await attacker.goto(`${origin}/${kind}`);
      const status = await Promise.race([seen, sleep(5000).then(() => 'nothing')]);
      await until(() => refusals() > before, {ms: 5000, what: `the server to refuse the ${kind} from ${origin}`});
      statuses.push(`${origin} ${kind}: server refused, the page saw ${status}`);
      assert.ok(!/HTTP 2/.test(status), `${origin} ${kind}: ${status}`);
      if (kind === 'form') await h.shot(attacker, `evil-${origin.includes('localhost') ? 'site' : 'origin'}`);
      await attacker.close();
      assert.equal((await h.queue(Q)).paused, false, `${origin} ${kind} paused the queue`);
    }
  }
  console.log(`forged POSTs: ${statuses.join('; ')}`);

  // The dashboard's own button still works: the CSRF token goes with it.
  await page.click('button[data-action="pause"]');
  await page.locator('button[data-action="resume"]').waitFor();
  assert.equal((await h.queue(Q)).paused, true);
  await h.shot(page);
  h.assertClean(page, [LOGIN_401, (p) => /status of 403/.test(p.text) && /\/pause$/.test(p.url)]);
}));
