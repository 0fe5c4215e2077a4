// Logging in and out: a wrong token is refused with the server's reason, the right
// one gives an HttpOnly SameSite=Strict session cookie (the token is kept nowhere
// in the page), the header says who is logged in, and logging out ends the session.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {Hopper, withScreenshots, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin', name: 'ops'}]});
after(() => h.stop());

test('log in, see who is logged in, log out', {timeout: 90000}, withScreenshots(h, 'login', async () => {
  const page = await h.page();
  await page.goto(h.url());
  await page.locator('#token').waitFor();
  assert.equal(await page.locator('#nav').isVisible(), false, 'no navigation before logging in');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'token', 'the token field has the focus');
  await h.shot(page, 'form');

  // A wrong token: the server's reason is shown, and we stay on the login page.
  await page.fill('#token', 'hop_nope_not-a-real-token');
  await page.click('button[type=submit]');
  await page.locator('#login-error').filter({hasText: /Login failed/}).waitFor();
  const reason = await page.locator('#login-error').textContent();
  assert.match(reason, /401/, reason);
  await h.shot(page, 'refused');

  // The right one, with the keyboard.
  await page.fill('#token', h.tokens.ops);
  await page.keyboard.press('Enter');
  await page.locator('#nav').waitFor({state: 'visible'});
  await page.locator('h1', {hasText: 'Overview'}).waitFor();
  const who = await page.locator('#who').textContent();
  assert.match(who, /ops/, `the header names the token: ${who}`);
  assert.match(who, /admin/, `and its scope: ${who}`);
  await page.locator('#live[data-status="live"]').waitFor({timeout: 60000});

  // The session cookie: HttpOnly, SameSite=Strict, with an expiry; the token itself is
  // nowhere in the page, its storage or the cookie.
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === 'hopper_session');
  assert.ok(c, `a hopper_session cookie: ${JSON.stringify(cookies)}`);
  assert.equal(c.httpOnly, true, 'HttpOnly');
  assert.equal(c.sameSite, 'Strict', 'SameSite=Strict');
  assert.ok(c.expires > Date.now() / 1000, 'it expires');
  assert.ok(!c.value.includes(h.tokens.ops), 'the cookie is not the token');
  const seen = await page.evaluate(() => [document.documentElement.outerHTML, JSON.stringify({...localStorage}),
    JSON.stringify({...sessionStorage}), document.cookie].join('\n'));
  assert.ok(!seen.includes(h.tokens.ops), 'the token is not in the page or its storage');
  assert.ok(!seen.includes(c.value), 'the session id is not readable by the page');
  await h.shot(page);

  // A reload keeps the session (the cookie), without logging in again.
  await page.reload();
  await page.locator('h1', {hasText: 'Overview'}).waitFor();
  assert.equal(await page.locator('#token').count(), 0);

  // Log out: back to the login page, and the session is gone on the server too.
  await page.click('#logout');
  await page.locator('#token').waitFor();
  await page.locator('.banner', {hasText: 'logged out'}).waitFor();
  const status = await page.evaluate(async () => (await fetch('/v1/session')).status);
  assert.equal(status, 401, 'GET /v1/session after logging out');
  const r = await fetch(`${h.base}/v1/queues`, {headers: {Cookie: `hopper_session=${c.value}`}});
  assert.equal(r.status, 401, 'the old cookie no longer works');
  await h.shot(page, 'logged-out');

  h.assertClean(page, [LOGIN_401]);
}));

test('a server without tokens needs no login', {timeout: 60000}, async () => {
  const open = await Hopper.start({name: 'login-noauth'});
  try {
    await withScreenshots(open, 'noauth', async () => {
      const page = await open.page();
      await page.goto(open.url());
      await page.locator('h1', {hasText: 'Overview'}).waitFor();
      assert.equal(await page.locator('#token').count(), 0, 'no login page');
      assert.equal(await page.locator('#logout').isVisible(), false, 'no logout button');
      assert.match(await page.locator('#who').textContent(), /no auth/);
      await page.locator('#live[data-status="live"]').waitFor({timeout: 60000});
      // Actions work without a session (and so without a CSRF token).
      await open.enqueue({queue: 'open', type: 'test.noop'}, {token: null});
      await page.goto(open.url('#/queue/open'));
      await page.click('button[data-action="pause"]');
      await page.locator('button[data-action="resume"]').waitFor();
      assert.equal((await open.api('GET', '/v1/queues/open', undefined, {token: null})).paused, true);
      await open.shot(page);
      open.assertClean(page);
    })();
  } finally {
    await open.stop();
  }
});
